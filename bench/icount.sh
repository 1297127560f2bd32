#!/bin/bash
# Server instructions per TestSecurity request, counted by valgrind (repeatable on a busy machine):
# `pfgate serve --demo` under callgrind with 0 and with N keep-alive requests on one TLS connection
# (bench/soap/TestSecurity.xml, the .NET proxy's bytes); the difference divided by N.
# usage: bench/icount.sh [BINARY] [N]   (default target/release/pfgate, 1000); run from the repo root.
set -euo pipefail
BIN=${1:-target/release/pfgate}; N=${2:-1000}; PORT=${PORT:-18473}
OUT=$(mktemp -d)
total() {  # total() REQUESTS -> instructions of a whole run
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$BIN" serve --demo \
    --listen "127.0.0.1:$PORT" > "$OUT/stdout.$1" 2>/dev/null &
  local vpid=$!
  for _ in $(seq 1 600); do grep -q "listening on" "$OUT/stdout.$1" 2>/dev/null && break; sleep 0.2; done
  python3 bench/icount_client.py 127.0.0.1 "$PORT" "$1" bench/soap/TestSecurity.xml
  kill -TERM "$vpid"; wait "$vpid" || true
  grep -E "^(summary|totals):" "$OUT/cg.$1" | head -1 | awk '{print $2}'
}
base=$(total 0); loaded=$(total "$N")
echo "start-up: $base instructions; with $N requests: $loaded"
echo "per request: $(( (loaded - base) / N ))"
rm -rf "$OUT"
