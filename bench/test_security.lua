-- wrk script: the SOAP 1.1 TestSecurity call exactly as a .NET SoapHttpClientProtocol proxy sends it
-- (fixtures/captures/dotnet-proxy-requests.txt). Run from the repository root: the body is
-- read from bench/soap/TestSecurity.xml. wrk adds Host (from the URL) and Content-Length itself.
-- Left out on purpose: `Expect: 100-continue`, which .NET sends on the first request of a connection
-- only; wrk cannot wait for the interim `100 Continue` and would count it as a response.
local path = "bench/soap/TestSecurity.xml"
local file = assert(io.open(path, "rb"), "cannot open " .. path .. " (run wrk from the repository root)")
local body = file:read("*a")
file:close()
assert(#body == 305, path .. ": expected the captured 305 bytes, found " .. #body)

wrk.method = "POST"
wrk.body = body
wrk.headers["User-Agent"] = "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)"
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
wrk.headers["SOAPAction"] = '"http://www.phonefactor.com/PfWsSdk/TestSecurity"'
wrk.headers["Connection"] = "keep-alive"
