// Calls PfAuthUser_4 / PfAuthUser_5 through a wsdl-generated SoapHttpClientProtocol proxy.
// Usage: mono auth.exe URL SHA256FINGERPRINT CALL...   where CALL is "4:USER" or "5:USER:CC:NUMBER".
// Prints one line per call: "<result> <callResult code>".
using System;
using System.Net;
using System.Security.Cryptography;

public static class AuthClient
{
    public static int Main(string[] args)
    {
        string url = args[0], pin = args[1];
        ServicePointManager.SecurityProtocol = SecurityProtocolType.Tls12;
        ServicePointManager.ServerCertificateValidationCallback = (sender, cert, chain, errors) =>
        {
            using (var sha = SHA256.Create())
                return BitConverter.ToString(sha.ComputeHash(cert.GetRawCertData())).Replace("-", ":") == pin;
        };
        var proxy = new PfGateAuth.PfWsSdk { Url = url };
        for (int i = 2; i < args.Length; i++)
        {
            var p = args[i].Split(':');
            PfGateAuth.CallResult callResult;
            string requestId;
            PfGateAuth.Error error;
            bool ok = p[0] == "5"
                ? proxy.PfAuthUser_5(p[1], PfGateAuth.AuthenticationType.pfsdk, "10.0.0.5", "MIM", false,
                    PfGateAuth.Mode3.voiceCall, p[2], p[3], "", out callResult, out requestId, out error)
                : proxy.PfAuthUser_4(p[1], PfGateAuth.AuthenticationType.pfsdk, "10.0.0.5", "MIM", true,
                    out callResult, out requestId, out error);
            Console.WriteLine("{0} {1}", ok ? "true" : "false", callResult.Code);
        }
        return 0;
    }
}
