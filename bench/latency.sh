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
# pfgate is pinned to CPU 0, the load tool to CPU 1, as bench/run.sh does; access log at info.
#
# Knobs: STARTS (20), PORT (18620), HEY_WORKERS (16), HEY_SECONDS (20), SKIP_BUILD (0).
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
[ "$SKIP_BUILD" = "1" ] || cargo build --release --bin pfgate >&2
PFGATE_BIN="$ROOT/target/release/pfgate"
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
