#!/usr/bin/env python3
"""Builds fuzz/corpus/<target>/ seeds from the repository's fixtures (run by fuzz/seed-corpus.sh).

Sources, all in the repository: the captured .NET request bodies (bench/soap/*.xml), one request
per operation built from wsdl/pfwssdk-contract.json (every input filled, SOAP 1.1 and 1.2), the
example and fixture configurations (*.toml), and NTLM / SPNEGO messages from pyspnego (a real
client and server exchange; skipped with a note if pyspnego is not installed — .ci/install-deps
installs it), and every request of the captured .NET proxy requests
(fixtures/captures/dotnet-proxy-requests.txt; PFGATE_CAPTURES=PATH reads another capture file). Seeds are small; the generated corpus is never committed (fuzz/.gitignore).
"""
import hashlib
import json
import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "fixtures" / "captures" / "dotnet-proxy-requests.txt"
OUT = ROOT / "fuzz" / "corpus"
NS = "http://www.phonefactor.com/PfWsSdk"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'

counts = {}


def put(target, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
    counts[target] = counts.get(target, 0) + 1


def value_xml(types, ty, depth=0):
    """Content of an element of contract type `ty`, with plausible values."""
    m = re.match(r"ArrayOf\w+ \(items <(\w+)>\)", ty)
    if m:
        item = m.group(1)
        inner = value_xml(types, "string" if item == "string" else item, depth + 1)
        return f"<{item}>{inner}</{item}>" * 2
    if ty == "string":
        return "4255550100" if depth else "mimservice@contoso.com"
    if ty == "boolean":
        return "true"
    if ty in ("int", "unsignedInt", "long"):
        return "5"
    t = types.get(ty)
    if t is None or depth > 4:
        return ""
    if "values" in t:
        return t["values"][0]
    return "".join(
        f"<{f['element']}>{value_xml(types, f['type'], depth + 1)}</{f['element']}>"
        for f in t.get("fields", [])
    )


def envelope(version, inner):
    ns = SOAP11 if version == 11 else SOAP12
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{ns}" {XSI}>'
            f"<soap:Body>{inner}</soap:Body></soap:Envelope>")


def soap_seed(version, op, body):
    action = f"http://www.phonefactor.com/PfWsSdk/{op}"
    if version == 11:
        head = f'text/xml; charset=utf-8\n"{action}"\n'
    else:
        head = f'application/soap+xml; charset=utf-8; action="{action}"\n\n'
    return head.encode() + body.encode()


