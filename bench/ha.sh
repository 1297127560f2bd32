#!/usr/bin/env bash
# Authentications per second and p99 latency for one and two pfgate instances on SQLite and on
# PostgreSQL (issue #7, docs/ha.md), with the provider answering at once.
#
# Run by hand from anywhere in the repository (not part of CI):   bash bench/ha.sh
#
# Scenarios, interleaved over RUNS rounds, each on a fresh store:
#   sqlite-1    one instance, store.path = a SQLite file (WAL) in a temporary directory
#   sqlite-2    two instances on that one file (two processes on one host: as far as SQLite goes)
#   postgres-1  one instance, store.url = DATABASE_URL, in a schema of its own
#   postgres-2  two instances on that one schema
# Every instance: plain HTTP on 127.0.0.1 (the stores are compared, not TLS; bench/run.sh measures
# TLS), the demo directory fixtures/demo.toml as users file and no provider configured, so the
# scripted provider approves at once; the access log at info to /dev/null, as in bench/run.sh.
# Load: wrk --latency with bench/pfauthuser5_numbers.lua, PfAuthUser_5 for mimservice@contoso.com
# calling a random number per request (separate authentications, not joins of one call in flight).
# With two instances, two wrk processes run at the same time, one per instance with half of the
# connections each: req/s is their sum, p99 the larger of their two p99s.
#
# Nothing is pinned: on a 2-CPU machine pfgate, PostgreSQL and wrk share both CPUs, and the table
# says so. Before each measurement the script waits (up to QUIET_WAIT s) until no compiler runs, and
# it records per run the CPU used by pfgate, by PostgreSQL and by everything else.
#
# Needs: a release build (made unless SKIP_BUILD=1), wrk (bench/install.sh), curl, psql (to drop the
# benchmark's schema), and a PostgreSQL at DATABASE_URL where the role may create a schema.
# Writes the table to stdout and to bench/results/ha-latest.md. Every server it starts listens on
# 127.0.0.1 only and is stopped on exit; the schema is dropped on exit.
#
# Knobs (environment): DURATION (10s), WARMUP (2s), RUNS (3), CONNECTIONS (32), PORT_A (18471),
# PORT_B (18472), DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), QUIET_WAIT (300),
# SKIP_BUILD (0), SCENARIOS ("sqlite-1 sqlite-2 postgres-1 postgres-2").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
RUNS="${RUNS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT_A="${PORT_A:-18471}"
PORT_B="${PORT_B:-18472}"
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
QUIET_WAIT="${QUIET_WAIT:-300}"
SKIP_BUILD="${SKIP_BUILD:-0}"
SCENARIOS="${SCENARIOS:-sqlite-1 sqlite-2 postgres-1 postgres-2}"
SDK_PATH="/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
SCHEMA="pfgate_bench_$$"
HZ="$(getconf CLK_TCK)"

die() {
    echo "bench/ha.sh: FAILED: $*" >&2
    exit 1
}
note() { echo "bench/ha.sh: $*" >&2; }

WORK="$(mktemp -d)"
PIDS=()

stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
drop_schema() {
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
}
cleanup() {
    stop_servers
    drop_schema
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build and tools ---------------------------------------------------------------------------
if [ "$SKIP_BUILD" != "1" ]; then
    note "building release pfgate"
    cargo build --release --bin pfgate >&2
fi
PFGATE_BIN="$ROOT/target/release/pfgate"
[ -x "$PFGATE_BIN" ] || die "$PFGATE_BIN missing"
bash "$ROOT/bench/install.sh"
for tool in wrk curl psql; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
psql "$DATABASE_URL" -qc "SELECT 1" >/dev/null || die "cannot reach PostgreSQL at $DATABASE_URL"
for port in "$PORT_A" "$PORT_B"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use"
    fi
done
head -c 32 /dev/urandom >"$WORK/secrets.key"
chmod 600 "$WORK/secrets.key"

# --- instances ---------------------------------------------------------------------------------
# config NAME PORT STORE: writes $WORK/NAME.toml; STORE is sqlite or postgres.
config() {
    local name="$1" port="$2" store="$3"
    {
        printf '[server]\nplain_listen = "127.0.0.1:%s"\n' "$port"
        printf '[auth]\nallow_anonymous = true\n'
        printf '[directory]\nusers_file = "%s/fixtures/demo.toml"\n' "$ROOT"
        # The demo users' scripted outcomes, named (no provider: no start).
        printf '[providers.demo]\nkind = "scripted"\n[[routes]]\nproviders = ["demo"]\n'
        printf '[store]\nsecrets_key_file = "%s/secrets.key"\n' "$WORK"
        if [ "$store" = "sqlite" ]; then
            printf 'path = "%s/bench.db"\n' "$WORK"
        else
            printf 'url = "%s"\nschema = "%s"\n' "$DATABASE_URL" "$SCHEMA"
        fi
    } >"$WORK/$name.toml"
}

# start NAME PORT: starts one instance and waits for its "listening on" line.
start() {
    local name="$1" port="$2" out="$WORK/$1.stdout"
    : >"$out"
    env -u RUST_LOG "$PFGATE_BIN" serve --config "$WORK/$name.toml" >"$out" 2>/dev/null &
    PIDS+=("$!")
    local pid="$!" _
    for _ in $(seq 1 100); do
        if grep -q "listening on http://127.0.0.1:$port" "$out"; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up (try: $PFGATE_BIN check-config $WORK/$name.toml)"
        sleep 0.1
    done
    die "$name did not report listening on 127.0.0.1:$port within 10 s"
}

# fresh STORE: an empty store of that kind for the next scenario.
fresh() {
    rm -f "$WORK"/bench.db "$WORK"/bench.db-wal "$WORK"/bench.db-shm
    [ "$1" = "sqlite" ] || drop_schema
}

# check PORT: one authentication with curl, which must succeed.
check() {
    local port="$1" out="$WORK/check.out" code
    code="$(curl -s -o "$out" -w '%{http_code}' --max-time 10 \
        -H 'Content-Type: text/xml; charset=utf-8' \
        -H 'SOAPAction: "http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"' -H 'Expect:' \
        --data-binary "@$ROOT/bench/soap/PfAuthUser_5.xml" \
        "http://127.0.0.1:$port$SDK_PATH")" || die "curl to 127.0.0.1:$port failed"
    [ "$code" = "200" ] || die "127.0.0.1:$port answered HTTP $code: $(head -c 400 "$out")"
    grep -qF "<PfAuthUser_5Result>true</PfAuthUser_5Result>" "$out" ||
        die "127.0.0.1:$port did not authenticate: $(head -c 600 "$out")"
}

# --- measuring ---------------------------------------------------------------------------------
builders() { # compiler/linker processes running now
    # shellcheck disable=SC2009 # one count over several exact names
    ps -eo comm= | grep -cxE 'rustc|cc1|cc1plus|cc|c\+\+|ld|ld\.lld|clang|lld|mold' || true
}
cpu_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat; }
jiffies_of() { # sum of utime + stime of the given PIDs (gone ones count 0)
    local pid total=0
    for pid in "$@"; do
        if [ -r "/proc/$pid/stat" ]; then
            total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
        fi
    done
    echo "$total"
}
postgres_jiffies() { # every process named postgres (the server and its backends)
    # shellcheck disable=SC2046 # word splitting of the PID list is intended
    jiffies_of $(pgrep -x postgres || true)
}
wait_quiet() {
    local waited=0
    while [ "$(builders)" != "0" ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        [ "$waited" -gt 0 ] || note "a build is running; waiting up to ${QUIET_WAIT}s"
        sleep 5
        waited=$((waited + 5))
    done
    [ "$(builders)" = "0" ] || note "still building after ${QUIET_WAIT}s; measuring anyway"
}
to_ms() { # wrk duration (850.00us, 1.23ms, 2.00s) -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        else if (u != "ms") { print "NaN"; exit 1 }
        printf "%.3f", n }'
}

# wrk_on PORT CONNECTIONS DURATION OUT: one wrk process in the background; its PID in WRK_PID.
wrk_on() {
    wrk -t1 -c"$2" -d"$3" --latency -s bench/pfauthuser5_numbers.lua \
        "http://127.0.0.1:$1$SDK_PATH" >"$4" 2>&1 &
    WRK_PID=$!
}

# measure KEY PORT...: a warm-up, then one measured run against every PORT at once (the
# connections split between them); appends "rps p99 pfgate_us pg_us other_pct builders" to
# $WORK/KEY.
measure() {
    local key="$1"
    shift
    local ports=("$@") n="$#" per port i
    per=$((CONNECTIONS / n))
    wait_quiet
    local pids=()
    for port in "${ports[@]}"; do
        wrk_on "$port" "$per" "$WARMUP" "$WORK/warmup.$port"
        pids+=("$WRK_PID")
    done
    wait "${pids[@]}"
    local b0 c0 s0 p0 t0 c1 s1 p1 t1 b1
    b0="$(builders)" c0="$(cpu_busy)" s0="$(jiffies_of "${PIDS[@]}")" p0="$(postgres_jiffies)"
    t0="$(date +%s%N)"
    pids=()
    for port in "${ports[@]}"; do
        wrk_on "$port" "$per" "$DURATION" "$WORK/run.$key.$port"
        pids+=("$WRK_PID")
    done
    wait "${pids[@]}"
    c1="$(cpu_busy)" s1="$(jiffies_of "${PIDS[@]}")" p1="$(postgres_jiffies)" t1="$(date +%s%N)"
    b1="$(builders)"
    local rps=0 requests=0 p99=0 out r q p
    for port in "${ports[@]}"; do
        out="$WORK/run.$key.$port"
        if grep -q "Non-2xx or 3xx responses" "$out"; then
            die "$key: wrk saw error responses: $(grep 'Non-2xx' "$out")"
        fi
        r="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
        q="$(awk '/requests in/ {print $1}' "$out")"
        p="$(awk '$1 == "99%" {print $2}' "$out")"
        [ -n "$r" ] && [ -n "$q" ] && [ -n "$p" ] || die "$key: cannot parse wrk output: $(cat "$out")"
        grep -E '^ *Socket errors' "$out" >&2 || true
        rps="$(awk -v a="$rps" -v b="$r" 'BEGIN { printf "%.2f", a + b }')"
        requests=$((requests + q))
        p99="$(awk -v a="$p99" -v b="$(to_ms "$p")" 'BEGIN { printf "%.3f", (b > a ? b : a) }')"
    done
    # CPU per authentication (µs) of the pfgate instances and of PostgreSQL, and what everything
    # else (wrk included: it is the client) used, in % of one CPU over the run.
    local secs pf_us pg_us other
    secs="$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
    pf_us="$(awk -v j=$((s1 - s0)) -v n="$requests" -v hz="$HZ" 'BEGIN { printf "%.1f", j / hz * 1e6 / n }')"
    pg_us="$(awk -v j=$((p1 - p0)) -v n="$requests" -v hz="$HZ" 'BEGIN { printf "%.1f", j / hz * 1e6 / n }')"
    other="$(awk -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v p=$((p1 - p0)) -v t="$secs" -v hz="$HZ" \
        'BEGIN { o = (c - s - p) / (t * hz) * 100; printf "%.0f", (o < 0 ? 0 : o) }')"
    note "$(printf '%-11s %9s auth/s  p99 %8s ms  pfgate %6s us/auth  postgres %6s us/auth  rest %3s%% of a CPU  builds %s' \
        "$key" "$rps" "$p99" "$pf_us" "$pg_us" "$other" "$((b0 + b1))")"
    echo "$rps $p99 $pf_us $pg_us $other $((b0 + b1))" >>"$WORK/$key"
}

