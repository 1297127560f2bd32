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

The calls change the server's state and both bindings talk to the same server, so their order
matters: the one-time bypass granted in a binding's run is consumed in it, and each run adds its own
user (frank11@contoso.com, frank12@contoso.com; the SOAP 1.1 run first). new_user() sends what
NEW_USER in tests/integration/interop.rs expects back; change both together.
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


def new_user(username, pin):
    """The AddUserSettings3 of the user a run adds (NEW_USER in interop.rs)."""
    return {
        "FirstName": "Frank",
        "LastName": "Fischer",
        "EmailAddress": username,
        "UserGroup": "Sales",
        "CountryCode": "44",
        "Phone": "2079460958",
        "Extension": "77",
        "BackupCountryCode": "1",
        "BackupPhone": "4255550177",
        "BackupExtension": "",
        "Mode": "smsText",
        "PinMode": "pin",
        "SmsDirection": "oneWay",
        "SmsMode": "otpPlusPin",
        "PhoneAppMode": "pin",
        "Pin": pin,
        "Enabled": True,
        "PinChangeRequired": True,
    }


def find_users(service, pattern, case_sensitive, limit):
    """FindUsers_4 with only a username filter: every other filter "not specified", no tags."""
    return plain(
        service.FindUsers_4(
            usernameFilter=pattern,
            usernameCaseSensitive=case_sensitive,
            firstNameCaseSensitive=False,
            lastNameCaseSensitive=False,
            emailCaseSensitive=False,
            userGroupCaseSensitive=False,
            modeFilter="voiceCall",
            modeSpecified=False,
            pinModeFilter="standard",
            pinModeSpecified=False,
            smsDirectionFilter="twoWay",
            smsDirectionSpecified=False,
            smsModeFilter="otp",
            smsModeSpecified=False,
            phoneAppModeFilter="standard",
            phoneAppModeSpecified=False,
            tagMatchType="allUsers",
            enabledFilter=True,
            enabledSpecified=False,
            resultLimit=limit,
        )
    )


def auth4(service, user):
    return plain(
        service.PfAuthUser_4(
            username=user + "@contoso.com",
            initiatingAuthenticationType="pfsdk",
            initiatingIpAddress="10.0.0.5",
            applicationName="MIM",
            requireUserMatch=True,
        )
    )


def run(service, binding):
    """The calls of one binding's run; binding is "11" or "12" (names the user it adds)."""
    out = {}
    out["TestSecurity"] = plain(service.TestSecurity())
    for user in ("alice", "bob"):
        out["PfAuthUser_4 " + user] = auth4(service, user)
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

    # A one-time bypass (not overloaded: OneTimeBypass_2): alice's next authentication is bypassed,
    # the one after that is an ordinary call again.
    out["OneTimeBypass_2 alice"] = plain(
        service.OneTimeBypass_2(
            username="alice@contoso.com",
            reason="interop",
            bypassSeconds=300,
            modifyUsername="admin@contoso.com",
        )
    )
    out["PfAuthUser_4 alice bypassed"] = auth4(service, "alice")
    out["PfAuthUser_4 alice after the bypass"] = auth4(service, "alice")

    # AddUser_3: a new user, the same again, a weak PIN; then what was kept.
    frank = "frank" + binding + "@contoso.com"
    grace = "grace" + binding + "@contoso.com"
    for key, user, pin in (
        (frank, frank, "2580"),
        # No PIN this time (an omitted element): hashing one is slow in a debug build.
        (frank + " again", frank, None),
        (grace + " PIN 1111", grace, "1111"),
    ):
        out["AddUser_3 " + key] = plain(
            service.AddUser_3(
                username=user,
                addUserSettings=new_user(user, pin),
                sendEmail=False,
                modifyUsername="admin@contoso.com",
            )
        )
    for user in (frank, grace):
        out["GetUserSettings_3 " + user] = plain(service.GetUserSettings_3(username=user))

    out["FindUsers_4 *@contoso.com limit 2"] = find_users(service, "*@contoso.com", False, 2)
    out["FindUsers_4 *@CONTOSO.COM limit 0"] = find_users(service, "*@CONTOSO.COM", False, 0)

    # Not implemented: answers false with an Error naming it.
    out["GetSecurityQuestions alice"] = plain(
        service.GetSecurityQuestions(username="alice@contoso.com")
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
        "soap11": run(client.bind("PfWsSdk", "PfWsSdkSoap"), "11"),
        "soap12": run(client.bind("PfWsSdk", "PfWsSdkSoap12"), "12"),
    }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
