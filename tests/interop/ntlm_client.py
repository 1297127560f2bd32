"""Live NTLM client for tests/integration/ntlm.rs: signs in to a running pfgate over TLS with
pyspnego, the NTLM implementation behind requests-ntlm, pypsrp and smbprotocol, and calls
TestSecurity.

pyspnego sends a MIC in its AUTHENTICATE message (the server's CHALLENGE carries a timestamp), and
with protocol="negotiate" a SPNEGO mechListMIC as well: the paths Mono and curl (no MIC) leave
untested against a live server.

Usage: PFGATE_NTLM_PASSWORD=... python3 ntlm_client.py MODE URL CA_FILE DOMAIN\\USER
  MODE     ntlm           raw NTLM in `Authorization: NTLM` (pyspnego, protocol="ntlm")
           ntlm-bad-mic   the same, with one bit of the MIC flipped before sending (the server
                          must refuse it: proof that it verifies the MIC, not just accepts one)
           negotiate      NTLM inside SPNEGO in `Authorization: Negotiate` (protocol="negotiate");
                          the server's final token and its mechListMIC are verified too
           requests-ntlm  requests + requests_ntlm.HttpNtlmAuth (NTLM, MIC, channel bindings)
  URL      https://localhost:PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx
  CA_FILE  the only certificate to trust (the server's leaf)
The password comes from the environment, never the command line (which `ps` shows).

Prints one JSON object on stdout:
  {"mode", "legs": [HTTP status of each request], "status": the last status,
   "result": TestSecurityResult or null, "mic": AUTHENTICATE carries a non-zero MIC,
   "mic_flag": its MsvAvFlags announce the MIC, "mech_list_mic": SPNEGO mechListMIC sent
   (negotiate only), "server_final": "verified" | "absent" | "n/a", "reused": status of a second
   request on the same connection without credentials (null when not authenticated),
   "pyspnego": version}
Exits 0 whenever the server answered (the Rust test judges the statuses); any exception is a
non-zero exit with a traceback on stderr. Tokens and the password are never printed.
"""

import base64
import http.client
import json
import os
import re
import ssl
import sys
from urllib.parse import urlparse

import spnego
from spnego._ntlm_raw.messages import Authenticate, AvFlags, AvId, NTClientChallengeV2
from spnego._spnego import NegTokenResp, unpack_token
from spnego._version import __version__ as PYSPNEGO_VERSION

ACTION = '"http://www.phonefactor.com/PfWsSdk/TestSecurity"'
BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    '<soap:Body><TestSecurity xmlns="http://www.phonefactor.com/PfWsSdk" /></soap:Body>'
    "</soap:Envelope>"
).encode()
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION}


def test_security_result(body):
    m = re.search(rb"<TestSecurityResult>([^<]*)</TestSecurityResult>", body)
    return m.group(1).decode() if m else None


def mic_of(authenticate):
    """Whether an NTLM AUTHENTICATE message carries a MIC, and announces it in MsvAvFlags."""
    msg = Authenticate.unpack(authenticate)
    nt = msg.nt_challenge_response or b""
    flags = 0
    if len(nt) > 16:  # NTProofStr, then the NTLMv2 client challenge with its AV pairs
        flags = int(NTClientChallengeV2.unpack(nt[16:]).av_pairs.get(AvId.flags, 0))
    return bool(msg.mic and any(msg.mic)), bool(flags & AvFlags.mic)


def server_token(response, scheme):
    """The token of the server's `WWW-Authenticate: SCHEME <token>`, or None."""
    for value in response.headers.get_all("WWW-Authenticate") or []:
        parts = value.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == scheme.lower():
            return base64.b64decode(parts[1])
    return None


