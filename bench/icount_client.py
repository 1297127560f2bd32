# N keep-alive TestSecurity requests over TLS on one connection (the bench/test_security.lua bytes).
import socket, ssl, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = open(sys.argv[4], "rb").read()
req = (b"POST /MultiFactorAuthWebServiceSdk/PfWsSdk.asmx HTTP/1.1\r\nHost: localhost\r\n"
       b"User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)\r\n"
       b"Content-Type: text/xml; charset=utf-8\r\nSOAPAction: \"http://www.phonefactor.com/PfWsSdk/TestSecurity\"\r\n"
       b"Connection: keep-alive\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
f = s.makefile("rb")
for i in range(n):
    s.sendall(req)
    status = f.readline()
    assert b" 200 " in status, status
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""): break
        if line.lower().startswith(b"content-length:"): length = int(line.split(b":")[1])
    data = f.read(length)
    assert b"secure" in data, data
s.close()
