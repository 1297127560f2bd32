// Calls pfgate through a wsdl-generated SoapHttpClientProtocol proxy with Windows Integrated
// authentication (NTLM), the way MIM calls the MFA Server SDK as its service account.
// Usage: mono ntlm.exe URL SHA256FINGERPRINT DOMAIN USER PASSWORD
// Prints "secure <PfAuthUser_4 result> <callResult code>" or "ERROR <message>".
using System;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

public static class NtlmClient
{
    public static int Main(string[] args)
    {
        string url = args[0], pin = args[1], domain = args[2], user = args[3], password = args[4];
        ServicePointManager.SecurityProtocol = SecurityProtocolType.Tls12;
        ServicePointManager.ServerCertificateValidationCallback = (sender, cert, chain, errors) =>
        {
            using (var sha = SHA256.Create())
            {
                var hash = sha.ComputeHash(cert.GetRawCertData());
                return BitConverter.ToString(hash).Replace("-", ":") == pin;
            }
        };
        // Mono defaults to NTLMv1/NTLM2-session; Windows clients send NTLMv2. pfgate refuses v1.
        Mono.Security.Protocol.Ntlm.NtlmSettings.DefaultAuthLevel =
            Mono.Security.Protocol.Ntlm.NtlmAuthLevel.NTLMv2_only;
        var proxy = new PfGateNtlm.PfWsSdk { Url = url };
        var cache = new CredentialCache();
        cache.Add(new Uri(url), "NTLM", new NetworkCredential(user, password, domain));
        proxy.Credentials = cache;
        try
        {
            string secure = proxy.TestSecurity();
            PfGateNtlm.CallResult callResult;
            string requestId;
            PfGateNtlm.Error error;
            bool ok = proxy.PfAuthUser_4("alice@contoso.com", PfGateNtlm.AuthenticationType.pfsdk,
                "10.0.0.5", "MIM", true, out callResult, out requestId, out error);
            Console.WriteLine("{0} {1} {2}", secure, ok ? "true" : "false", callResult.Code);
            return 0;
        }
        catch (WebException e)
        {
            var r = e.Response as HttpWebResponse;
            Console.WriteLine("ERROR {0}", r != null ? ((int)r.StatusCode).ToString() : e.Status.ToString());
            return 1;
        }
    }
}