run_scenario() { # run_scenario sqlite-1 | sqlite-2 | postgres-1 | postgres-2
    local store="${1%-*}" count="${1##*-}"
    fresh "$store"
    config a "$PORT_A" "$store"
    start a "$PORT_A"
    check "$PORT_A"
    if [ "$count" = "2" ]; then
        config b "$PORT_B" "$store"
        start b "$PORT_B"
        check "$PORT_B"
        measure "$1" "$PORT_A" "$PORT_B"
    else
        measure "$1" "$PORT_A"
    fi
    stop_servers
}

note "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
note "PostgreSQL: $(psql "$DATABASE_URL" -Atc 'SHOW server_version') at $DATABASE_URL (schema $SCHEMA)"
note "wrk -t1 -c$CONNECTIONS -d$DURATION --latency (warm-up $WARMUP), $RUNS rounds of: $SCENARIOS"
for round in $(seq 1 "$RUNS"); do
    note "round $round/$RUNS"
    for scenario in $SCENARIOS; do
        run_scenario "$scenario"
    done
done

# --- report ------------------------------------------------------------------------------------
median_col() { # median_col KEY COLUMN
    awk -v c="$2" '{print $c}' "$WORK/$1" | sort -g | awk '{v[NR] = $1} END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
runs_col() { awk -v c="$2" '{printf "%s%s", (NR > 1 ? ", " : ""), $c}' "$WORK/$1"; }
revision() {
    local dirty=""
    if [ -n "$(git -C "$ROOT" status --porcelain -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null)" ]; then
        dirty=" plus uncommitted changes"
    fi
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
}
label() {
    case "$1" in
    sqlite-1) echo "SQLite file, 1 instance" ;;
    sqlite-2) echo "SQLite file, 2 instances (one host)" ;;
    postgres-1) echo "PostgreSQL, 1 instance" ;;
    postgres-2) echo "PostgreSQL, 2 instances" ;;
    esac
}
{
    echo "### HA: one and two instances, SQLite vs PostgreSQL ($(date -u '+%Y-%m-%d %H:%M UTC'), $(revision))"
    echo
    echo "PfAuthUser_5, a random number per request, scripted provider approving at once; plain HTTP on"
    echo "127.0.0.1; wrk -t1 -c$CONNECTIONS -d$DURATION --latency after a $WARMUP warm-up (two wrk with -c$((CONNECTIONS / 2)) each"
    echo "for two instances); median of $RUNS interleaved runs. Nothing pinned: pfgate, PostgreSQL and wrk"
    echo "share $(nproc) CPUs. \"rest\" is the CPU used by everything else, wrk included, in % of one CPU."
    echo
    echo "| scenario | auth/s | p99 ms | pfgate CPU µs/auth | PostgreSQL CPU µs/auth | auth/s per run | rest per run (% CPU) | builds seen per run |"
    echo "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"
    for scenario in $SCENARIOS; do
        printf '| %s | %.0f | %.3f | %.1f | %.1f | %s | %s | %s |\n' "$(label "$scenario")" \
            "$(median_col "$scenario" 1)" "$(median_col "$scenario" 2)" "$(median_col "$scenario" 3)" \
            "$(median_col "$scenario" 4)" "$(runs_col "$scenario" 1)" "$(runs_col "$scenario" 5)" \
            "$(runs_col "$scenario" 6)"
    done
} | tee "$ROOT/bench/results/ha-latest.md"
