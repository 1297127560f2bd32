#!/usr/bin/env bash
# pfgate's mock against the tools a team would otherwise use as a PfWsSdk double (issue #9):
# WireMock (npm `wiremock`, on the machine's Java), mountebank (npm) and a spyne SOAP service
# (PyPI, in a venv), each answering the same PfAuthUser_5 request with the same fixed response.
#
# Run by hand from anywhere in the repository (not CI):   bash bench/side_by_side.sh
#
# Installs (once) into ALT_DIR (default bench/.alt, ignored by git): wiremock 3.13.2 and
# mountebank 2.9.1 with npm, spyne 2.14 + lxml with pip in ALT_DIR/venv. Needs java 17, node, npm,
# python3, wrk (bench/install.sh), curl, taskset.
#
# Every server listens on 127.0.0.1, pinned to CPU 0; wrk (one thread, CONNECTIONS connections,
# keep-alive, the bench/pfauthuser5.lua request) is pinned to CPU 1; WARMUP then DURATION per run,
# RUNS rounds interleaved, median. The fixed response is the one pfgate's mock gives (captured
# from it at the start), so WireMock and mountebank send the same bytes; spyne builds its own
# envelope with the same values (result true, CallResult 2 \"No PIN Entered\", Error 0). Plain HTTP for all; TLS for
# pfgate, WireMock and mountebank (spyne's wsgiref server has none). Each tool runs with its
# request journal/recording off and logging quiet, as fast as it is documented to go.
#
# Knobs: DURATION (10s), WARMUP (5s), RUNS (1), CONNECTIONS (32), ALT_DIR, SKIP_BUILD (0),
# PFGATE_BIN (target/release/pfgate: another build, e.g. one without the examples' features),
# P_PLAIN, P_TLS, MB_ADMIN (ports, 18701-18703: they must be free),
# TOOLS ("pfgate wiremock mountebank spyne"), OUT (bench/results/side_by_side.md),
# PROTOCOLS ("http https": the pinned one-core comparison of issue #21 is plain HTTP alone,
# PROTOCOLS=http), SCENARIO (empty: `pfgate mock` with the demo directory and no rule; a file,
# e.g. bench/icount/mock-rule.toml: the request is a rule hit, as bench/icount.sh --mock counts it).
#
# Issue #21's run (server on CPU 0, wrk on CPU 1, plain HTTP keep-alive, a rule hit), on a quiet
# machine:   PROTOCOLS=http SCENARIO=bench/icount/mock-rule.toml RUNS=3 bash bench/side_by_side.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-5s}"
RUNS="${RUNS:-1}"
CONNECTIONS="${CONNECTIONS:-32}"
ALT_DIR="${ALT_DIR:-$ROOT/bench/.alt}"
SKIP_BUILD="${SKIP_BUILD:-0}"
TOOLS="${TOOLS:-pfgate wiremock mountebank spyne}"
PROTOCOLS="${PROTOCOLS:-http https}"
SCENARIO="${SCENARIO:-}"
OUT="${OUT:-$ROOT/bench/results/side_by_side.md}"
SDK_PATH="/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
P_PLAIN="${P_PLAIN:-18701}" P_TLS="${P_TLS:-18702}" MB_ADMIN="${MB_ADMIN:-18703}"
note() { echo "bench/side_by_side.sh: $*" >&2; }
die() { note "FAILED: $*"; exit 1; }
# Another server already on a port would be measured in place of the tool (or make it fail).
for port in "$P_PLAIN" "$P_TLS" "$MB_ADMIN"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "something already listens on 127.0.0.1:$port (set P_PLAIN, P_TLS, MB_ADMIN)"
    fi
done

# --- install ---------------------------------------------------------------------------------
bash "$ROOT/bench/install.sh"
mkdir -p "$ALT_DIR"
if [ ! -x "$ALT_DIR/node_modules/.bin/wiremock" ] || [ ! -x "$ALT_DIR/node_modules/.bin/mb" ]; then
    note "installing wiremock and mountebank (npm) into $ALT_DIR"
    (cd "$ALT_DIR" && { [ -f package.json ] || echo '{"name": "pfgate-bench-alt", "private": true}' >package.json; } &&
        npm install --no-audit --no-fund wiremock@3.13.2 mountebank@2.9.1 >&2)
fi
if [ ! -x "$ALT_DIR/venv/bin/python" ] || ! "$ALT_DIR/venv/bin/python" -c 'import spyne, lxml' 2>/dev/null; then
    note "installing spyne (pip) into $ALT_DIR/venv"
    python3 -m venv "$ALT_DIR/venv"
    "$ALT_DIR/venv/bin/pip" install -q 'spyne==2.14.*' 'lxml==6.*' >&2
fi
if [ "$SKIP_BUILD" != "1" ]; then
    cargo build --release --bin pfgate >&2
