#!/usr/bin/env python3
"""Start-up to first answered request: spawns `pfgate serve --config CONFIG` (a plain-HTTP listener
on 127.0.0.1:PORT, the demo directory as users file, in-memory store), then tries
every millisecond to connect and send TestSecurity; the time from spawn to the first 200 with a
TestSecurityResult is one sample. RUNS samples, each with a fresh process (killed after).
Prints JSON: samples (ms), median, p90, max.

    python3 first_answer.py PFGATE_BIN PORT RUNS CONFIG
"""
import json
import os
import socket
import subprocess
import sys
import time

BIN, PORT, RUNS, CONFIG = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
body = open(os.path.join(ROOT, "soap", "TestSecurity.xml"), "rb").read().strip()
req = (b"POST /MultiFactorAuthWebServiceSdk/PfWsSdk.asmx HTTP/1.1\r\nHost: x\r\n"
       b"Content-Type: text/xml; charset=utf-8\r\n"
       b'SOAPAction: "http://www.phonefactor.com/PfWsSdk/TestSecurity"\r\n'
       b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def answered():
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=1) as s:
            s.sendall(req)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data.startswith(b"HTTP/1.1 200") and b"TestSecurityResult" in data
    except OSError:
        return False


samples = []
for _ in range(RUNS):
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    t0 = time.perf_counter()
    p = subprocess.Popen([BIN, "serve", "--config", CONFIG],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while not answered():
        if p.poll() is not None:
            sys.exit(f"pfgate exited with {p.returncode} before answering")
        if time.perf_counter() - t0 > 10:
            sys.exit("no answer within 10 s")
        time.sleep(0.001)
    samples.append((time.perf_counter() - t0) * 1000)
    p.terminate()
    p.wait()
    time.sleep(0.2)
s = sorted(samples)
print(json.dumps({"runs": RUNS, "median_ms": round(s[len(s) // 2], 1),
                  "p90_ms": round(s[int(len(s) * 0.9)], 1), "max_ms": round(s[-1], 1),
                  "samples_ms": [round(x, 1) for x in samples]}))
