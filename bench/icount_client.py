# N keep-alive SOAP requests on one connection, the bytes a .NET SoapHttpClientProtocol proxy sends
# (the bench/*.lua headers). The SOAPAction is the operation named by the body's first element
# inside soap:Body. Every response must be 200 and contain EXPECT (default: "secure" for
# TestSecurity, "<OPERATIONResult>" otherwise), so a run that was answered by a fault counts nothing.
# usage: icount_client.py HOST PORT N BODY_FILE [--plain] [--expect STRING]
import re, socket, ssl, sys

args = [a for a in sys.argv[1:]]
plain = "--plain" in args
if plain:
    args.remove("--plain")
expect = None
if "--expect" in args:
    i = args.index("--expect")
    expect = args[i + 1].encode()
    del args[i:i + 2]
host, port, n, path = args[0], int(args[1]), int(args[2]), args[3]
body = open(path, "rb").read()
m = re.search(rb"<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)", body)
assert m, path + ": no operation element inside soap:Body"
op = m.group(1)
if expect is None:
    expect = b"secure" if op == b"TestSecurity" else b"<" + op + b"Result>"
req = (b"POST /MultiFactorAuthWebServiceSdk/PfWsSdk.asmx HTTP/1.1\r\nHost: localhost\r\n"
       b"User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)\r\n"
       b"Content-Type: text/xml; charset=utf-8\r\nSOAPAction: \"http://www.phonefactor.com/PfWsSdk/" + op + b"\"\r\n"
       b"Connection: keep-alive\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
s = socket.create_connection((host, port))
if not plain:
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s, server_hostname="localhost")
f = s.makefile("rb")
for i in range(n):
    s.sendall(req)
    status = f.readline()
    assert b" 200 " in status, status
    length = None
    while True:
        line = f.readline()
        if line in (b"\r\n", b""): break
        if line.lower().startswith(b"content-length:"): length = int(line.split(b":")[1])
    assert length is not None, "response without Content-Length"
    data = f.read(length)
    assert expect in data, data
s.close()
