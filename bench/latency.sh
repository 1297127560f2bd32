#!/usr/bin/env bash
# Latency pfgate adds, and start-up to first answered request (issue #9).
#
# Run by hand from anywhere in the repository (not CI):   bash bench/latency.sh
#
# 1. Start-up: bench/load/first_answer.py spawns `pfgate serve` (plain HTTP on loopback, the demo
#    directory as users file, in-memory store) STARTS times and measures spawn → first 200 answer
#    to TestSecurity (it retries every millisecond).
# 2. Maximum rate: wrk -t1 -c32 PfAuthUser_5 (mimservice@contoso.com, +1 4255550100) against pfgate
#    with the instant in-process provider (the users file's scripted provider: it answers at once,
#    so everything measured is pfgate's own time: provider latency 0).
# 3. Added latency: hey at half that rate (HEY_WORKERS workers, each rate-limited) for HEY_SECONDS;
#    p50/p99 of the whole call. With a provider that answers in 0, the whole call is what pfgate
#    adds on top of the provider.
# 4. Added latency against a baseline in the same run: the same hey load (same rate, workers,
#    body) over TLS against bench-baseline (hyper + rustls answering a constant: the transport
#    alone) and against `pfgate serve --demo` (TLS, the demo's instant scripted provider), one
#    after the other, ROUNDS times alternating; pfgate's added p99 = its p99 − the baseline's, per
#    round. hey runs on one CPU and may not reach the rate asked for; both servers meet the same
#    client, so the difference is pfgate's (the client's own delays cancel out).
# pfgate is pinned to CPU 0, the load tool to CPU 1, as bench/run.sh does; access log at info.
#
# Knobs: STARTS (20), PORT (18620), HEY_WORKERS (16), HEY_SECONDS (20), ROUNDS (3), SKIP_BUILD (0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STARTS="${STARTS:-20}"
PORT="${PORT:-18620}"
HEY_WORKERS="${HEY_WORKERS:-16}"
HEY_SECONDS="${HEY_SECONDS:-20}"
SKIP_BUILD="${SKIP_BUILD:-0}"
URL="http://127.0.0.1:$PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
note() { echo "bench/latency.sh: $*" >&2; }
die() { note "FAILED: $*"; exit 1; }
command -v hey >/dev/null || die "hey not found (Debian package hey)"
bash "$ROOT/bench/install.sh"
[ "$SKIP_BUILD" = "1" ] || cargo build --release --bin pfgate --example bench-baseline >&2
PFGATE_BIN="$ROOT/target/release/pfgate"
BASELINE_BIN="$ROOT/target/release/examples/bench-baseline"
[ -x "$BASELINE_BIN" ] || die "$BASELINE_BIN missing (cargo build --release --example bench-baseline)"
ROUNDS="${ROUNDS:-3}"
WORK="$(mktemp -d)"
PID=""
trap '[ -z "$PID" ] || kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
cat >"$WORK/pfgate.toml" <<TOML
[server]
plain_listen = "127.0.0.1:$PORT"
[admin]
enabled = false
[auth]
allow_anonymous = true
[directory]
users_file = "$ROOT/fixtures/demo.toml"
# The demo users' scripted outcomes, named (a configuration without a provider does not start).
[providers.demo]
kind = "scripted"
[[routes]]
providers = ["demo"]
TOML

note "start-up, $STARTS runs"
startup="$(python3 "$ROOT/bench/load/first_answer.py" "$PFGATE_BIN" "$PORT" "$STARTS" "$WORK/pfgate.toml")"
echo "startup: $startup"