def main():
    contract = json.loads((ROOT / "wsdl" / "pfwssdk-contract.json").read_text())
    types = contract["types"]
    ops = [o["operation"] for o in contract["operations"]]
    # Operation::ALL's order is the contract's order (tests/integration/contract.rs checks it);
    # the operation_request target picks ALL[first byte % 105].
    for i, o in enumerate(contract["operations"]):
        name = o["operation"]
        fields = "".join(
            f"<{f['element']}>{value_xml(types, f['type'])}</{f['element']}>" for f in o["inputs"]
        )
        put("operation_request", bytes([i]) + fields.encode())
        op_el = f'<{name} xmlns="{NS}">{fields}</{name}>'
        put("soap_envelope", soap_seed(11, name, envelope(11, op_el)))
        if i % 5 == 0:
            put("soap_envelope", soap_seed(12, name, envelope(12, op_el)))
    for xml in sorted((ROOT / "bench" / "soap").glob("*.xml")):
        put("soap_envelope", soap_seed(11, xml.stem, xml.read_text().strip()))
    captures = os.environ.get("PFGATE_CAPTURES") or str(CAPTURES)
    if pathlib.Path(captures).is_file():
        for block in pathlib.Path(captures).read_text().split("=== ")[1:]:
            head, _, body = block.partition("\n\n")
            ct = re.search(r"^Content-Type: (.*)$", head, re.M)
            sa = re.search(r"^SOAPAction: (.*)$", head, re.M)
            put("soap_envelope", f"{ct.group(1) if ct else ''}\n{sa.group(1) if sa else ''}\n"
                .encode() + body.strip().encode())
    for toml in sorted(list(ROOT.glob("*.toml")) + list((ROOT / "fixtures").rglob("*.toml"))):
        if toml.name not in ("Cargo.toml", "clippy.toml", "rustfmt.toml"):
            put("config", toml.read_bytes())
    ntlm_seeds()
    spnego_seeds()
    print("seed corpus:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def ntlm_seeds():
    try:
        import spnego
    except ImportError:
        print("seed-corpus: pyspnego not installed: NTLM seeds are the fixed NEGOTIATE only",
              file=sys.stderr)
        spnego = None
    negotiate = bytes.fromhex("4e544c4d5353500001000000378208e2000000002800000000000000"
                              "280000000a0063450000000f")
    put("ntlm", b"\x00" + negotiate)
    if spnego is None:
        return
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".users") as users:
        users.write("CONTOSO:svc-mim:Passw0rd!\n")
        users.flush()
        os.environ["NTLM_USER_FILE"] = users.name
        raw_c = spnego.client("svc-mim", "Passw0rd!", hostname="pfgate.example", protocol="ntlm")
        raw_s = spnego.server(protocol="ntlm")
        t1 = raw_c.step()
        t2 = raw_s.step(t1)
        t3 = raw_c.step(t2)
        put("ntlm", b"\x00" + t1)
        put("ntlm", b"\x01" + t3)  # an AUTHENTICATE with MIC, AV pairs, NTLMv2 response
        neg_c = spnego.client("CONTOSO\\svc-mim", "Passw0rd!", hostname="pfgate.example",
                              protocol="negotiate")
        neg_s = spnego.server(protocol="negotiate")
        n1 = neg_c.step()
        n2 = neg_s.step(n1)
        n3 = neg_c.step(n2)
        put("ntlm", b"\x02" + len(n1).to_bytes(2, "big") + n1 + n3)
        put("ntlm", b"\x03" + n1)
        put("ntlm", b"\x03" + n3)
        for token in (n1, n2, n3):
            put("spnego", b"\x00" + token)


def der(tag, content):
    """One DER TLV (definite length, short or long form)."""
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def spnego_seeds():
    """Hand-built SPNEGO tokens (present without pyspnego): a NegTokenInit offering Kerberos 5
    then NTLMSSP with an optimistic token, one offering NTLMSSP only, NegTokenResp answers, a bare
    Kerberos framing, and the encoder path with short and long DER lengths."""
    spnego_oid = der(0x06, bytes.fromhex("2b0601050502"))
    krb5 = der(0x06, bytes.fromhex("2a864886f712010202"))
    ntlmssp = der(0x06, bytes.fromhex("2b06010401823702020a"))
    negotiate = bytes.fromhex("4e544c4d5353500001000000378208e2000000002800000000000000"
                              "280000000a0063450000000f")

    def init(*mechs, token=None):
        fields = der(0xA0, der(0x30, b"".join(mechs)))
        if token is not None:
            fields += der(0xA2, der(0x04, token))
        return der(0x60, spnego_oid + der(0xA0, der(0x30, fields)))

    def resp(state=None, mech=None, token=None, mic=None):
        fields = b""
        if state is not None:
            fields += der(0xA0, der(0x0A, bytes([state])))
        if mech is not None:
            fields += der(0xA1, mech)
        if token is not None:
            fields += der(0xA2, der(0x04, token))
        if mic is not None:
            fields += der(0xA3, der(0x04, mic))
        return der(0xA1, der(0x30, fields))

    for token in (
        init(krb5, ntlmssp),
        init(ntlmssp, token=negotiate),
        init(krb5, ntlmssp, token=b"\x60\x03\x06\x01\x00"),
        resp(1, ntlmssp, negotiate),
        resp(0, mic=b"\x01" * 16),
        resp(token=b"\x00" * 300),
        der(0x60, krb5 + b"\x01\x00" + b"\x00" * 8),
        negotiate,
    ):
        put("spnego", b"\x00" + token)
    put("spnego", b"\x01\x01\x0a\x00\x28" + bytes.fromhex("2b06010401823702020a") + negotiate)
    put("spnego", b"\x03\x00\x01\x2c" + b"\x00" * 400)


if __name__ == "__main__":
    main()
