#!/usr/bin/env bash
# pfgate throughput and latency against a minimal hyper + rustls baseline (bench/baseline.rs).
#
# Run by hand from anywhere in the repository (not part of CI):   bash bench/run.sh
#
# What it does:
#   1. builds release pfgate and the baseline example, installs wrk if missing (bench/install.sh);
#   2. for each of RUNS rounds, one server at a time, the server pinned to core 0 and wrk to core 1:
#        baseline  (c)  TestSecurity body, fixed TestSecurity response
#        pfgate    (a)  TestSecurity           (serve --demo, access log at info to /dev/null)
#                  (b)  PfAuthUser_5, +1 4255550100 (approved at once by the demo's scripted provider)
#        pfgate with RUST_LOG=warn (extra rows, QUIET_ROWS=1): (a) and (b) without the access log
#      each server's answer is checked once with curl first, and every measurement has a warm-up;
#      it waits for the machine to be idle before each measurement and redoes a run during which
#      other processes took more than 5% of a CPU (a concurrent build halves the figures here);
#   3. prints a markdown table of the medians (req/s, p50, p99) and the ratios pfgate ÷ baseline,
#      and writes it to bench/results/latest.md.
#
# Every server it starts listens on 127.0.0.1 only and is killed on exit.
#
# Knobs (environment): DURATION (10s), WARMUP (2s), RUNS (3), CONNECTIONS (32), SERVER_CPU (0),
# CLIENT_CPU (1), PFGATE_PORT (18443), BASELINE_PORT (18444), QUIET_ROWS (1), SKIP_BUILD (0),
# QUIET_WAIT (600: seconds to wait, before each measurement, for the machine to be idle),
# RETRIES (3: how often a run disturbed by other processes is redone),
# BENCH_COMMIT (the label for what is measured; default: git rev-parse --short HEAD, marked when the
# tree outside bench/ has uncommitted changes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
RUNS="${RUNS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
PFGATE_PORT="${PFGATE_PORT:-18443}"
BASELINE_PORT="${BASELINE_PORT:-18444}"
QUIET_ROWS="${QUIET_ROWS:-1}"
SKIP_BUILD="${SKIP_BUILD:-0}"
QUIET_WAIT="${QUIET_WAIT:-600}"
RETRIES="${RETRIES:-3}"
LAST_RESULT=""
SDK_PATH="/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
RESULTS_DIR="$ROOT/bench/results"

die() {
    echo "bench/run.sh: FAILED: $*" >&2
    exit 1
}
note() { echo "bench/run.sh: $*" >&2; }

WORK="$(mktemp -d)"
SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build and tools ---------------------------------------------------------------------------
if [ "$SKIP_BUILD" != "1" ]; then
    note "building release pfgate and bench-baseline"
    cargo build --release --bin pfgate --example bench-baseline >&2
fi
PFGATE_BIN="$ROOT/target/release/pfgate"
BASELINE_BIN="$ROOT/target/release/examples/bench-baseline"
[ -x "$PFGATE_BIN" ] || die "$PFGATE_BIN missing"
[ -x "$BASELINE_BIN" ] || die "$BASELINE_BIN missing"
bash "$ROOT/bench/install.sh"
for tool in wrk curl taskset; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server on $SERVER_CPU, client on $CLIENT_CPU)"

for port in "$PFGATE_PORT" "$BASELINE_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use"
    fi
done

# --- servers -----------------------------------------------------------------------------------
# start_server NAME PORT ENV... -- CMD...: starts one server pinned to SERVER_CPU, waits for its
# "listening on https://" line. Logs (stderr) go to /dev/null, as a deployment's would go to a file.
start_server() {
    local name="$1" port="$2"
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    shift
    local out="$WORK/$name.stdout"
    : >"$out"
    env -u RUST_LOG "${envs[@]}" taskset -c "$SERVER_CPU" "$@" >"$out" 2>/dev/null &
    SERVER_PID=$!
    local _
    for _ in $(seq 1 100); do
        if grep -q "listening on https://127.0.0.1:$port" "$out"; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "$name exited during start-up"
        sleep 0.1
    done
    die "$name did not report listening on 127.0.0.1:$port within 10 s"
}

