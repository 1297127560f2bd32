"""Interop client for tests/integration/interop.rs: calls a running pfgate with zeep, a strict
Python SOAP client, through both bindings of the WSDL the server itself serves.

Usage: REQUESTS_CA_BUNDLE=leaf.pem python3 zeep_client.py URL
  URL  https://localhost:PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx

TLS trusts exactly the certificate in REQUESTS_CA_BUNDLE (the test writes the server's leaf there);
nothing is fetched without verification. Prints one JSON object on stdout:
  {"wsdl_url": ..., "soap11": {CALL: RESULT, ...}, "soap12": {...}}
Any exception ends the program with a non-zero exit code and a traceback on stderr.

zeep keys operations by their portType name, so the overloaded operations (several wire operations
sharing one C# method name) collapse into one; only non-overloaded operations are called here.
"""

import json
import os
import sys

import requests
import zeep
from zeep.helpers import serialize_object
from zeep.transports import Transport


def plain(value):
    """zeep result objects as JSON-able dicts/lists/scalars."""
    return json.loads(json.dumps(serialize_object(value, dict), default=str))


def run(service):
    out = {}
    out["TestSecurity"] = plain(service.TestSecurity())
    for user in ("alice", "bob"):
        out["PfAuthUser_4 " + user] = plain(
            service.PfAuthUser_4(
                username=user + "@contoso.com",
                initiatingAuthenticationType="pfsdk",
                initiatingIpAddress="10.0.0.5",
                applicationName="MIM",
                requireUserMatch=True,
            )
        )
    # The number decides, not the user: bob's call to a number ending in 0 is approved, alice's call
    # to a number ending in 1 is not answered.
    for user, number in (("bob", "4255550100"), ("alice", "4255550111")):
        out["PfAuthUser_5 " + number] = plain(
            service.PfAuthUser_5(
                username=user + "@contoso.com",
                initiatingAuthenticationType="pfsdk",
                initiatingIpAddress="10.0.0.5",
                applicationName="MIM",
                requireUserMatch=True,
                mode="voiceCall",
                countryCode="1",
                phoneNumber=number,
                extension="",
            )
        )
    for user in ("alice@contoso.com", "nobody@contoso.com"):
        out["GetUserSettings_3 " + user] = plain(service.GetUserSettings_3(username=user))
    # Not overloaded, not implemented: answers false with an Error naming it.
    out["OneTimeBypass_2 alice"] = plain(
        service.OneTimeBypass_2(
            username="alice@contoso.com",
            reason="interop",
            bypassSeconds=300,
            modifyUsername="admin@contoso.com",
        )
    )
    return out


def main():
    if len(sys.argv) != 2:
        print("usage: zeep_client.py URL", file=sys.stderr)
        return 2
    url = sys.argv[1]
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    if not bundle or not os.path.isfile(bundle):
        print("REQUESTS_CA_BUNDLE must name the server's certificate file", file=sys.stderr)
        return 2

    session = requests.Session()
    session.verify = bundle
    transport = Transport(session=session, timeout=30, operation_timeout=30)
    wsdl_url = url + "?WSDL"
    client = zeep.Client(wsdl_url, transport=transport, settings=zeep.Settings(strict=True))

    result = {
        "wsdl_url": wsdl_url,
        "zeep": zeep.__version__,
        "soap11": run(client.bind("PfWsSdk", "PfWsSdkSoap")),
        "soap12": run(client.bind("PfWsSdk", "PfWsSdkSoap12")),
    }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