fi
PFGATE_BIN="${PFGATE_BIN:-$ROOT/target/release/pfgate}"
MOCK_ARGS=()
if [ -n "$SCENARIO" ]; then
    [ -f "$SCENARIO" ] || { echo "bench/side_by_side.sh: no scenario $SCENARIO" >&2; exit 2; }
    MOCK_ARGS=(--scenario "$SCENARIO")
fi
want() { [[ " $PROTOCOLS " == *" $1 "* ]]; } # want PROTO: is it measured

WORK="$(mktemp -d)"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        # the tools start children (node -> java): stop the whole process group
        kill -- "-$SERVER_PID" 2>/dev/null || kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        sleep 0.5
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# start CMD...: in its own process group, pinned to CPU 0, output to $WORK/server.log
start() {
    : >"$WORK/server.log"
    setsid taskset -c 0 "$@" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}
wait_port() { # wait_port PORT: until it accepts (60 s: the JVM is slow to start)
    local _
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -5 "$WORK/server.log")"
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 after 60 s: $(tail -5 "$WORK/server.log")"
}
call() { # call URL OUTFILE: one PfAuthUser_5 with the wrk script's headers and body
    curl -sk -o "$2" -w '%{http_code}' --max-time 20 \
        -H 'User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)' \
        -H 'Content-Type: text/xml; charset=utf-8' \
        -H 'SOAPAction: "http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"' -H 'Expect:' \
        --data-binary "@$ROOT/bench/soap/PfAuthUser_5.xml" "$1"
}
check() { # check URL: the answer must be the approved PfAuthUser_5
    local code
    code="$(call "$1" "$WORK/check.out")" || die "curl $1 failed"
    [ "$code" = "200" ] || die "$1 answered HTTP $code: $(head -c 300 "$WORK/check.out")"
    grep -q "PfAuthUser_5Result>true</" "$WORK/check.out" || die "$1: not approved: $(head -c 600 "$WORK/check.out")"
    grep -Eq 'callResult><([a-z0-9]+:)?Code>2<' "$WORK/check.out" || die "$1: CallResult is not 2: $(head -c 600 "$WORK/check.out")"
}
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}
measure() { # measure URL NAME: warm-up, then one wrk run; appends "NAME rps p50 p99" to results
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -s bench/pfauthuser5.lua "$1" >/dev/null 2>&1 || true
    local o="$WORK/wrk.out" other0 other1 srv0 srv1
    other0="$(awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat)"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/pfauthuser5.lua "$1" >"$o" 2>&1 ||
        die "wrk failed: $(cat "$o")"
    other1="$(awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat)"
    local rps p50 p99 errs
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$o")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$o")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$o")")"
    errs="$(awk '/Non-2xx|Socket errors/ { $1 = $1; printf "%s; ", $0 }' "$o")"
    echo "$2 $rps $p50 $p99 ${errs:-none}" >>"$WORK/results"
    note "$2: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors: ${errs:-none}; machine busy $(( (other1 - other0) ))j"
}

# --- the fixed response: what pfgate's mock answers ------------------------------------------
start "$PFGATE_BIN" mock --plain-http --listen "127.0.0.1:$P_PLAIN" ${MOCK_ARGS[@]+"${MOCK_ARGS[@]}"}
wait_port "$P_PLAIN"
check "http://127.0.0.1:$P_PLAIN$SDK_PATH"
cp "$WORK/check.out" "$WORK/response.xml"
stop_server
request_id="$(sed -n 's/.*<authenticationRequestId>\([^<]*\)<.*/\1/p' "$WORK/response.xml")"
note "fixed response: $(wc -c <"$WORK/response.xml") bytes, request id $request_id"

python3 - "$WORK/response.xml" "$WORK" "$SDK_PATH" "$P_PLAIN" "$P_TLS" <<'PY'
import json, sys
body = open(sys.argv[1]).read()
work, path = sys.argv[2], sys.argv[3]
plain_port, tls_port = int(sys.argv[4]), int(sys.argv[5])
headers = {"Content-Type": "text/xml; charset=utf-8", "Cache-Control": "private, max-age=0"}
json.dump({"request": {"method": "POST", "urlPath": path,
                       "headers": {"SOAPAction": {"contains": "PfAuthUser_5"}}},
           "response": {"status": 200, "headers": headers, "body": body}},
          open(f"{work}/wiremock-mapping.json", "w"))
stub = {"predicates": [{"equals": {"method": "POST", "path": path}},
                       {"contains": {"headers": {"SOAPAction": "PfAuthUser_5"}}}],
        "responses": [{"is": {"statusCode": 200, "headers": headers, "body": body}}]}
for proto, port in (("http", plain_port), ("https", tls_port)):
    json.dump({"port": port, "protocol": proto, "recordRequests": False, "stubs": [stub]},
              open(f"{work}/mb-{proto}.json", "w"))