start_baseline() {
    start_server baseline "$BASELINE_PORT" -- "$BASELINE_BIN" --listen "127.0.0.1:$BASELINE_PORT"
}
start_pfgate() { # start_pfgate [ENV=VALUE...]
    start_server pfgate "$PFGATE_PORT" "$@" -- "$PFGATE_BIN" serve --demo --listen "127.0.0.1:$PFGATE_PORT"
}

# --- requests ----------------------------------------------------------------------------------
# check PORT OPERATION EXPECTED: one request with curl, the same headers and body as the wrk script.
check() {
    local port="$1" op="$2" expected="$3"
    local body_file="$ROOT/bench/soap/$op.xml" out="$WORK/check.out" code
    code="$(curl -sk -o "$out" -w '%{http_code}' --max-time 10 \
        -H 'User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)' \
        -H 'Content-Type: text/xml; charset=utf-8' \
        -H "SOAPAction: \"http://www.phonefactor.com/PfWsSdk/$op\"" \
        -H 'Expect:' \
        --data-binary "@$body_file" \
        "https://127.0.0.1:$port$SDK_PATH")" || die "curl to 127.0.0.1:$port ($op) failed"
    [ "$code" = "200" ] || die "$op on 127.0.0.1:$port answered HTTP $code: $(head -c 400 "$out")"
    grep -qF "$expected" "$out" || die "$op on 127.0.0.1:$port: response lacks $expected: $(head -c 600 "$out")"
}

# load PORT SCRIPT DURATION OUT: one wrk run with the client pinned to CLIENT_CPU.
load() {
    local port="$1" script="$2" duration="$3" out="$4"
    # The subshell's `times` gives wrk's CPU time (its only child), for the disturbance check.
    (
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$duration" --latency \
            -s "bench/$script.lua" "https://127.0.0.1:$port$SDK_PATH" >"$out" 2>&1
        rc=$?
        times >"$out.times"
        exit $rc
    ) || die "wrk failed: $(cat "$out")"
}

# --- disturbance: a concurrent build on this 2-CPU machine skews everything -----------------------
builders() { # how many compiler/linker processes are running (cargo itself mostly waits: not counted)
    # shellcheck disable=SC2009 # one count over several exact names; pgrep -x with a long pattern warns
    ps -eo comm= | grep -cxE 'rustc|cc1|cc1plus|cc|c\+\+|ld|ld\.lld|clang|lld|mold' || true
}
cpu_busy() { # jiffies all CPUs spent in user, nice and system mode since boot
    awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat
}
pid_jiffies() { # utime + stime of one process
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
times_jiffies() { # children's user + sys from a `times` output file, in jiffies
    awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        printf "%d", t * hz }' "$1"
}
# idle_other: % of one CPU used over 2 s by anything but the (idle) server under test.
idle_other() {
    local c0 s0 c1 s1
    c0="$(cpu_busy)" s0="$(pid_jiffies "$SERVER_PID")"
    sleep 2
    c1="$(cpu_busy)" s1="$(pid_jiffies "$SERVER_PID")"
    awk -v o=$(((c1 - c0) - (s1 - s0))) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f", o / (2 * hz) * 100 }'
}
# wait_quiet: before a measurement, wait (up to QUIET_WAIT seconds) until no compiler runs and the
# rest of the machine uses at most 5% of a CPU.
wait_quiet() {
    local waited=0 other
    while [ "$waited" -lt "$QUIET_WAIT" ]; do
        other="$(idle_other)"
        if [ "$(builders)" = "0" ] && [ "$other" -le 5 ]; then
            return 0
        fi
        [ "$waited" -gt 0 ] || note "machine busy (${other}% of a CPU used by others); waiting up to ${QUIET_WAIT}s"
        sleep 3
        waited=$((waited + 5))
    done
    note "still busy after ${QUIET_WAIT}s; measuring anyway"
}

to_ms() { # wrk duration (850.00us, 1.23ms, 2.00s, 3.00m) -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        else if (u != "ms") { print "NaN"; exit 1 }
        printf "%.3f", n }'
}

