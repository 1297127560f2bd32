#!/usr/bin/env bash
# The Windows service under wine's service manager (called by .ci/windows): WINE EXE CONTROL_EXE
# (CONTROL_EXE: tests/windows/svc_control.c built with mingw; wine's sc.exe has no `control`).
#   service install → sc start → RUNNING and a TestSecurity call answered → sc control paramchange
#   (the log shows the reload) → sc stop (the log shows the drain; STOPPED, exit code 0) →
#   a start that must fail (the port is taken): STOPPED with WIN32_EXIT_CODE 1066 and
#   SERVICE_EXIT_CODE 2, the reason in the log → the same with a configuration broken after the
#   install (SERVICE_EXIT_CODE 1) → service uninstall (sc query then fails).
# wine ends its service processes once no other wine process runs: a keeper process holds the
# session for the length of the test.
set -euo pipefail
WINE=$1
EXE=$2
CONTROL=$3
NAME=pfgate-ci-$$
dir=$(mktemp -d /tmp/pfgate-winsvc-XXXXXX)
keeper=
blocker=
cleanup() {
  "$WINE" "$EXE" service uninstall --name "$NAME" >/dev/null 2>&1 || true
  [[ -n "$blocker" ]] && kill "$blocker" 2>/dev/null || true
  [[ -n "$keeper" ]] && kill "$keeper" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "service.sh: FAIL: $*" >&2; echo "--- log:" >&2; cat "$log" >&2 2>/dev/null || true; exit 1; }

cd "$dir"
# A fresh wine session for this prefix (ours alone: target/wine-prefix): the integration tests end
# wine processes by kill, after which wine 8's service manager could refuse to start services.
WINESERVER="${WINESERVER:-$(command -v wineserver || echo /usr/lib/wine/wineserver64)}"
"$WINESERVER" -k 2>/dev/null || true
"$WINESERVER" -w 2>/dev/null || true
"$WINE" cmd.exe /c "ping -n 600 127.0.0.1 > NUL" >/dev/null 2>&1 &
keeper=$!
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$WINE" "$EXE" cert dev --dir certs >/dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > secrets.key
password='Svc-Test!pw1'
hash=$(printf '%s\n' "$password" | "$WINE" "$EXE" hash-password | tr -d '\r')
cat > pfgate.toml <<TOML
[server]
listen = "127.0.0.1:$port"
tls_cert = "certs/dev-server.pem"
tls_key = "certs/dev-server-key.pem"
[[auth.basic]]
principal = "CONTOSO\\\\svc"
password_hash = "$hash"
[[auth.principals]]
name = "CONTOSO\\\\svc"
allow = ["authentication"]
[admin]
enabled = false
[store]
path = "pfgate.db"
secrets_key_file = "secrets.key"
[providers.demo]
kind = "scripted"
[[routes]]
providers = ["demo"]
[limits]
shutdown_grace_secs = 2
TOML
"$WINE" "$EXE" check-config pfgate.toml | tr -d '\r'
# Refused installs: a name that is not plain, a configuration check-config refuses.
if "$WINE" "$EXE" service install --config pfgate.toml --name 'bad\name' >/dev/null 2>&1; then fail "installed a bad name"; fi
echo '[server]' > broken.toml
if "$WINE" "$EXE" service install --config broken.toml --name "$NAME" >/dev/null 2>&1; then fail "installed a refused configuration"; fi
if "$WINE" sc query "$NAME" >/dev/null 2>&1; then fail "a refused install left a service"; fi
echo "   refused installs: bad name, refused configuration"
"$WINE" "$EXE" service install --config pfgate.toml --name "$NAME" | tr -d '\r'

# %ProgramData% is C:\users\Public under wine.
log="$WINEPREFIX/drive_c/users/Public/pfgate/logs/$NAME.log"
[[ -d "$WINEPREFIX/drive_c/users/Public" ]] || fail "no C:\\users\\Public in the wine prefix"
state() { "$WINE" sc query "$NAME" | tr -d '\r' | sed -n 's/.*STATE *: *[0-9]* *//p'; }
wait_state() {
  for _ in $(seq 1 60); do [[ "$(state)" == "$1" ]] && return 0; sleep 0.5; done
  fail "state $(state), wanted $1"
}
call() {
  curl -sS --max-time 20 --cacert certs/dev-ca.pem --basic -u "CONTOSO\\svc:$password" \
    -H 'Content-Type: text/xml; charset=utf-8' \
    -H 'SOAPAction: "http://www.phonefactor.com/PfWsSdk/TestSecurity"' \
    --data '<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><TestSecurity xmlns="http://www.phonefactor.com/PfWsSdk"/></soap:Body></soap:Envelope>' \
    "https://localhost:$port/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
}

"$WINE" sc start "$NAME" >/dev/null || true   # wine's sc returns before RUNNING; poll instead
wait_state RUNNING
call | grep -q '<TestSecurityResult>secure</TestSecurityResult>' || fail "TestSecurity through the service"
echo "   service RUNNING, TestSecurity answered"

"$WINE" "$CONTROL" "$NAME" paramchange | tr -d '\r' | sed 's/^/   /' || fail "paramchange not delivered"
for _ in $(seq 1 20); do grep -q 'service paramchange' "$log" && break; sleep 0.5; done
grep -q 'service paramchange' "$log" || fail "paramchange did not reload"
echo "   paramchange reloaded"

"$WINE" sc stop "$NAME" >/dev/null || true
wait_state STOPPED
grep -q 'shutting down grace_secs=2' "$log" || fail "stop did not drain"
grep -q 'service stopped' "$log" || fail "no clean stop in the log"
"$WINE" sc query "$NAME" | tr -d '\r' | grep -q 'WIN32_EXIT_CODE *: *0 ' || fail "stop exit code"
echo "   sc stop drained and stopped (exit code 0)"

# A start that fails: the port is taken. The SCM must get the reason's code, the log the reason.
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',$port)); s.listen(); time.sleep(120)" &
blocker=$!
sleep 0.5
"$WINE" sc start "$NAME" >/dev/null 2>&1 || true
wait_state STOPPED
q=$("$WINE" sc query "$NAME" | tr -d '\r')
grep -q 'WIN32_EXIT_CODE *: *1066 ' <<<"$q" || fail "failed start: $q"
grep -q 'SERVICE_EXIT_CODE *: *2 ' <<<"$q" || fail "failed start: $q"
grep -q 'the server did not start' "$log" || fail "no reason in the log"
echo "   failed start reported: exit code 1066, service-specific 2, reason in the log"
kill "$blocker"; blocker=

# A configuration broken after the install: service-specific 1, the problem in the log.
echo 'listen = "not an address"' >> pfgate.toml
"$WINE" sc start "$NAME" >/dev/null 2>&1 || true
wait_state STOPPED
q=$("$WINE" sc query "$NAME" | tr -d '\r')
grep -q 'WIN32_EXIT_CODE *: *1066 ' <<<"$q" || fail "refused configuration: $q"
grep -q 'SERVICE_EXIT_CODE *: *1 ' <<<"$q" || fail "refused configuration: $q"
grep -q 'the configuration was refused' "$log" || fail "no problem in the log"
echo "   refused configuration reported: exit code 1066, service-specific 1, problem in the log"

"$WINE" "$EXE" service uninstall --name "$NAME" | tr -d '\r'
if "$WINE" sc query "$NAME" >/dev/null 2>&1; then fail "still installed after uninstall"; fi
echo "   uninstalled"
