"""Interop client for tests/integration/mock_interop.rs: zeep (a strict Python SOAP client) against
`pfgate mock` running the fault scenario of mock_faults.rs, then the double's admin API read the way
a CI job reads it (bearer token, JSON).

Usage: REQUESTS_CA_BUNDLE=leaf.pem python3 zeep_mock_client.py URL ADMIN_URL TOKEN

Prints one JSON object: {"calls": {LABEL: RESULT}, "verify": <GET verify>, "journal": <GET
journal?user=alice@contoso.com>}. RESULT is {"outcome": "ok", "result": bool, "call": int} or
{"outcome": "exception", "type": "module.Class", "detail": str}.
"""

import json
import sys
import time

import requests
import zeep
from zeep.transports import Transport

CALLS = [
    ("alice", "alice@contoso.com", 30),
    ("soap-client", "soap-client@fault.test", 30),
    ("soap-server", "soap-server@fault.test", 30),
    ("http500", "http500@fault.test", 30),
    ("http503", "http503@fault.test", 30),
    ("drop-before", "drop-before@fault.test", 30),
    ("drop-after", "drop-after@fault.test", 30),
    ("trickle", "trickle@fault.test", 30),
    ("malformed", "malformed@fault.test", 30),
    # The 700 ms delay against a 0.3 s read timeout: the timeout path.
    ("slow-timeout", "slow@fault.test", 0.3),
]


def qualified(e):
    return type(e).__module__ + "." + type(e).__name__


def main():
    url, admin, token = sys.argv[1], sys.argv[2], sys.argv[3]
    wsdl = url + "?WSDL"
    calls = {}
    for label, user, timeout in CALLS:
        # A fresh session per call: a dropped connection must not poison the next call's pool.
        transport = Transport(session=requests.Session(), operation_timeout=timeout)
        client = zeep.Client(wsdl, transport=transport)
        try:
            r = client.service.PfAuthUser_4(
                username=user,
                initiatingAuthenticationType="pfsdk",
                initiatingIpAddress="10.0.0.5",
                applicationName="ADFS",
                requireUserMatch=True,
            )
            calls[label] = {
                "outcome": "ok",
                "result": bool(r["PfAuthUser_4Result"]),
                "call": int(r["callResult"]["Code"]),
            }
        except zeep.exceptions.Fault as e:
            calls[label] = {"outcome": "exception", "type": qualified(e), "detail": str(e.code)}
        except zeep.exceptions.TransportError as e:
            calls[label] = {"outcome": "exception", "type": qualified(e), "detail": str(e.status_code)}
        except Exception as e:  # noqa: BLE001 - every other failure is what the test looks at
            calls[label] = {"outcome": "exception", "type": qualified(e), "detail": str(e)[:200]}

    # The double finishes the request the client gave up on (its 700 ms delay) and journals it.
    time.sleep(1)
    headers = {"Authorization": "Bearer " + token}
    verify = requests.get(admin + "verify", headers=headers, timeout=30)
    verify.raise_for_status()
    journal = requests.get(
        admin + "journal", params={"user": "alice@contoso.com"}, headers=headers, timeout=30
    )
    journal.raise_for_status()
    refused = requests.get(admin + "journal", timeout=30)
    print(
        json.dumps(
            {
                "zeep": zeep.__version__,
                "calls": calls,
                "verify": verify.json(),
                "journal": journal.json(),
                "without_token": refused.status_code,
            }
        )
    )


if __name__ == "__main__":
    main()
