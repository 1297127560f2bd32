"""zeep (a strict Python SOAP client) against the pfgate image: reads the WSDL the container
serves and calls PfAuthUser_5 as MIM does (its service account, the end user's number).
Run by .ci/image inside the container's network namespace.

Usage: python3 zeep_pam.py URL
"""

import sys

import zeep


def main():
    url = sys.argv[1]
    client = zeep.Client(url + "?WSDL")
    r = client.service.PfAuthUser_5(
        username="mimservice@contoso.com",
        initiatingAuthenticationType="pfsdk",
        applicationName="MIM",
        requireUserMatch=True,
        countryCode="1",
        phoneNumber="4255550100",
        extension="",
        mode="voiceCall",
    )
    ok = bool(r["PfAuthUser_5Result"])
    code = int(r["callResult"]["Code"])
    if not ok or len(r["authenticationRequestId"] or "") != 32:
        print("zeep_pam: FAILED", r)
        sys.exit(1)
    print("zeep_pam: OK zeep %s: PfAuthUser_5Result true, callResult %d" % (zeep.__version__, code))


if __name__ == "__main__":
    main()
