#!/bin/bash
# Server instructions per request, counted by valgrind (repeatable on a busy machine): the server
# under callgrind with 0 and with N keep-alive requests on one connection (the .NET proxy's bytes,
# bench/icount_client.py); the difference divided by N.
#
# usage: bench/icount.sh [OPTIONS] [BINARY] [N]     run from the repo root
#   BINARY              default target/release/pfgate;  N  default 1000
#   --request FILE      the SOAP body (default bench/soap/TestSecurity.xml); the SOAPAction is the
#                       operation it names
#   --demo              `pfgate serve --demo` (the default; TLS only)
#   --mock [--scenario FILE]   `pfgate mock` (TLS unless --plain: then --plain-http); without a
#                       scenario the demo directory and no rule, as `pfgate mock`
#   --config FILE       `pfgate serve --config` on a copy of FILE with {PORT} and {ROOT} (the repo
#                       root) filled in; say --plain if its listener is plain_listen
#                       (bench/icount/serve-plain.toml is the demo over plain HTTP); a relative
#                       store path and secrets_key_file = "secrets.key" land in the run's temporary
#                       directory, where a fresh key is made and the database removed before each
#                       run (serve-file.toml, serve-file-shared.toml: the demo on a SQLite file)
#   --plain             plain HTTP instead of TLS
#   --expect STRING     every response must contain STRING (default: "secure" for TestSecurity,
#                       "<OPERATIONResult>" otherwise)
#   --profile FILE      keep the callgrind data of the N requests alone (start-up and shutdown cut
#                       off with `callgrind_control --dump`) in FILE, for callgrind_annotate
#
# With no option it is the original measurement: TestSecurity through `serve --demo` over TLS.
# Output: start-up and loaded totals, the per-request difference, and (from the dump taken after
# start-up and after the requests) the instructions counted between those dumps per request — the
# second figure does not include start-up's variance (each run makes its own TLS key).
set -euo pipefail
REQUEST=bench/soap/TestSecurity.xml; MODE=demo; SCENARIO=; CONFIG=; PLAIN=; EXPECT=; PROFILE=
POSITIONAL=()
while [ $# -gt 0 ]; do
  case "$1" in
    --request) REQUEST=$2; shift 2 ;;
    --demo) MODE=demo; shift ;;
    --mock) MODE=mock; shift ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --config) MODE=config; CONFIG=$2; shift 2 ;;
    --plain) PLAIN=1; shift ;;
    --expect) EXPECT=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "icount.sh: unknown option $1" >&2; exit 2 ;;
    *) POSITIONAL+=("$1"); shift ;;
  esac
done
BIN=${POSITIONAL[0]:-target/release/pfgate}; N=${POSITIONAL[1]:-1000}; PORT=${PORT:-18473}
ROOT=$(pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

if [ "$MODE" = demo ] && [ -n "$PLAIN" ]; then
  echo "icount.sh: serve --demo is TLS only; use --config bench/icount/serve-plain.toml --plain" >&2
  exit 2
fi
case "$MODE" in
  demo) SERVER=(serve --demo --listen "127.0.0.1:$PORT") ;;
  mock)
    SERVER=(mock --listen "127.0.0.1:$PORT")
    [ -n "$PLAIN" ] && SERVER+=(--plain-http)
    [ -n "$SCENARIO" ] && SERVER+=(--scenario "$SCENARIO") ;;
  config)
    sed -e "s|{PORT}|$PORT|g" -e "s|{ROOT}|$ROOT|g" "$CONFIG" > "$OUT/pfgate.toml"
    (umask 077; head -c 32 /dev/urandom > "$OUT/secrets.key")
    SERVER=(serve --config "$OUT/pfgate.toml") ;;
esac
CLIENT=()
[ -n "$PLAIN" ] && CLIENT+=(--plain)
[ -n "$EXPECT" ] && CLIENT+=(--expect "$EXPECT")

sum_totals() {  # sum_totals FILE... -> the sum of their instruction totals
  local t=0 f v
  for f in "$@"; do
    v=$(grep -E "^(summary|totals):" "$f" | head -1 | awk '{print $2}')
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
run() {  # run REQUESTS -> "whole-run-instructions between-dumps-instructions"
  local cg="$OUT/cg.$1"
  rm -f "$OUT"/pfgate.db "$OUT"/pfgate.db-* "$OUT"/pfgate.db.lock
  valgrind --tool=callgrind --callgrind-out-file="$cg" "$BIN" "${SERVER[@]}" \
    > "$OUT/stdout.$1" 2>/dev/null &
  local vpid=$!
  for _ in $(seq 1 600); do grep -q "listening on" "$OUT/stdout.$1" 2>/dev/null && break; sleep 0.2; done
  grep -q "listening on" "$OUT/stdout.$1" || { echo "icount.sh: server did not start" >&2; exit 1; }
  callgrind_control --dump=after-start-up "$vpid" > /dev/null 2>&1
  python3 bench/icount_client.py 127.0.0.1 "$PORT" "$1" "$REQUEST" ${CLIENT[@]+"${CLIENT[@]}"}
  callgrind_control --dump=after-requests "$vpid" > /dev/null 2>&1
  kill -TERM "$vpid"; wait "$vpid" || true
  echo "$(sum_totals "$cg" "$cg".*) $(sum_totals "$cg".2)"
}
read -r base base_mid < <(run 0)
read -r loaded loaded_mid < <(run "$N")
[ -n "$PROFILE" ] && cp "$OUT/cg.$N.2" "$PROFILE"
echo "start-up: $base instructions; with $N requests: $loaded"
echo "per request: $(( (loaded - base) / N ))"
echo "per request, between dumps: $(( (loaded_mid - base_mid) / N ))"
