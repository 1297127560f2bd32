#!/usr/bin/env bash
# Soak and faults under load (issue #9): a mix of operations at a fixed rate for SECONDS, with a
# provider that fails 5 % of its calls and a provider that hangs, each failing over to a backup.
#
# Run by hand from anywhere in the repository (not CI):   RATE=... bash bench/soak.sh
#
#   providers (bench/load/fake_provider.py, one process each, all answering at once otherwise):
#     flaky   500 on 5 % of starts (by a hash of request_id)  — route: everyone but alice
#     hang    accepts and never answers (request_timeout_secs = 1)  — route: alice@contoso.com
#     backup  always approves; second provider of both routes
#   breaker: 5 consecutive failures open a provider's circuit for 30 s, then one probe.
#   client: bench/load/soak.py, 64 keep-alive connections, RATE requests/s in all (RATE=0 first
#     finds the maximum: run `RATE=0 SECONDS=20` and halve its achieved_rps);
#   every minute: pfgate's RSS, open descriptors and CPU time from /proc;
#   at the end: the client's counts (sent = answered = ok?), pfgate's access-log lines per
#   operation, what each fake saw, and /metrics from the admin listener (127.0.0.1:18634),
#   compared with the fakes' counts by bench/load/soak_compare.py (compare.txt; exit 1 on a mismatch).
#
# Knobs: RATE (required), SECONDS (1800), PORT (18630), SKIP_BUILD (0), OUT_DIR (bench/results/soak).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RATE="${RATE:?set RATE (requests/s; 0 = flat out)}"
SECONDS_TOTAL="${SECONDS:-1800}"
PORT="${PORT:-18630}"
P_FLAKY=18631 P_HANG=18632 P_BACKUP=18633 P_ADMIN=18634
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT_DIR="${OUT_DIR:-$ROOT/bench/results/soak}"
note() { echo "bench/soak.sh: $*" >&2; }
die() { note "FAILED: $*"; exit 1; }
[ "$SKIP_BUILD" = "1" ] || cargo build --release --bin pfgate >&2
PFGATE_BIN="$ROOT/target/release/pfgate"
mkdir -p "$OUT_DIR"
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
declare -A FAKE_PID
fake() { # fake NAME PORT ARGS...
    local name="$1" port="$2"
    shift 2
    python3 "$ROOT/bench/load/fake_provider.py" --port "$port" --stats "$WORK/$name.json" "$@" \
        2>"$WORK/$name.err" &
    FAKE_PID[$name]=$!
    PIDS+=("$!")
}
fake flaky "$P_FLAKY" --fail-rate 0.05
fake hang "$P_HANG" --hang
fake backup "$P_BACKUP"

cat >"$WORK/pfgate.toml" <<TOML
[server]
plain_listen = "127.0.0.1:$PORT"
[admin]
listen = "127.0.0.1:$P_ADMIN"
[auth]
allow_anonymous = true
[directory]
users_file = "$ROOT/fixtures/demo.toml"
[providers.flaky]
kind = "webhook"
base_url = "http://127.0.0.1:$P_FLAKY/flaky"
secret_file = "$WORK/secret"
[providers.hang]
kind = "webhook"
base_url = "http://127.0.0.1:$P_HANG/hang"
secret_file = "$WORK/secret"
request_timeout_secs = 1
[providers.backup]
kind = "webhook"
base_url = "http://127.0.0.1:$P_BACKUP/backup"
secret_file = "$WORK/secret"
[[routes]]
match_username = "alice@contoso.com"
providers = ["hang", "backup"]
[[routes]]
providers = ["flaky", "backup"]
[breaker]
failure_threshold = 5
cooldown_secs = 30
TOML
cp "$WORK/pfgate.toml" "$OUT_DIR/pfgate.toml"
env -u RUST_LOG "$PFGATE_BIN" serve --config "$WORK/pfgate.toml" >"$WORK/pfgate.out" 2>"$WORK/pfgate.err" &
PFGATE_PID=$!
PIDS+=("$PFGATE_PID")
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$PFGATE_PID" 2>/dev/null || die "pfgate exited: $(tail -5 "$WORK/pfgate.err")"
    sleep 0.1
done

sample() { # one line: unix time, RSS kB, open fds, CPU seconds, loadavg
    echo "$(date +%s) $(awk '/^VmRSS/ { print $2 }' "/proc/$PFGATE_PID/status") \
$(find "/proc/$PFGATE_PID/fd" -mindepth 1 -maxdepth 1 | wc -l) \
$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$PFGATE_PID/stat") \
$(cut -d' ' -f1 /proc/loadavg)"
}
(
    echo "# time rss_kb fds cpu_s loadavg1"
    while kill -0 "$PFGATE_PID" 2>/dev/null; do sample; sleep 60; done
) >"$OUT_DIR/samples.txt" &
PIDS+=("$!")

note "rate $RATE/s for ${SECONDS_TOTAL}s; pfgate pid $PFGATE_PID"
python3 "$ROOT/bench/load/soak.py" --port "$PORT" --rate "$RATE" --seconds "$SECONDS_TOTAL" \
    --out "$OUT_DIR/client.json" >&2
sleep 2
sample >>"$OUT_DIR/samples.txt"
curl -s -o "$OUT_DIR/metrics.txt" -w '%{http_code}\n' "http://127.0.0.1:$P_ADMIN/metrics" >"$WORK/metrics.code" || true
[ "$(cat "$WORK/metrics.code")" = "200" ] || { note "no /metrics on this pfgate ($(cat "$WORK/metrics.code"))"; rm -f "$OUT_DIR/metrics.txt"; }
for name in flaky hang backup; do kill -USR1 "${FAKE_PID[$name]}"; done
sleep 1
for name in flaky hang backup; do cp "$WORK/$name.json" "$OUT_DIR/provider-$name.json"; done
# pfgate's own count of answered requests: its access log, one line per request.
cat "$WORK/pfgate.out" "$WORK/pfgate.err" | grep -o 'operation=[A-Za-z0-9_]*' | sort | uniq -c >"$OUT_DIR/access-log-counts.txt" || true
cat "$WORK/pfgate.out" "$WORK/pfgate.err" | grep -c 'pfgate::access' >"$OUT_DIR/access-log-lines.txt" || true
grep -iE 'breaker|circuit|fail(ed)? ?over' "$WORK/pfgate.out" "$WORK/pfgate.err" | tail -50 >"$OUT_DIR/breaker-log.txt" || true
note "results in $OUT_DIR"
cat "$OUT_DIR/samples.txt" >&2
if [ -f "$OUT_DIR/metrics.txt" ]; then
    # /metrics against the fakes' and the client's counts; the exit status says whether they match.
    python3 "$ROOT/bench/load/soak_compare.py" "$OUT_DIR" | tee "$OUT_DIR/compare.txt" >&2
fi
