#!/usr/bin/env bash
# Thousands of people on the phone at once (issue #9): CONNECTIONS PfAuthUser_5 calls in flight
# together over keep-alive connections while the provider takes DELAY seconds to answer.
#
# Run by hand from anywhere in the repository (not CI):   bash bench/waiters.sh
#
#   - a fake webhook provider (bench/load/fake_provider.py, asyncio) answers `pending` for DELAY
#     seconds after each start (Retry-After 10: pfgate polls each attempt every 10 s), then
#     `success`; it counts starts and polls;
#   - pfgate (release build) on plain HTTP 127.0.0.1, in-memory store, fixtures/demo.toml as its
#     directory, one route to that provider, limits.max_connections = CONNECTIONS + 100;
#   - bench/load/waiters.py opens CONNECTIONS connections, sends one PfAuthUser_5 on each (each with
#     its own number) and checks every answer (200, result true, CallResult 2, Error 0); during the
#     plateau it sends TestSecurity every 10 ms on one more connection and reports its p50/p99;
#   - pfgate's RSS and open file descriptors are sampled every 0.2 s from /proc; peak RSS is the
#     kernel's VmHWM at the end.
#
# What must be raised for 10 000 (see BENCHMARKS.md): `ulimit -n` of pfgate and of the client
# above CONNECTIONS (each waiting caller is one socket; this script checks), and pfgate's
# `limits.max_connections` (default 10 000: connections beyond it wait in the listen backlog,
# so the TestSecurity probe would wait behind the callers).
#
# Knobs: CONNECTIONS (10000), DELAY (30), PROBE (8 s), PORT (18600), PROVIDER_PORT (18601),
# SKIP_BUILD (0), TLS (0: plain HTTP; 1: the TLS listener with a self-signed certificate made for
# the run, and the client over TLS), OUT (bench/results/waiters.json), SAMPLES_OUT (none: a file to keep the RSS
# and descriptor samples in, "time rss_kb fds" per line), WRAP (none), PFGATE_BIN (target/release/pfgate:
# another binary, e.g. a copy of main's, to compare two builds in one session; implies no build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CONNECTIONS="${CONNECTIONS:-10000}"
DELAY="${DELAY:-30}"
PROBE="${PROBE:-8}"
PORT="${PORT:-18600}"
PROVIDER_PORT="${PROVIDER_PORT:-18601}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT="${OUT:-$ROOT/bench/results/waiters.json}"
note() { echo "bench/waiters.sh: $*" >&2; }
die() { note "FAILED: $*"; exit 1; }

need=$((CONNECTIONS + 200))
[ "$(ulimit -n)" -ge "$need" ] || ulimit -n "$need" 2>/dev/null ||
    die "ulimit -n is $(ulimit -n); $need open files are needed (raise the hard limit: ulimit -Hn / LimitNOFILE)"

if [ "$SKIP_BUILD" != "1" ] && [ -z "${PFGATE_BIN:-}" ]; then
    cargo build --release --bin pfgate >&2
fi
PFGATE_BIN="${PFGATE_BIN:-$ROOT/target/release/pfgate}"
[ -x "$PFGATE_BIN" ] || die "$PFGATE_BIN missing"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/secret"
chmod 600 "$WORK/secret"
export PFGATE_WEBHOOK_SECRET
PFGATE_WEBHOOK_SECRET="$(cat "$WORK/secret")"
python3 "$ROOT/bench/load/fake_provider.py" --port "$PROVIDER_PORT" --delay "$DELAY" \
    --retry-after 10 --stats "$WORK/provider.json" 2>"$WORK/provider.err" &
PROVIDER_PID=$!
PIDS+=("$PROVIDER_PID")