# measure KEY PORT SCRIPT: warm-up, then one measured run; appends "rps p50 p99 other" to
# $WORK/KEY. A run during which other processes used more than 5% of a CPU is discarded and redone
# (up to RETRIES times); the last attempt is kept either way, with its figure shown in the table.
measure() {
    local key="$1" port="$2" script="$3" attempt
    for attempt in $(seq 0 "$RETRIES"); do
        wait_quiet
        if measure_once "$key" "$port" "$script"; then
            return 0
        fi
        if [ "$attempt" -lt "$RETRIES" ]; then
            note "$key: discarding the disturbed run and measuring again"
        fi
    done
    echo "$LAST_RESULT" >>"$WORK/$key"
}

# measure_once KEY PORT SCRIPT: succeeds (and records the result) when the run was undisturbed.
measure_once() {
    local key="$1" port="$2" script="$3"
    local out
    out="$WORK/wrk.$key.$(date +%s%N).txt"
    load "$port" "$script" "$WARMUP" "$WORK/warmup.txt"
    local busy cpu0 srv0 t0 cpu1 srv1 t1 other
    busy="$(builders)"
    cpu0="$(cpu_busy)" srv0="$(pid_jiffies "$SERVER_PID")" t0="$(date +%s%N)"
    load "$port" "$script" "$DURATION" "$out"
    cpu1="$(cpu_busy)" srv1="$(pid_jiffies "$SERVER_PID")" t1="$(date +%s%N)"
    busy=$((busy + $(builders)))
    # CPU used by anything but this server and wrk, in % of one CPU over the measured run.
    other="$(awk -v c=$((cpu1 - cpu0)) -v s=$((srv1 - srv0)) -v w="$(times_jiffies "$out.times")" \
        -v ns=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { o = (c - s - w) / (ns / 1e9 * hz) * 100; printf "%.0f", (o < 0 ? 0 : o) }')"
    if grep -q "Non-2xx or 3xx responses" "$out"; then
        die "$key: wrk saw error responses: $(grep 'Non-2xx' "$out")"
    fi
    local rps p50 p99 errors
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    if [ -z "$rps" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
        die "$key: cannot parse wrk output: $(cat "$out")"
    fi
    # Server CPU per request (user + system), from its jiffies over the measured run: the figure
    # that does not depend on how quickly wrk, on the other core, happens to be woken.
    local requests cpu_us
    requests="$(awk '/requests in/ {print $1}' "$out")"
    cpu_us="$(awk -v j=$((srv1 - srv0)) -v n="${requests:-0}" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0) printf "%.1f", j / hz * 1e6 / n; else print "NaN" }')"
    errors="$(grep -E '^ *Socket errors' "$out" || true)"
    [ -z "$errors" ] || note "$key: $errors"
    note "$(printf '%-22s %10s req/s  p50 %8s ms  p99 %8s ms  cpu %6s us/req  other load %3s%%' "$key" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" "$cpu_us" "$other")"
    LAST_RESULT="$rps $(to_ms "$p50") $(to_ms "$p99") $other $cpu_us"
    if [ "$other" -gt 5 ]; then
        note "$key: WARNING: disturbed: others used ${other}% of a CPU ($busy compiler/linker processes seen)"
        return 1
    fi
    echo "$LAST_RESULT" >>"$WORK/$key"
}

# --- the runs, interleaved ---------------------------------------------------------------------
note "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
note "wrk -t1 -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU, $RUNS rounds"
for round in $(seq 1 "$RUNS"); do
    note "round $round/$RUNS"

    start_baseline
    check "$BASELINE_PORT" TestSecurity "<TestSecurityResult>secure</TestSecurityResult>"
    measure baseline_ts "$BASELINE_PORT" test_security
    stop_server

    start_pfgate
    check "$PFGATE_PORT" TestSecurity "<TestSecurityResult>secure</TestSecurityResult>"
    check "$PFGATE_PORT" PfAuthUser_5 "<PfAuthUser_5Result>true</PfAuthUser_5Result>"
    measure pfgate_ts "$PFGATE_PORT" test_security
    measure pfgate_auth "$PFGATE_PORT" pfauthuser5
    stop_server

    if [ "$QUIET_ROWS" = "1" ]; then
        start_pfgate RUST_LOG=warn
        check "$PFGATE_PORT" TestSecurity "<TestSecurityResult>secure</TestSecurityResult>"
        check "$PFGATE_PORT" PfAuthUser_5 "<PfAuthUser_5Result>true</PfAuthUser_5Result>"
        measure quiet_ts "$PFGATE_PORT" test_security
        measure quiet_auth "$PFGATE_PORT" pfauthuser5
        stop_server
    fi