env -u RUST_LOG taskset -c 0 "$PFGATE_BIN" serve --config "$WORK/pfgate.toml" >/dev/null 2>&1 &
PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
taskset -c 1 wrk -t1 -c32 -d3s -s bench/pfauthuser5.lua "$URL" >/dev/null
taskset -c 1 wrk -t1 -c32 -d10s --latency -s bench/pfauthuser5.lua "$URL" >"$WORK/wrk.out"
max="$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$WORK/wrk.out")"
echo "max: $max req/s (wrk -t1 -c32 -d10s)"; grep -E "^ +(50|99)%|Non-2xx|errors" "$WORK/wrk.out" || true
half=$((max / 2))
per_worker=$(( (half + HEY_WORKERS - 1) / HEY_WORKERS ))
note "hey at $half req/s ($HEY_WORKERS workers x $per_worker/s) for ${HEY_SECONDS}s"
taskset -c 1 hey -z "${HEY_SECONDS}s" -c "$HEY_WORKERS" -q "$per_worker" -m POST \
    -T 'text/xml; charset=utf-8' -H 'SOAPAction: "http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"' \
    -D bench/soap/PfAuthUser_5.xml "$URL" >"$WORK/hey.out"
grep -E "Requests/sec|Average|Fastest|Slowest| (10|50|90|95|99)%|\[[0-9]+\]" "$WORK/hey.out"
echo "other load (loadavg): $(cut -d' ' -f1-3 /proc/loadavg)"

# 4. Same load, TLS, baseline vs pfgate, alternating.
kill "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
PID=""
TLS_PORT=$((PORT + 1))
TLS_URL="https://127.0.0.1:$TLS_PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
hey_p99() { # hey_p99 LABEL: one hey run against TLS_URL; prints "LABEL p50_ms p99_ms req/s"
    # -host: Debian's hey 0.1.4 otherwise sends "127.0.0.1:PORT" as its TLS server name, which
    # RFC 6066 forbids and rustls refuses (illegal_parameter); with -host it sends "localhost".
    taskset -c 1 hey -z "${HEY_SECONDS}s" -c "$HEY_WORKERS" -q "$per_worker" -m POST -host localhost \
        -T 'text/xml; charset=utf-8' -H 'SOAPAction: "http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"' \
        -D bench/soap/PfAuthUser_5.xml "$TLS_URL" >"$WORK/hey-$1.out"
    grep -q '\[200\]' "$WORK/hey-$1.out" || die "$1: no 200 answers ($(tail -3 "$WORK/hey-$1.out"))"
    ! grep -qE '\[[45][0-9][0-9]\][[:space:]]+[0-9]+ responses|Error distribution' "$WORK/hey-$1.out" ||
        die "$1: error answers ($(grep -A3 -E 'Status code|Error distribution' "$WORK/hey-$1.out"))"
    awk -v l="$1" '/ 50% in/ { p50 = $3 * 1000 } / 99% in/ { p99 = $3 * 1000 }
        /Requests\/sec:/ { r = $2 } END { printf "%s %.2f %.2f %d\n", l, p50, p99, r }' "$WORK/hey-$1.out"
}
serve_tls() { # serve_tls COMMAND...: starts it on CPU 0 and waits for the port
    env -u RUST_LOG taskset -c 0 "$@" >/dev/null 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null && break; sleep 0.1; done
}
note "added latency against the baseline: hey at $half req/s over TLS, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
    for server in baseline pfgate; do
        if [ "$server" = baseline ]; then
            serve_tls "$BASELINE_BIN" --listen "127.0.0.1:$TLS_PORT"
        else
            serve_tls "$PFGATE_BIN" serve --demo --listen "127.0.0.1:$TLS_PORT"
        fi
        hey_p99 "$server" >>"$WORK/rounds"
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    done
done
echo "round server p50_ms p99_ms req/s"
awk '{ print int((NR + 1) / 2), $0 }' "$WORK/rounds"
awk '$1 == "baseline" { b = $3; bp = $2 } $1 == "pfgate" { n++; d = $3 - b; dp = $2 - bp;
        printf "round %d: pfgate adds p50 %.2f ms, p99 %.2f ms\n", n, dp, d; s[n] = d }
    END { asort(s); printf "added p99, median of %d rounds: %.2f ms\n", n, s[int((n + 1) / 2)] }' "$WORK/rounds"
echo "other load (loadavg): $(cut -d' ' -f1-3 /proc/loadavg)"
