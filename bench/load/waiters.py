#!/usr/bin/env python3
"""Thousands of people on the phone at once: the load client of bench/waiters.sh.

Opens --connections keep-alive connections to pfgate (plain HTTP, or TLS with --tls), sends one PfAuthUser_5 on each
(mimservice@contoso.com, each with its own number, as .NET's SoapHttpClientProtocol sends it) and
waits for every answer. While they all wait (the provider takes --delay seconds), one more
connection sends TestSecurity every 10 ms for --probe seconds and records each latency.

Every answer is checked: HTTP 200, <PfAuthUser_5Result>true</PfAuthUser_5Result>, CallResult 2
(the voice call approved) and Error 0. Prints one JSON object (counts, latency percentiles, times).

    python3 waiters.py --port 18600 --connections 10000 --probe 15 --out result.json
"""

import argparse
import asyncio
import json
import pathlib
import re
import ssl
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = "/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
# The TLS context of --tls (loopback, the run's own self-signed certificate: not verified); None
# for plain HTTP.
TLS = None
UA = "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)"


def request(op, body):
    return (f"POST {PATH} HTTP/1.1\r\nUser-Agent: {UA}\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f'SOAPAction: "http://www.phonefactor.com/PfWsSdk/{op}"\r\n'
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\nHost: pfgate.example\r\n\r\n"
            ).encode() + body


async def read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before an answer")
    status = int(status_line.split()[1])
    length = 0
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    return status, await reader.readexactly(length)


# CallResult and Error travel as structures: <callResult><Code>2</Code><Description>…
OK = re.compile(rb"<PfAuthUser_5Result>true</PfAuthUser_5Result><callResult><Code>2</Code>"
                rb".*<error><Code>0</Code>", re.S)


async def one_call(i, host, port, template, results, sent, timings):
    number = f"425{i:06d}0".encode()
    body = template.replace(b"<phoneNumber>4255550100</phoneNumber>",
                            b"<phoneNumber>" + number + b"</phoneNumber>")
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=TLS)
    except OSError as e:
        results["connect_error"] = results.get("connect_error", 0) + 1
        results.setdefault("examples", []).append(f"connect: {e}")
        return
    try:
        t0 = time.monotonic()
        writer.write(request("PfAuthUser_5", body))
        await writer.drain()
        sent.append(t0)
        status, resp = await read_response(reader)
        timings.append(time.monotonic() - t0)
        if status == 200 and OK.search(resp):
            results["ok"] = results.get("ok", 0) + 1
            results.setdefault("sample_answer", resp.decode("utf-8", "replace"))
        else:
            results["wrong"] = results.get("wrong", 0) + 1
            if len(results.setdefault("examples", [])) < 5:
                results["examples"].append(f"{status}: {resp[:400]!r}")
    except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
        results["error"] = results.get("error", 0) + 1
        if len(results.setdefault("examples", [])) < 5:
            results["examples"].append(f"{type(e).__name__}: {e}")
    finally:
        writer.close()


async def probe(host, port, seconds, lat):
    body = (ROOT / "soap" / "TestSecurity.xml").read_bytes().strip()
    req = request("TestSecurity", body)
    reader, writer = await asyncio.open_connection(host, port, ssl=TLS)
    end = time.monotonic() + seconds
    bad = 0
    while time.monotonic() < end:
        t0 = time.perf_counter()
        writer.write(req)
        await writer.drain()
        status, resp = await read_response(reader)
        lat.append((time.perf_counter() - t0) * 1000)
        if status != 200 or b"<TestSecurityResult>" not in resp:
            bad += 1
        await asyncio.sleep(0.01)
    writer.close()
    return bad


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))], 3) if xs else None


async def main():
    a = argparse.ArgumentParser()
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--connections", type=int, default=10000)
    a.add_argument("--batch", type=int, default=100, help="connections opened every 50 ms")
    a.add_argument("--probe", type=float, default=15, help="seconds of TestSecurity probes")
    a.add_argument("--probe-after", type=float, default=0.5, help="seconds after the last send")
    a.add_argument("--out", default="")
    a.add_argument("--tls", action="store_true", help="TLS (the certificate is not verified)")
    args = a.parse_args()
    if args.tls:
        global TLS
        TLS = ssl.create_default_context()
        TLS.check_hostname = False
        TLS.verify_mode = ssl.CERT_NONE
    template = (ROOT / "soap" / "PfAuthUser_5.xml").read_bytes().strip()
    results, sent, timings, lat = {}, [], [], []
    start = time.monotonic()
    tasks = []
    for b in range(0, args.connections, args.batch):
        for i in range(b, min(args.connections, b + args.batch)):
            tasks.append(asyncio.create_task(
                one_call(i, args.host, args.port, template, results, sent, timings)))
        await asyncio.sleep(0.05)
    while len(sent) + results.get("connect_error", 0) < args.connections:
        if all(t.done() for t in tasks):
            break
        await asyncio.sleep(0.05)
    all_sent = time.monotonic() - start
    in_flight_at_probe = sum(1 for t in tasks if not t.done())
    await asyncio.sleep(args.probe_after)
    probe_bad = await probe(args.host, args.port, args.probe, lat)
    in_flight_after_probe = sum(1 for t in tasks if not t.done())
    await asyncio.gather(*tasks)
    out = {
        "connections": args.connections,
        "ok": results.get("ok", 0),
        "wrong": results.get("wrong", 0),
        "error": results.get("error", 0),
        "connect_error": results.get("connect_error", 0),
        "examples": results.get("examples", []),
        "sample_answer": results.get("sample_answer"),
        "all_sent_s": round(all_sent, 2),
        "in_flight_when_probe_started": in_flight_at_probe,
        "in_flight_when_probe_ended": in_flight_after_probe,
        "call_s_min": round(min(timings), 2) if timings else None,
        "call_s_max": round(max(timings), 2) if timings else None,
        "total_s": round(time.monotonic() - start, 2),
        "probe_n": len(lat), "probe_bad": probe_bad,
        "probe_ms_p50": pct(lat, 0.5), "probe_ms_p99": pct(lat, 0.99),
        "probe_ms_max": round(max(lat), 3) if lat else None,
    }
    print(json.dumps(out, indent=1))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
