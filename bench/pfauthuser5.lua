-- wrk script: the SOAP 1.1 PfAuthUser_5 call (country code 1, number 4255550100, which the demo's
-- scripted provider approves at once) exactly as a .NET SoapHttpClientProtocol proxy sends it
-- (fixtures/captures/dotnet-proxy-requests.txt). Run from the repository root: the body is
-- read from bench/soap/PfAuthUser_5.xml. wrk adds Host (from the URL) and Content-Length itself.
local path = "bench/soap/PfAuthUser_5.xml"
local file = assert(io.open(path, "rb"), "cannot open " .. path .. " (run wrk from the repository root)")
local body = file:read("*a")
file:close()
assert(#body == 658, path .. ": expected the captured 658 bytes, found " .. #body)

wrk.method = "POST"
wrk.body = body
wrk.headers["User-Agent"] = "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)"
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
wrk.headers["SOAPAction"] = '"http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"'
wrk.headers["Connection"] = "keep-alive"
