#!/usr/bin/env python3
"""The soak client of bench/soak.sh: a mix of PfWsSdk operations at a fixed rate over keep-alive
connections, every answer checked, every request counted.

Mix (weights): PfAuthUser_5 for mimservice@contoso.com to its own number 50 (route to the
flaky provider, failing over to the backup), PfAuthUser_5 for alice@contoso.com to her own number 5
(route to the hanging provider, failing over to the backup; a number per call, so no call joins one
already in flight for the same user and number and every call is one provider call to count), TestSecurity 20, GetUserSettings_3
for alice 15, UserExists for an unknown user 10. Every PfAuthUser_5 must be approved (the backup
takes over every failure), every other answer must carry its result element.

--rate 0 runs flat out for --seconds (to find the maximum). Prints JSON: per operation sent,
answered, ok, wrong, errors; per minute the same totals; latency p50/p99 per operation.

    python3 soak.py --port 18630 --rate 500 --seconds 1800 --out soak.json
"""
import argparse
import asyncio
import collections
import itertools
import json
import pathlib
import random
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = "/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
ENV = ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/'
       'soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.'
       'org/2001/XMLSchema"><soap:Body>{}</soap:Body></soap:Envelope>')
NS = 'xmlns="http://www.phonefactor.com/PfWsSdk"'
PF5 = (ROOT / "soap" / "PfAuthUser_5.xml").read_text().strip()


def pf5(user, number):
    return (PF5.replace("mimservice@contoso.com", user)
            .replace("<phoneNumber>4255550100</phoneNumber>", f"<phoneNumber>{number}</phoneNumber>"))


# Every PfAuthUser_5 goes to a number no other call in flight uses: calls to the same user and
# number join the one in flight (one provider call for several callers), and the soak counts
# provider calls one per authentication. (Random numbers collided: ~3 joins in 150,000 calls.)
NUMBERS = itertools.count()
OPS = [  # name, weight, body maker, expected bytes in the answer
    ("PfAuthUser_5/flaky", 50, lambda: pf5("mimservice@contoso.com", f"425{next(NUMBERS) % 10**7:07d}"),
     b"<PfAuthUser_5Result>true</PfAuthUser_5Result>"),
    ("PfAuthUser_5/hang", 5, lambda: pf5("alice@contoso.com", f"206{next(NUMBERS) % 10**7:07d}"),
     b"<PfAuthUser_5Result>true</PfAuthUser_5Result>"),
    ("TestSecurity", 20, lambda: ENV.format(f"<TestSecurity {NS} />"), b"<TestSecurityResult>"),
    ("GetUserSettings_3", 15,
     lambda: ENV.format(f"<GetUserSettings_3 {NS}><username>alice@contoso.com</username></GetUserSettings_3>"),
     b"<GetUserSettings_3Result>"),
    ("UserExists", 10,
     lambda: ENV.format(f"<UserExists {NS}><username>nobody@contoso.com</username></UserExists>"),
     b"<UserExistsResult>false</UserExistsResult>"),
]
WEIGHTS = [o[1] for o in OPS]


def request(op, body):
    body = body.encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: pfgate.example\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f'SOAPAction: "http://www.phonefactor.com/PfWsSdk/{op.split("/")[0]}"\r\n'
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader):
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed")
    status = int(line.split()[1])
    length = 0
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    return status, await reader.readexactly(length)


counts = collections.defaultdict(lambda: collections.Counter())
lat = collections.defaultdict(list)
examples = []


async def worker(host, port, interval, end):
    reader = writer = None
    next_at = time.monotonic() + random.random() * interval
    while time.monotonic() < end:
        if interval:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += interval
        name, _, make, expect = random.choices(OPS, WEIGHTS)[0]
        c = counts[name]
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            c["sent"] += 1
            t0 = time.perf_counter()
            writer.write(request(name, make()))
            await writer.drain()
            status, body = await asyncio.wait_for(read_response(reader), 120)
            lat[name].append((time.perf_counter() - t0) * 1000)
            c["answered"] += 1
            if status == 200 and expect in body:
                c["ok"] += 1
            else:
                c["wrong"] += 1
                if len(examples) < 10:
                    examples.append(f"{name}: {status} {body[:300]!r}")
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
            c["error"] += 1
            if len(examples) < 10:
                examples.append(f"{name}: {type(e).__name__} {e}")
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def totals():
    return {k: dict(v) for k, v in sorted(counts.items())}


async def main():
    a = argparse.ArgumentParser()
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--rate", type=float, default=0, help="requests/s in all; 0 = flat out")
    a.add_argument("--connections", type=int, default=64)
    a.add_argument("--seconds", type=float, default=60)
    a.add_argument("--out", default="")
    args = a.parse_args()
    interval = args.connections / args.rate if args.rate else 0
    start = time.monotonic()
    end = start + args.seconds
    tasks = [asyncio.create_task(worker(args.host, args.port, interval, end))
             for _ in range(args.connections)]
    minutes = []
    while not all(t.done() for t in tasks):
        await asyncio.sleep(min(60, max(0.1, end - time.monotonic() + 0.1)) if args.seconds >= 60 else 1)
        minutes.append({"t_s": round(time.monotonic() - start), "totals": totals()})
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    pct = lambda xs, p: round(sorted(xs)[min(len(xs) - 1, int(len(xs) * p))], 3) if xs else None
    sent = sum(c["sent"] for c in counts.values())
    out = {"rate": args.rate, "connections": args.connections, "seconds": round(elapsed, 1),
           "sent": sent, "answered": sum(c["answered"] for c in counts.values()),
           "ok": sum(c["ok"] for c in counts.values()), "achieved_rps": round(sent / elapsed, 1),
           "by_op": totals(),
           "latency_ms": {k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": round(max(v), 1)}
                          for k, v in sorted(lat.items())},
           "examples": examples, "minutes": minutes}
    print(json.dumps({k: v for k, v in out.items() if k != "minutes"}, indent=1))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