done

# --- report ------------------------------------------------------------------------------------
median_col() { # median_col KEY COLUMN
    awk -v c="$2" '{print $c}' "$WORK/$1" | sort -g | awk '{v[NR] = $1} END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
runs_col() { # runs_col KEY COLUMN: the per-run values, comma-separated
    awk -v c="$2" '{printf "%s%s", (NR > 1 ? ", " : ""), $c}' "$WORK/$1"
}
revision() { # what was measured: BENCH_COMMIT if given (e.g. for an exported tree), else git's view
    if [ -n "${BENCH_COMMIT:-}" ]; then
        echo "commit $BENCH_COMMIT"
    elif git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1; then
        local dirty=""
        if [ -n "$(git -C "$ROOT" status --porcelain -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null)" ]; then
            dirty=" plus uncommitted changes"
        fi
        echo "commit $(git -C "$ROOT" rev-parse --short HEAD)$dirty"
    else
        echo "commit unknown"
    fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

row() { # row KEY LABEL
    printf '| %s | %.0f | %.3f | %.3f | %.1f | %s | %s |\n' "$2" "$(median_col "$1" 1)" "$(median_col "$1" 2)" \
        "$(median_col "$1" 3)" "$(median_col "$1" 5)" "$(runs_col "$1" 1)" "$(runs_col "$1" 4)"
}

base_rps="$(median_col baseline_ts 1)"
{
    echo "### pfgate vs. baseline ($(date -u '+%Y-%m-%d %H:%M UTC'), $(revision))"
    echo
    echo "wrk -t1 -c$CONNECTIONS -d$DURATION --latency (after a $WARMUP warm-up), HTTPS keep-alive on 127.0.0.1;"
    echo "server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; median of $RUNS interleaved runs (each column's median on its own)."
    echo "A run during which other processes used over 5% of a CPU was redone (up to $RETRIES times)."
    echo
    echo "| scenario | req/s | p50 ms | p99 ms | server CPU µs/req | req/s per run | other load per run (% of a CPU) |"
    echo "| --- | ---: | ---: | ---: | ---: | --- | --- |"
    row baseline_ts "(c) baseline, fixed TestSecurity response"
    row pfgate_ts "(a) pfgate TestSecurity"
    row pfgate_auth "(b) pfgate PfAuthUser_5 (demo, approved)"
    if [ "$QUIET_ROWS" = "1" ]; then
        row quiet_ts "extra: (a) with RUST_LOG=warn (no access log)"
        row quiet_auth "extra: (b) with RUST_LOG=warn (no access log)"
    fi
    echo
    echo "| ratio (req/s ÷ baseline req/s) | value | bar ≥ 0.70 |"
    echo "| --- | ---: | --- |"
    for pair in "pfgate_ts:(a) TestSecurity" "pfgate_auth:(b) PfAuthUser_5"; do
        key="${pair%%:*}"
        r="$(ratio "$(median_col "$key" 1)" "$base_rps")"
        met="$(awk -v r="$r" 'BEGIN { print (r >= 0.70 ? "met" : "NOT met") }')"
        echo "| ${pair#*:} | $r | $met |"
    done
    if [ "$QUIET_ROWS" = "1" ]; then
        for pair in "quiet_ts:extra: (a) RUST_LOG=warn" "quiet_auth:extra: (b) RUST_LOG=warn"; do
            key="${pair%%:*}"
            echo "| ${pair#*:} | $(ratio "$(median_col "$key" 1)" "$base_rps") | (not the bar) |"
        done
    fi
} >"$WORK/table.md"

mkdir -p "$RESULTS_DIR"
cp "$WORK/table.md" "$RESULTS_DIR/latest.md"
cat "$WORK/table.md"
note "written to bench/results/latest.md"
