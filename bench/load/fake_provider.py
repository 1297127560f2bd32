#!/usr/bin/env python3
"""A fake webhook provider for pfgate's load benchmarks (bench/waiters.sh, bench/soak.sh).

Standard library only, asyncio, one process: it holds thousands of attempts without a thread each.
It speaks docs/webhook.md: verifies every request's signature, signs every 2xx answer, and decides
each attempt by the options below. It counts what it saw (starts, polls, outcomes by number suffix)
and writes the counts as JSON to --stats on SIGTERM/SIGINT and on GET /stats.

  --delay S        an attempt answers `pending` until S seconds after its start, then `success`
                   (the person takes S seconds to pick up); 0 = success at once in the POST answer.
  --retry-after S  Retry-After on pending answers (pfgate bounds it to 10 s).
  --fail-rate F    that fraction of starts (chosen by a hash of request_id, so repeatable) get a 500:
                   a provider failure, which makes pfgate fail over to the route's next provider.
  --hang           accept connections and requests and never answer (a provider that hangs).

    PFGATE_WEBHOOK_SECRET=... python3 fake_provider.py --port 18601 --delay 30 --stats out.json
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import sys
import time

stats = {"starts": 0, "polls": 0, "health": 0, "failed_starts": 0, "approved": 0,
         "bad_signature": 0, "connections": 0, "open_connections": 0, "max_open_connections": 0}
attempts = {}  # request_id -> start time


def sign(secret, message):
    return "v1=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verified(secret, headers, method, path, body):
    ts = headers.get("x-pfgate-timestamp", "")
    sig = headers.get("x-pfgate-signature", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
        return False
    expected = sign(secret, f"pfgate-v1-request\n{ts}\n{method}\n{path}\n".encode() + body)
    return any(hmac.compare_digest(e.strip(), expected) for e in sig.split(","))


def answer(secret, status, method, path, body, extra=""):
    ts = str(int(time.time()))
    reason = {200: "OK", 201: "Created", 401: "Unauthorized", 404: "Not Found",
              500: "Internal Server Error"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}")
    if 200 <= status < 300:
        msg = f"pfgate-v1-response\n{ts}\n{status}\n{method}\n{path}\n".encode() + body
        head += f"X-Pfgate-Timestamp: {ts}\r\nX-Pfgate-Signature: {sign(secret, msg)}\r\n"
    return head.encode() + b"\r\n" + body


def state(rid, done):
    if done:
        return json.dumps({"request_id": rid, "status": "success", "outcome": "approved"}).encode()
    return json.dumps({"request_id": rid, "status": "pending"}).encode()


def fails(rid, rate):
    if rate <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(rid.encode()).digest()[:4], "big")
    return h < rate * 2**32


async def handle(reader, writer, args, secret):
    stats["connections"] += 1
    stats["open_connections"] += 1
    stats["max_open_connections"] = max(stats["max_open_connections"], stats["open_connections"])
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if path.endswith("/stats"):
                out = json.dumps(stats).encode()
                writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(out)}\r\n\r\n".encode() + out)
                await writer.drain()
                continue
            if args.hang:
                key = "hung_health" if path.endswith("/health") else f"hung_{method.lower()}"
                stats[key] = stats.get(key, 0) + 1
                await asyncio.Event().wait()  # never answers; pfgate's request timeout ends it
            if not verified(secret, headers, method, path, body):
                stats["bad_signature"] += 1
                writer.write(answer(secret, 401, method, path, b"{}"))
            elif method == "GET" and path.endswith("/health"):
                stats["health"] += 1
                writer.write(answer(secret, 200, method, path, b'{"status":"ok"}'))
            elif method == "POST" and path.endswith("/authentications"):
                rid = json.loads(body)["request_id"]
                stats["starts"] += 1
                if fails(rid, args.fail_rate):
                    stats["failed_starts"] += 1
                    writer.write(answer(secret, 500, method, path, b'{"error":"injected"}'))
                else:
                    attempts.setdefault(rid, time.monotonic())
                    done = args.delay <= 0
                    stats["approved"] += done
                    writer.write(answer(secret, 201, method, path, state(rid, done),
                                        f"Retry-After: {args.retry_after}\r\n"))
            elif method == "GET" and "/authentications/" in path:
                rid = path.rsplit("/", 1)[1]
                stats["polls"] += 1
                started = attempts.get(rid)
                if started is None:
                    writer.write(answer(secret, 404, method, path, b"{}"))
                else:
                    done = time.monotonic() - started >= args.delay
                    if done:
                        stats["approved"] += 1
                        del attempts[rid]
                    wait = max(1, min(args.retry_after,
                                      int(started + args.delay - time.monotonic()) + 1))
                    writer.write(answer(secret, 200, method, path, state(rid, done),
                                        f"Retry-After: {wait}\r\n"))
            else:
                writer.write(answer(secret, 404, method, path, b"{}"))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        stats["open_connections"] -= 1
        writer.close()


def dump(path):
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(stats, f)
        os.replace(path + ".tmp", path)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay", type=float, default=0)
    p.add_argument("--retry-after", type=int, default=10)
    p.add_argument("--fail-rate", type=float, default=0)
    p.add_argument("--hang", action="store_true")
    p.add_argument("--stats", default="")
    args = p.parse_args()
    secret = os.environ["PFGATE_WEBHOOK_SECRET"].encode()
    server = await asyncio.start_server(lambda r, w: handle(r, w, args, secret),
                                        "127.0.0.1", args.port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: dump(args.stats))
    print(f"fake_provider: listening on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
    dump(args.stats)


if __name__ == "__main__":
    asyncio.run(main())
