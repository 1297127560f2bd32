#!/usr/bin/env bash
# A CI job against the PfWsSdk test double (docs/mock.md): start `pfgate mock` with a scenario,
# run a client against it, check what the double received through its admin API, stop it.
#
#   PFGATE=/path/to/pfgate examples/ci/mock-ci.sh
#
# Needs bash, curl and python3 (to read JSON). The client here is curl sending what MIM sends for a
# PAM activation (PfAuthUser_5 as the MIM service account with the end user's number); in your job,
# run your own client (MIM customisation tests, a PowerShell script, your AD FS adapter tests) with
# the URL and certificate from the ready file. tests/integration/mock_ci.rs runs this script.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
PFGATE="${PFGATE:-pfgate}"
SCENARIO="${SCENARIO:-$here/../../fixtures/mock-mim-pam.toml}"
work="$(mktemp -d)"

# The admin API's token: random per run, passed in the environment (never on a command line).
PFGATE_MOCK_ADMIN_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PFGATE_MOCK_ADMIN_TOKEN

# 1. Start the double on a free port; it writes the ready file once it accepts connections.
"$PFGATE" mock --scenario "$SCENARIO" --ready-file "$work/ready.json" >"$work/mock.out" 2>"$work/mock.log" &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

for _ in $(seq 200); do
  [ -s "$work/ready.json" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "pfgate mock exited:"; cat "$work/mock.log"; exit 1; }
  sleep 0.05
done
[ -s "$work/ready.json" ] || { echo "pfgate mock not ready after 10 s"; exit 1; }

json() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[k]
print(v)' "$1" "$2"; }
url="$(json "$work/ready.json" url)"
admin="$(json "$work/ready.json" admin_url)"
json "$work/ready.json" certificate_pem >"$work/mock.pem"   # trust exactly the double's certificate

# 2. The client: two PAM activations for the number ending 0142 (first not answered, then approved).
activate() {
  curl -sS --cacert "$work/mock.pem" "$url" \
    -H 'Content-Type: text/xml; charset=utf-8' \
    -H 'SOAPAction: "http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"' \
    --data '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><PfAuthUser_5 xmlns="http://www.phonefactor.com/PfWsSdk"><username>mimservice@contoso.com</username><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType><applicationName>MIM</applicationName><requireUserMatch>true</requireUserMatch><countryCode>1</countryCode><phoneNumber>4255550142</phoneNumber><mode>voiceCall</mode></PfAuthUser_5></soap:Body></soap:Envelope>'
}
first="$(activate)"
second="$(activate)"
grep -q '<PfAuthUser_5Result>false</PfAuthUser_5Result>' <<<"$first" || { echo "first activation: $first"; exit 1; }
grep -q '<PfAuthUser_5Result>true</PfAuthUser_5Result>' <<<"$second" || { echo "second activation: $second"; exit 1; }

# 3. Check what the double received.
curl -sS --fail --cacert "$work/mock.pem" -H "Authorization: Bearer $PFGATE_MOCK_ADMIN_TOKEN" \
  "${admin}verify" >"$work/verify.json"
calls="$(json "$work/verify.json" by_operation.PfAuthUser_5)"
unmatched="$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["unmatched"]))' "$work/verify.json")"
[ "$calls" = 2 ] || { echo "expected 2 PfAuthUser_5 calls, got $calls"; exit 1; }
[ "$unmatched" = 0 ] || { echo "requests no rule foresaw: $unmatched"; cat "$work/verify.json"; exit 1; }
curl -sS --fail --cacert "$work/mock.pem" -H "Authorization: Bearer $PFGATE_MOCK_ADMIN_TOKEN" \
  "${admin}journal?operation=PfAuthUser_5" >"$work/journal.json"
python3 - "$work/journal.json" <<'PY'
import json, sys
entries = json.load(open(sys.argv[1]))["entries"]
assert [e["response"]["fields"]["callResult.Code"] for e in entries] == ["11", "2"], entries
assert all(e["inputs"]["phoneNumber"] == "********42" for e in entries), "phone numbers are masked"
PY

# 4. Stop it (SIGTERM: it finishes requests in flight and exits 0).
kill -TERM "$pid"
wait "$pid"
trap 'rm -rf "$work"' EXIT
echo "mock-ci: OK (2 PfAuthUser_5 calls, all foreseen by the scenario)"