# TLS=1: the TLS listener, with a self-signed certificate made for the run.
if [ "${TLS:-0}" = "1" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    LISTEN="listen = \"127.0.0.1:$PORT\"
tls_cert = \"$WORK/cert.pem\"
tls_key = \"$WORK/key.pem\""
    SCHEME=https; CLIENT_TLS=--tls
else
    LISTEN="plain_listen = \"127.0.0.1:$PORT\""
    SCHEME=http; CLIENT_TLS=
fi
cat >"$WORK/pfgate.toml" <<TOML
[server]
$LISTEN
[limits]
max_connections = $((CONNECTIONS + 100))
[engine]
auth_timeout_secs = $((DELAY + 30))
[admin]
enabled = false
[auth]
allow_anonymous = true
[directory]
users_file = "$ROOT/fixtures/demo.toml"
[providers.hook]
kind = "webhook"
base_url = "http://127.0.0.1:$PROVIDER_PORT/pfgate"
secret_file = "$WORK/secret"
[[routes]]
providers = ["hook"]
TOML
# WRAP: a command to run pfgate under, for a heap profile (WRAP="heaptrack -o /tmp/waiters");
# the RSS figures are then the wrapper's, not pfgate's.
env -u RUST_LOG ${WRAP:-} "$PFGATE_BIN" serve --config "$WORK/pfgate.toml" >"$WORK/pfgate.out" 2>"$WORK/pfgate.err" &
PFGATE_PID=$!
PIDS+=("$PFGATE_PID")
for _ in $(seq 1 100); do
    grep -q "listening on $SCHEME://127.0.0.1:$PORT" "$WORK/pfgate.out" "$WORK/pfgate.err" 2>/dev/null && break
    kill -0 "$PFGATE_PID" 2>/dev/null || die "pfgate exited: $(tail -5 "$WORK/pfgate.err")"
    sleep 0.1
done
rss_idle="$(awk '/^VmRSS/ { print $2 }' "/proc/$PFGATE_PID/status")"

# Sampler: RSS and open descriptors of pfgate, every 0.2 s.
(
    while kill -0 "$PFGATE_PID" 2>/dev/null; do
        rss="$(awk '/^VmRSS/ { print $2 }' "/proc/$PFGATE_PID/status" 2>/dev/null || echo 0)"
        fds="$(find "/proc/$PFGATE_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
        echo "$(date +%s.%N) $rss $fds"
        sleep 0.2
    done
) >"$WORK/samples" &
PIDS+=("$!")

load0="$(awk '{ print $1 }' /proc/loadavg)"
cpu0="$(awk '{ print $14 + $15 }' "/proc/$PFGATE_PID/stat")"
note "pfgate pid $PFGATE_PID idle RSS ${rss_idle} kB; $CONNECTIONS callers, provider delay ${DELAY}s"
client_t0="$(date +%s.%N)"
python3 "$ROOT/bench/load/waiters.py" --port "$PORT" --connections "$CONNECTIONS" \
    --probe "$PROBE" --out "$WORK/client.json" $CLIENT_TLS >&2
cpu1="$(awk '{ print $14 + $15 }' "/proc/$PFGATE_PID/stat")"
hwm="$(awk '/^VmHWM/ { print $2 }' "/proc/$PFGATE_PID/status")"
kill -USR1 "$PROVIDER_PID"
sleep 0.5
max_rss="$(awk '$2 > m { m = $2 } END { print m }' "$WORK/samples")"
max_fds="$(awk '$3 > m { m = $3 } END { print m }' "$WORK/samples")"
access_lines="$(cat "$WORK/pfgate.out" "$WORK/pfgate.err" | grep -c 'operation=PfAuthUser_5' || true)"
mkdir -p "$(dirname "$OUT")"
[ -z "${SAMPLES_OUT:-}" ] || cp "$WORK/samples" "$SAMPLES_OUT"
python3 - "$WORK/client.json" "$WORK/provider.json" "$OUT" "$WORK/samples" <<PY
import json, sys
client = json.load(open(sys.argv[1]))
provider = json.load(open(sys.argv[2]))
# The plateau: every call sent, none answered yet (from 1 s after the last was sent to 1 s
# before the first answer). Its highest RSS is what the waiting state costs; the peak (VmHWM)
# adds what answering them all at once costs.
t0 = $client_t0
lo, hi = t0 + client["all_sent_s"] + 1, t0 + client["call_s_min"] - 1
plateau = [int(r) for t, r, _ in (l.split() for l in open(sys.argv[4])) if lo <= float(t) <= hi]
out = {"client": client, "provider": provider,
       "pfgate": {"rss_idle_kb": $rss_idle, "peak_rss_kb_vmhwm": $hwm, "max_rss_kb_sampled": $max_rss,
                  "plateau_rss_kb_max": max(plateau, default=0),
                  "max_open_fds": $max_fds, "cpu_s": ($cpu1 - $cpu0) / 100,
                  "access_log_pfauthuser5_lines": $access_lines},
       "loadavg_at_start": "$load0", "loadavg_at_end": open("/proc/loadavg").read().split()[0],
       "connections": $CONNECTIONS, "delay_s": $DELAY}
json.dump(out, open(sys.argv[3], "w"), indent=1)
print(json.dumps(out, indent=1))
PY
ok="$(python3 -c "import json,sys; print(json.load(open('$OUT'))['client']['ok'])")"
[ "$ok" = "$CONNECTIONS" ] || die "$ok of $CONNECTIONS calls answered correctly"
note "all $CONNECTIONS calls answered correctly; peak RSS ${hwm} kB"
