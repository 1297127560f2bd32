#!/usr/bin/env python3
"""Compares what pfgate's /metrics says about its providers with what the provider fakes saw and
what the soak client sent (issue #9: "the circuit breaker and failover numbers in /metrics match
what the provider fakes saw"). Prints a table; exits 1 when a number that must match does not.

    python3 soak_compare.py bench/results/soak      # the OUT_DIR of bench/soak.sh

Reads client.json (bench/load/soak.py), provider-{flaky,hang,backup}.json
(bench/load/fake_provider.py) and metrics.txt (the admin listener's /metrics at the end).

What must hold, with the soak's routes (alice -> [hang, backup], everyone else -> [flaky, backup]):
  - every start a fake received is one provider call pfgate counted, and the other way round:
    flaky starts = calls{flaky}, hang requests = calls{hang}, backup starts = calls{backup};
  - every failure is one error: flaky's injected 500s = errors{flaky}; hang's requests = errors{hang}
    (each one times out);
  - failover: backup is asked once for every call its route's first provider did not answer —
    backup starts = errors{flaky} + errors{hang} + skipped{flaky} + skipped{hang};
  - nothing is lost on a route: alice's PfAuthUser_5 = calls{hang} + skipped{hang};
    the rest = calls{flaky} + skipped{flaky};
  - printed, not checked: how often the hanging provider's circuit opened and went half-open.
"""
import json
import pathlib
import re
import sys


def metrics(text):
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? ([0-9.eE+-]+)$', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def main():
    d = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/soak")
    client = json.loads((d / "client.json").read_text())
    fakes = {n: json.loads((d / f"provider-{n}.json").read_text()) for n in ("flaky", "hang", "backup")}
    m = metrics((d / "metrics.txt").read_text())

    def calls(p):
        return sum(v for (name, labels), v in m.items()
                   if name == "pfgate_provider_calls_total" and ("provider", p) in labels)

    def one(name, **labels):
        want = frozenset(labels.items())
        return sum(v for (n, l), v in m.items() if n == name and want <= l)

    errors = {p: one("pfgate_provider_errors_total", provider=p) for p in fakes}
    skipped = {p: one("pfgate_provider_skipped_total", provider=p) for p in fakes}
    opened = one("pfgate_provider_breaker_transitions_total", provider="hang", to="open")
    half = one("pfgate_provider_breaker_transitions_total", provider="hang", to="half_open")
    hang_requests = fakes["hang"].get("hung_post", 0)
    alice = client["by_op"].get("PfAuthUser_5/hang", {}).get("sent", 0)
    rest = client["by_op"].get("PfAuthUser_5/flaky", {}).get("sent", 0)

    checks = [
        ("flaky: starts the fake saw = calls in /metrics", fakes["flaky"]["starts"], calls("flaky")),
        ("flaky: injected 500s = errors in /metrics", fakes["flaky"]["failed_starts"], errors["flaky"]),
        ("hang: requests the fake saw = calls in /metrics", hang_requests, calls("hang")),
        ("hang: requests the fake saw = errors in /metrics", hang_requests, errors["hang"]),
        ("backup: starts the fake saw = calls in /metrics", fakes["backup"]["starts"], calls("backup")),
        ("failover: backup starts = errors + skips of flaky and hang", fakes["backup"]["starts"],
         errors["flaky"] + errors["hang"] + skipped["flaky"] + skipped["hang"]),
        ("alice's calls (client) = hang calls + hang skips", alice, calls("hang") + skipped["hang"]),
        ("other calls (client) = flaky calls + flaky skips", rest, calls("flaky") + skipped["flaky"]),
    ]
    bad = 0
    print(f"{'check':64} {'expected':>10} {'got':>10}")
    for label, want, got in checks:
        ok = int(want) == int(got)
        bad += not ok
        print(f"{label:64} {int(want):>10} {int(got):>10} {'ok' if ok else 'MISMATCH'}")
    # Informational: how many requests reached the hanging provider while its circuit was closed
    # (the threshold's 5, plus any admitted concurrently before the 5th timed out).
    print(f"hang circuit: opened {int(opened)} times, half-open {int(half)} times"
          f" ({int(hang_requests - half)} requests while closed);"
          f" skipped: flaky {int(skipped['flaky'])}, hang {int(skipped['hang'])}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
