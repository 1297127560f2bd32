#!/bin/bash
# Side by side in one run: pfgate builds, configurations and the bare hyper server, plain HTTP on
# 127.0.0.1, the server pinned to SERVER_CPU and wrk to CLIENT_CPU, ROUNDS interleaved rounds (each
# round starts every server once and measures every request on it), then the median req/s of each
# server and request and its ratio to the first server named.
#
# usage: bash bench/ab.sh LABEL=SPEC [LABEL=SPEC ...]      (from the repo root; wrk: bench/install.sh)
#   SPEC  BINARY           `BINARY serve` on bench/icount/serve-plain.toml (the demo, plain HTTP,
#                          in-memory store)
#         BINARY@CONFIG    `BINARY serve` on a copy of CONFIG with {PORT} and {ROOT} filled in, run
#                          in a fresh directory with a fresh secrets.key (bench/icount/serve-file.toml:
#                          the demo on a SQLite file; serve-file-shared.toml: the same, shared mode)
#         bare             bench-baseline --plain (hyper, multi-threaded runtime, fixed replies)
#         bare1            bench-baseline --plain --current-thread (issue #21's bar)
# e.g.  bash bench/ab.sh old=/tmp/pfgate-old new=target/release/pfgate
#       bash bench/ab.sh bare1=bare1 serve=target/release/pfgate
#
# Knobs: ROUNDS (3), DURATION (8s), WARMUP (2s), CONNECTIONS (32), REQUESTS ("test_security
# pfauthuser5": bench/*.lua), SERVER_CPU (0), CLIENT_CPU (1), PORT (18556).
# Wall-clock figures: run only on a quiet machine (nobody compiling) and say so.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,21p' "$0"; exit 2; }
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-8s}; WARMUP=${WARMUP:-2s}; CONNECTIONS=${CONNECTIONS:-32}
REQUESTS=${REQUESTS:-"test_security pfauthuser5"}; SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}; PORT=${PORT:-18556}
ROOT=$(pwd)
BARE="$ROOT/target/release/examples/bench-baseline"
URL="http://127.0.0.1:$PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
RESULTS="$WORK/results"; : > "$RESULTS"

# start LABEL SPEC: starts the server in the background; sets PID.
start() {
  local label=$1 spec=$2 bin config dir
  case "$spec" in
    bare|bare1)
      [ -x "$BARE" ] || { echo "ab.sh: $BARE missing: cargo build --release --example bench-baseline" >&2; exit 1; }
      local flags=(--plain); [ "$spec" = bare1 ] && flags+=(--current-thread)
      taskset -c "$SERVER_CPU" "$BARE" --listen "127.0.0.1:$PORT" "${flags[@]}" > /dev/null 2>&1 &
      ;;
    *)
      bin=${spec%%@*}; config=bench/icount/serve-plain.toml
      [ "$bin" != "$spec" ] && config=${spec#*@}
      dir="$WORK/$label"; rm -rf "$dir"; mkdir -p "$dir"
      (umask 077; head -c 32 /dev/urandom > "$dir/secrets.key")
      sed "s/{PORT}/$PORT/g; s#{ROOT}#$ROOT#g" "$config" > "$dir/pfgate.toml"
      bin=$(cd "$ROOT" && realpath "$bin")
      (cd "$dir" && exec taskset -c "$SERVER_CPU" "$bin" serve --config pfgate.toml > /dev/null 2>&1) &
      ;;
  esac
  PID=$!
  for _ in $(seq 50); do curl -s -o /dev/null "$URL" && return 0; sleep 0.1; done
  echo "ab.sh: $label ($spec) did not start" >&2; exit 1
}

# The server's CPU ticks (user + system); PID is the server itself (taskset and the shell exec it).
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

for round in $(seq "$ROUNDS"); do
  for arg in "$@"; do
    label=${arg%%=*}; spec=${arg#*=}
    start "$label" "$spec"
    for request in $REQUESTS; do
      lua="bench/$request.lua"
      taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -s "$lua" "$URL" > /dev/null 2>&1
      t0=$(ticks "$PID")
      out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$lua" "$URL")
      t1=$(ticks "$PID")
      rps=$(awk '/Requests\/sec/{print $2}' <<< "$out")
      errors=$(awk '/Non-2xx|Socket errors/{print}' <<< "$out")
      [ -z "$errors" ] || { echo "ab.sh: $label $request: $errors" >&2; exit 1; }
      echo "$round $label $request $rps $((t1 - t0))" | tee -a "$RESULTS"
    done
    kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true
  done
done

echo
echo "| server | request | median req/s | runs | ratio to $(echo "${1%%=*}") |"
echo "| --- | --- | ---: | --- | ---: |"
python3 - "$RESULTS" "${1%%=*}" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
first = sys.argv[2]
runs = {}
for _, label, request, rps, _ticks in rows:
    runs.setdefault((label, request), []).append(float(rps))
for (label, request), values in runs.items():
    median = statistics.median(values)
    base = statistics.median(runs[(first, request)])
    listed = ", ".join(f"{v:,.0f}" for v in values)
    print(f"| {label} | {request} | {median:,.0f} | {listed} | {median / base:.2f} |")
EOF