PY

: >"$WORK/results"
for round in $(seq 1 "$RUNS"); do
    for tool in $TOOLS; do
        case "$tool" in
        pfgate)
            if want http; then
                start "$PFGATE_BIN" mock --plain-http --listen "127.0.0.1:$P_PLAIN" ${MOCK_ARGS[@]+"${MOCK_ARGS[@]}"}
                wait_port "$P_PLAIN"; check "http://127.0.0.1:$P_PLAIN$SDK_PATH"
                measure "http://127.0.0.1:$P_PLAIN$SDK_PATH" "pfgate-mock/http"
                stop_server
            fi
            if want https; then
                start "$PFGATE_BIN" mock --listen "127.0.0.1:$P_TLS" ${MOCK_ARGS[@]+"${MOCK_ARGS[@]}"}
                wait_port "$P_TLS"; check "https://127.0.0.1:$P_TLS$SDK_PATH"
                measure "https://127.0.0.1:$P_TLS$SDK_PATH" "pfgate-mock/https"
                stop_server
            fi
            ;;
        wiremock)
            mkdir -p "$WORK/wm/mappings"
            cp "$WORK/wiremock-mapping.json" "$WORK/wm/mappings/pfauthuser5.json"
            start "$ALT_DIR/node_modules/.bin/wiremock" --port "$P_PLAIN" --https-port "$P_TLS" \
                --root-dir "$WORK/wm" --no-request-journal --disable-banner
            wait_port "$P_PLAIN"; wait_port "$P_TLS"
            want http && check "http://127.0.0.1:$P_PLAIN$SDK_PATH"
            want https && check "https://127.0.0.1:$P_TLS$SDK_PATH"
            want http && measure "http://127.0.0.1:$P_PLAIN$SDK_PATH" "wiremock/http"
            want https && measure "https://127.0.0.1:$P_TLS$SDK_PATH" "wiremock/https"
            stop_server
            ;;
        mountebank)
            start "$ALT_DIR/node_modules/.bin/mb" --port "$MB_ADMIN" --loglevel warn --localOnly \
                --logfile "$WORK/mb.log" --pidfile "$WORK/mb.pid"
            wait_port "$MB_ADMIN"
            for proto in http https; do
                curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
                    --data-binary "@$WORK/mb-$proto.json" "http://127.0.0.1:$MB_ADMIN/imposters" ||
                    die "mountebank refused the $proto imposter"
            done
            wait_port "$P_PLAIN"; wait_port "$P_TLS"
            want http && check "http://127.0.0.1:$P_PLAIN$SDK_PATH"
            want https && check "https://127.0.0.1:$P_TLS$SDK_PATH"
            want http && measure "http://127.0.0.1:$P_PLAIN$SDK_PATH" "mountebank/http"
            want https && measure "https://127.0.0.1:$P_TLS$SDK_PATH" "mountebank/https"
            stop_server
            ;;
        spyne)
            start "$ALT_DIR/venv/bin/python" "$ROOT/bench/alt/spyne_pfwssdk.py" "$P_PLAIN" "$request_id"
            wait_port "$P_PLAIN"; check "http://127.0.0.1:$P_PLAIN$SDK_PATH"
            measure "http://127.0.0.1:$P_PLAIN$SDK_PATH" "spyne/http"
            stop_server
            ;;
        *) die "unknown tool $tool" ;;
        esac
    done
done

# --- table -----------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
python3 - "$WORK/results" "$OUT" "$CONNECTIONS" "$DURATION" "$RUNS" "$SCENARIO" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
errs = collections.defaultdict(set)
for line in open(sys.argv[1]):
    name, rps, p50, p99, e = line.split(" ", 4)
    rows[name].append((float(rps), float(p50), float(p99)))
    errs[name].add(e.strip())
med = {}
for name, rs in rows.items():
    rs.sort()
    med[name] = rs[len(rs) // 2]
out = [f"wrk -t1 -c{sys.argv[3]} -d{sys.argv[4]} --latency -s bench/pfauthuser5.lua URL; "
       f"{sys.argv[5]} round(s), median; servers on CPU 0, wrk on CPU 1; "
       f"pfgate mock scenario: {sys.argv[6] or 'none (demo directory, no rule)'}", "",
       "| server / protocol | req/s | p50 ms | p99 ms | pfgate req/s ÷ this | this p99 ÷ pfgate p99 | errors |",
       "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
for name, (rps, p50, p99) in med.items():
    proto = name.split("/")[1]
    ref = med.get(f"pfgate-mock/{proto}")
    ratio = f"{ref[0] / rps:.1f}" if ref else "—"
    p99r = f"{p99 / ref[2]:.1f}" if ref and ref[2] else "—"
    out.append(f"| {name} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {ratio} | {p99r} | {'; '.join(sorted(errs[name]))} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
