// Interop client for tests/integration/mock_interop.rs: the .NET Framework SoapHttpClientProtocol
// stack (what MIM and PowerShell use), through a proxy Mono's `wsdl` generated from the test
// double's own ?WSDL, against `pfgate mock` with the fault scenario of mock_faults.rs. What a
// client's retry and timeout code meets: each call prints what the stack made of the answer.
//
// Usage: mono mockclient.exe URL SHA256FINGERPRINT
//
// Output: one line per call, tab-separated: LABEL, then key=value fields:
//   outcome=ok result=true|false call=CODE         a normal answer
//   outcome=exception type=FULL.TYPE.NAME [status=WebExceptionStatus] [http=CODE] [inner=TYPE]
//                     [soap=CODE]
// The last line is "done". Compiled together with Proxy.cs (namespace PfGateMock, SOAP 1.1).

using System;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Web.Services.Protocols;

public static class MockClient
{
    static string pinned;

    public static int Main(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: mockclient.exe URL SHA256FINGERPRINT");
            return 2;
        }
        pinned = args[1].Trim().ToUpperInvariant();
        ServicePointManager.SecurityProtocol = SecurityProtocolType.Tls12;
        ServicePointManager.ServerCertificateValidationCallback = Validate;

        Call(args[0], "alice", "alice@contoso.com", 30000);
        Call(args[0], "soap-client", "soap-client@fault.test", 30000);
        Call(args[0], "soap-server", "soap-server@fault.test", 30000);
        Call(args[0], "http500", "http500@fault.test", 30000);
        Call(args[0], "http503", "http503@fault.test", 30000);
        Call(args[0], "drop-before", "drop-before@fault.test", 30000);
        Call(args[0], "drop-after", "drop-after@fault.test", 30000);
        Call(args[0], "trickle", "trickle@fault.test", 30000);
        Call(args[0], "malformed", "malformed@fault.test", 30000);
        // The 700 ms delay against a 300 ms client timeout: the timeout path.
        Call(args[0], "slow-timeout", "slow@fault.test", 300);
        Console.WriteLine("done");
        return 0;
    }

    static void Call(string url, string label, string user, int timeoutMs)
    {
        PfGateMock.PfWsSdk p = new PfGateMock.PfWsSdk();
        p.Url = url;
        p.Timeout = timeoutMs;
        Stopwatch sw = Stopwatch.StartNew();
        try
        {
            PfGateMock.CallResult cr;
            PfGateMock.Error err;
            string id;
            bool ok = p.PfAuthUser_4(user, PfGateMock.AuthenticationType.pfsdk, "10.0.0.5", "ADFS",
                true, out cr, out id, out err);
            Console.WriteLine(label + "\toutcome=ok\tresult=" + (ok ? "true" : "false") + "\tcall="
                + (cr == null ? "-" : cr.Code.ToString()) + "\tms=" + sw.ElapsedMilliseconds);
        }
        catch (Exception e)
        {
            StringBuilder sb = new StringBuilder();
            sb.Append(label).Append("\toutcome=exception\ttype=").Append(e.GetType().FullName);
            WebException we = e as WebException;
            if (we != null)
            {
                sb.Append("\tstatus=").Append(we.Status);
                HttpWebResponse r = we.Response as HttpWebResponse;
                if (r != null)
                {
                    sb.Append("\thttp=").Append((int)r.StatusCode);
                }
            }
            if (e.InnerException != null)
            {
                sb.Append("\tinner=").Append(e.InnerException.GetType().FullName);
            }
            SoapException se = e as SoapException;
            if (se != null)
            {
                sb.Append("\tsoap=").Append(se.Code.Name);
            }
            sb.Append("\tms=").Append(sw.ElapsedMilliseconds);
            Console.WriteLine(sb.ToString());
            Console.Error.WriteLine(label + ": " + e.GetType().FullName + ": " + e.Message);
        }
    }

    static bool Validate(object sender, X509Certificate cert, X509Chain chain, SslPolicyErrors errors)
    {
        if (cert == null)
        {
            return false;
        }
        byte[] hash;
        using (SHA256 sha = SHA256.Create())
        {
            hash = sha.ComputeHash(cert.GetRawCertData());
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < hash.Length; i++)
        {
            if (i > 0) sb.Append(':');
            sb.Append(hash[i].ToString("X2"));
        }
        return sb.ToString() == pinned;
    }
}