def pyspnego_flow(mode, url, ca_file, user, password):
    """One TLS connection, as NTLM requires: anonymous request, NEGOTIATE, AUTHENTICATE."""
    u = urlparse(url)
    tls = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=tls, timeout=20)
    scheme = "Negotiate" if mode == "negotiate" else "NTLM"
    out = {"mode": mode, "legs": [], "mech_list_mic": None, "server_final": "n/a"}

    def post(authorization=None):
        headers = dict(HEADERS)
        if authorization is not None:
            headers["Authorization"] = authorization
        conn.request("POST", u.path, body=BODY, headers=headers)
        r = conn.getresponse()
        body = r.read()
        out["legs"].append(r.status)
        return r, body

    r, _ = post()
    offered = [v.split(None, 1)[0] for v in r.headers.get_all("WWW-Authenticate") or []]
    if r.status != 401 or scheme not in offered:
        raise SystemExit(f"the server did not offer {scheme}: {r.status} {offered}")

    ctx = spnego.client(
        user,
        password,
        hostname=u.hostname,
        service="HTTP",
        protocol="negotiate" if mode == "negotiate" else "ntlm",
    )
    r, _ = post(f"{scheme} {base64.b64encode(ctx.step()).decode()}")
    challenge = server_token(r, scheme)
    if r.status != 401 or challenge is None:
        raise SystemExit(f"no {scheme} challenge: {r.status}")
    answer = ctx.step(challenge)
    if mode == "ntlm-bad-mic":
        msg = Authenticate.unpack(answer)
        mic = bytearray(msg.mic or b"")
        if len(mic) != 16:
            raise SystemExit("pyspnego sent no MIC to tamper with")
        mic[0] ^= 0x01
        msg.mic = bytes(mic)
        answer = msg.pack()
    if mode != "negotiate":
        authenticate = answer
    else:
        resp = unpack_token(answer)
        if not isinstance(resp, NegTokenResp):
            raise SystemExit(f"unexpected SPNEGO token {type(resp).__name__}")
        authenticate = resp.response_token
        out["mech_list_mic"] = bool(resp.mech_list_mic)
    out["mic"], out["mic_flag"] = mic_of(authenticate)
    r, body = post(f"{scheme} {base64.b64encode(answer).decode()}")
    out["status"] = r.status
    out["result"] = test_security_result(body)
    out["reused"] = None
    if r.status == 200:
        if mode == "negotiate":
            final = server_token(r, scheme)
            if final is None:
                out["server_final"] = "absent"
            else:
                # pyspnego checks accept-completed and the server's mechListMIC here and raises
                # (BadMICError…) if either is wrong.
                ctx.step(final)
                out["server_final"] = "verified" if ctx.complete else "incomplete"
        # IIS authenticates the connection: the next request needs no credentials. Its status is
        # reported as "reused", not as a leg of the handshake.
        post()
        out["reused"] = out["legs"].pop()
    conn.close()
    return out


def requests_ntlm_flow(url, ca_file, user, password):
    import requests
    from requests_ntlm import HttpNtlmAuth

    with requests.Session() as s:
        # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE from the environment.
        r = s.post(url, data=BODY, headers=HEADERS, auth=HttpNtlmAuth(user, password), verify=ca_file, timeout=20)
    out = {
        "mode": "requests-ntlm",
        "legs": [h.status_code for h in r.history] + [r.status_code],
        "status": r.status_code,
        "result": test_security_result(r.content),
        "mech_list_mic": None,
        "server_final": "n/a",
        "reused": None,
        "mic": False,
        "mic_flag": False,
    }
    sent = r.request.headers.get("Authorization", "")
    scheme, _, token = sent.partition(" ")
    if scheme == "NTLM" and token:
        out["mic"], out["mic_flag"] = mic_of(base64.b64decode(token))
    return out


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    mode, url, ca_file, user = sys.argv[1:]
    password = os.environ["PFGATE_NTLM_PASSWORD"]
    if mode in ("ntlm", "ntlm-bad-mic", "negotiate"):
        out = pyspnego_flow(mode, url, ca_file, user, password)
    elif mode == "requests-ntlm":
        out = requests_ntlm_flow(url, ca_file, user, password)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out["pyspnego"] = PYSPNEGO_VERSION
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
