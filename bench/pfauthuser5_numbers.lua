-- wrk script: the SOAP 1.1 PfAuthUser_5 call of bench/pfauthuser5.lua (mimservice@contoso.com, as a
-- .NET SoapHttpClientProtocol proxy sends it), but each request calls its own number: +1 425 followed
-- by six random digits and a final 0, which the demo's scripted provider approves at once. So every
-- request is an authentication of its own (store look-ups, a claim of the provider call in a shared
-- store, the call, its ending written), not a join of a call already in flight for the same number.
-- Run from the repository root: the body is read from bench/soap/PfAuthUser_5.xml.
local path = "bench/soap/PfAuthUser_5.xml"
local file = assert(io.open(path, "rb"), "cannot open " .. path .. " (run wrk from the repository root)")
local body = file:read("*a")
file:close()
assert(body:find("<phoneNumber>4255550100</phoneNumber>", 1, true), path .. ": the number to replace is missing")

-- Each wrk thread (and each of bench/ha.sh's wrk processes) gets its own sequence.
math.randomseed(os.time() * 1000 + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000))

wrk.method = "POST"
wrk.headers["User-Agent"] = "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)"
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
wrk.headers["SOAPAction"] = '"http://www.phonefactor.com/PfWsSdk/PfAuthUser_5"'
wrk.headers["Connection"] = "keep-alive"

request = function()
    local number = string.format("425%06d0", math.random(0, 999999))
    local b = body:gsub("<phoneNumber>4255550100</phoneNumber>", "<phoneNumber>" .. number .. "</phoneNumber>", 1)
    return wrk.format(nil, nil, nil, b)
end
