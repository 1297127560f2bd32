#!/usr/bin/env python3
"""A CI job's steps against the pfgate test double running as a service container.

    PFGATE_MOCK_ADMIN_TOKEN=... python3 examples/ci/pam_check.py http://pfgate:8080 fixtures/mock-mim-pam.toml

Python's standard library only, so it runs on a CI runner as it is and in any python image.
What it does, in the order a real job would:
  1. waits until the double answers /healthz;
  2. loads the scenario through the admin API (`PUT scenario`): service containers start before
     the repository is checked out, so a scenario cannot be mounted into them from the repository;
  3. plays the client: two MIM PAM activations (PfAuthUser_5 as MIM's service account, the end
     user's number 1 425 555 0142) -- in your job, run your own client here;
  4. asks the double what it received (`GET verify`) and fails on a surprise.
The GitHub Actions, GitLab CI and docker-compose recipes beside this file run it; .ci/image runs it
against the image, and tests/integration/container.rs against the binary.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

SDK_PATH = "/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
ACTIVATION = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    '<PfAuthUser_5 xmlns="http://www.phonefactor.com/PfWsSdk">'
    "<username>mimservice@contoso.com</username>"
    "<initiatingAuthenticationType>pfsdk</initiatingAuthenticationType>"
    "<applicationName>MIM</applicationName><requireUserMatch>true</requireUserMatch>"
    "<countryCode>1</countryCode><phoneNumber>4255550142</phoneNumber><mode>voiceCall</mode>"
    "</PfAuthUser_5></soap:Body></soap:Envelope>"
)


def request(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def fail(message):
    print("pam_check: FAILED: " + message)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        fail("usage: pam_check.py BASE_URL SCENARIO.toml (token in PFGATE_MOCK_ADMIN_TOKEN)")
    base, scenario = sys.argv[1].rstrip("/"), sys.argv[2]
    token = os.environ.get("PFGATE_MOCK_ADMIN_TOKEN", "")
    if not token:
        fail("set PFGATE_MOCK_ADMIN_TOKEN to the token the double was started with")
    admin = base + "/__pfgate/"
    auth = {"Authorization": "Bearer " + token}

    deadline = time.monotonic() + 60
    while True:
        try:
            if request("GET", base + "/healthz", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            fail(base + "/healthz did not answer 200 within 60 s")
        time.sleep(0.2)

    with open(scenario, "rb") as f:
        status, body = request("PUT", admin + "scenario", f.read(), auth)
    if status != 200:
        fail("PUT scenario: HTTP %d %s" % (status, body[:300]))

    soap = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '"http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"',
    }
    results = []
    for _ in range(2):
        status, body = request("POST", base + SDK_PATH, ACTIVATION.encode(), soap)
        if status != 200:
            fail("PfAuthUser_5: HTTP %d" % status)
        results.append(b"<PfAuthUser_5Result>true</PfAuthUser_5Result>" in body)
    if results != [False, True]:
        fail("expected the first activation not answered and the retry approved, got %s" % results)

    status, body = request("GET", admin + "verify", headers=auth)
    if status != 200:
        fail("GET verify: HTTP %d" % status)
    verify = json.loads(body)
    calls = verify.get("by_operation", {}).get("PfAuthUser_5")
    if calls != 2 or verify.get("unmatched"):
        fail("verify: %s" % json.dumps(verify)[:500])
    print("pam_check: OK (2 PfAuthUser_5 calls, first not answered, retry approved, none unforeseen)")


if __name__ == "__main__":
    main()
