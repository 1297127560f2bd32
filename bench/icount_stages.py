#!/usr/bin/env python3
"""PfAuthUser_5's instructions per request by stage, from the callgrind data of N requests alone
(`bench/icount.sh --profile FILE`), and the inclusive top K of pfgate/hyper/tokio/rustls frames.

Each stage is the inclusive cost of the frames that make it up (callgrind_annotate
--inclusive=yes), divided by N; stages that contain others are given net of them, so the stages
add up to the total. The frames are those of a release build at 045d798 (symbols only: inlined
functions count in their caller); a renamed function shows as 0 and its cost moves to "rest".

usage: bench/icount_stages.py CALLGRIND_FILE N [--top K]
"""
import re
import subprocess
import sys


def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \([\s\d.]+%\)\s+(.*?)(?: \[[^\]]*\])?$", line)
        if m and ":" in m.group(2):
            rows.append((int(m.group(1).replace(",", "")), re.sub(r"^(\?\?\?|[^:]*):", "", m.group(2), count=1)))
    return rows


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 30
    rows = inclusive(path)
    out = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True).stdout
    total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out).group(1).replace(",", ""))

    def f(name):  # inclusive cost per request of the (first, largest) frame named exactly `name`
        return next((c / n for c, nm in rows if nm == name), 0.0)

    e = "pfgate::engine::auth::<impl pfgate::engine::Engine>::"
    s = "<pfgate::store::sqlite::SqliteStore as pfgate::store::Store>::"
    handle = f("pfgate::server::http::handle::{{closure}}") + f(
        "<pfgate::server::Gateway as pfgate::net::listener::Service>::call::{{closure}}")  # after #20
    engine = f("pfgate::engine::Engine::handle::{{closure}}")
    auth = f(e + "authenticate_inline::{{closure}}")
    decide = f(e + "decide::{{closure}}")
    call = f(e + "call::{{closure}}")
    lead = f(e + "shared_call::{{closure}}::{{closure}}")
    provider = f("<pfgate::providers::scripted::ScriptedProvider as pfgate::providers::Provider>::authenticate::{{closure}}")
    reqid = f("pfgate::engine::new_request_id")
    ops = ("user_standing", "get_user", "consume_bypass", "locked_until", "block_reason")
    reads = {op: f(s + op + "::{{closure}}") for op in ops}
    reads = {op: v for op, v in reads.items() if v}  # user_standing replaced the other four
    store = sum(reads.values())
    audit = f("pfgate::engine::audit::emit") + f("pfgate::telemetry::audit::emit")
    for_log = f("pfgate::username::for_log") + f("pfgate::core::username::for_log")
    decode = sum(f(m + "::soap::envelope::" + fn) for m in ("pfgate", "pfgate::pfwssdk")
                 for fn in ("decode_request", "read_head"))
    encode = f("pfgate::soap::envelope::encode_response") + f("pfgate::pfwssdk::soap::envelope::encode_response")
    # `decide` may be inlined into `authenticate_inline` (it is after issue #21's cheap wins): then
    # it is the rest of `authenticate_inline` after its audit event.
    decide = decide or auth - audit - for_log
    access = f("pfgate::server::access_log::record") + f("pfgate::telemetry::access_log::record")
    stages = [
        ("transport: hyper read/parse/write, rustls, tokio scheduling (outside the handler)",
         total / n - handle - lead),
        ("decode (`decode_request`: XML tree, typed request; `read_head`)", decode),
        ("engine policy/standing (`decide` net of the rows below: canonical name, checks)",
         decide - store - call - reqid),
        ("store reads (" + ", ".join(f"{k} {v:,.0f}" for k, v in reads.items()) + ")", store),
        ("call set-up and in-flight claim (`call` + the lead task net of the provider)",
         call + lead - provider),
        ("provider (scripted)", provider),
        ("audit event (`audit::emit` via tracing fmt, `username::for_log`)", audit + for_log),
        ("access log (`access_log::record`)", access),
        ("request id (`new_request_id`)", reqid),
        ("encode (`encode_response`)", encode),
        ("rest of the handler (routing, body collect, caller, respond, metrics, drops)",
         handle - engine - decode - encode - access + (engine - auth) + (auth - decide - audit - for_log)),
    ]
    print(f"total between the dumps: {total:,} instructions, {total / n:,.0f} per request\n")
    print("| stage | instructions / request | share |\n| --- | ---: | ---: |")
    for name, v in stages:
        print(f"| {name} | {v:,.0f} | {100 * v * n / total:.1f} % |")
    print(f"| sum | {sum(v for _, v in stages):,.0f} | |\n")
    print(f"inclusive top {top} (pfgate, hyper, tokio, rustls frames), per request:\n")
    print("| inclusive / request | share | function |\n| ---: | ---: | --- |")
    shown = 0
    for c, name in rows:
        if shown >= top:
            break
        if re.search(r"pfgate::|hyper::|tokio::|rustls", name) and not re.search(
                r"^(tokio::runtime::|<tokio::runtime|<core::pin::Pin|<core::future|<std::sys::thread)", name):
            print(f"| {c / n:,.0f} | {100 * c / total:.1f} % | `{name[:150]}` |")
            shown += 1


if __name__ == "__main__":
    main()
