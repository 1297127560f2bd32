// Interop client for tests/integration/interop.rs: calls a running pfgate through proxies that
// Mono's `wsdl` generated from the server's own ?WSDL, on the .NET Framework SoapHttpClientProtocol
// stack (the one MIM and PowerShell use), over TLS 1.2 with the server certificate pinned.
//
// Usage: mono client.exe URL SHA256FINGERPRINT
//   URL          https://localhost:PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx
//   FINGERPRINT  SHA-256 of the server certificate (DER), upper-case hex with colons
//
// Output: one line per result, tab-separated: BINDING, OPERATION, LABEL, then key=value fields.
// A null string prints as <null>; tabs, newlines and backslashes inside values are escaped. The
// last line is "done". Any exception ends the program with exit code 1 and the exception on stderr.
//
// Compiled together with Proxy11.cs (namespace PfGate11, SOAP 1.1) and Proxy12.cs (PfGate12,
// SOAP 1.2). The two namespaces have distinct but identically shaped types, so each binding has its
// own Run method with the same calls.

using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

public static class InteropClient
{
    static string pinned;
    static int validations;

    public static int Main(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: client.exe URL SHA256FINGERPRINT");
            return 2;
        }
        string url = args[0];
        pinned = args[1].Trim().ToUpperInvariant();

        ServicePointManager.SecurityProtocol = SecurityProtocolType.Tls12;
        // Pinning: trust exactly the certificate whose SHA-256 the test passed, whatever the chain
        // or name checks say (the certificate is self-signed), and nothing else.
        ServicePointManager.ServerCertificateValidationCallback = Validate;

        try
        {
            Run11(url);
            Run12(url);
        }
        catch (Exception e)
        {
            Console.Out.Flush();
            Console.Error.WriteLine("interop client failed: " + e);
            return 1;
        }
        Emit("--", "TlsValidations", "-", "count=" + validations);
        Console.WriteLine("done");
        return 0;
    }

    static bool Validate(object sender, X509Certificate cert, X509Chain chain, SslPolicyErrors errors)
    {
        if (cert == null)
        {
            Console.Error.WriteLine("TLS: no server certificate");
            return false;
        }
        string actual = Fingerprint(cert.GetRawCertData());
        bool ok = actual == pinned;
        if (!ok)
        {
            Console.Error.WriteLine("TLS: certificate " + actual + " is not the pinned " + pinned);
        }
        else
        {
            validations++;
        }
        return ok;
    }

    static string Fingerprint(byte[] der)
    {
        byte[] hash;
        using (SHA256 sha = SHA256.Create())
        {
            hash = sha.ComputeHash(der);
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < hash.Length; i++)
        {
            if (i > 0) sb.Append(':');
            sb.Append(hash[i].ToString("X2"));
        }
        return sb.ToString();
    }

    static string Esc(string s)
    {
        if (s == null) return "<null>";
        return s.Replace("\\", "\\\\").Replace("\t", "\\t").Replace("\r", "\\r").Replace("\n", "\\n");
    }

    static string B(bool b)
    {
        return b ? "true" : "false";
    }

    static void Emit(string binding, string op, string label, params string[] fields)
    {
        StringBuilder sb = new StringBuilder();
        sb.Append(binding).Append('\t').Append(op).Append('\t').Append(label);
        foreach (string f in fields)
        {
            sb.Append('\t').Append(f);
        }
        Console.WriteLine(sb.ToString());
    }

    // Fields shared by the authentication results.
    static string[] Auth(bool result, bool hasCall, int callCode, string callDesc, bool hasError,
        int errorCode, string errorDesc, bool hasId, string requestId)
    {
        List<string> f = new List<string>();
        f.Add("result=" + B(result));
        f.Add("call=" + (hasCall ? callCode.ToString() : "<null>"));
        f.Add("callDesc=" + (hasCall ? Esc(callDesc) : "<null>"));
        f.Add("error=" + (hasError ? errorCode.ToString() : "<null>"));
        f.Add("errorDesc=" + (hasError ? Esc(errorDesc) : "<null>"));
        if (hasId) f.Add("id=" + Esc(requestId));
        return f.ToArray();
    }

    static void Run11(string url)
    {
        const string b = "11";
        PfGate11.PfWsSdk p = new PfGate11.PfWsSdk();
        // Default (SOAP 1.1) for the SOAP 1.1 proxy; Soap12 for the one generated with -protocol:Soap12.
        Emit(b, "SoapVersion", "-", "version=" + p.SoapVersion);
        // The address the served WSDL advertised (wsdl copies it into the constructor).
        Emit(b, "DefaultUrl", "-", "url=" + Esc(p.Url));
        p.Url = url;
        p.Timeout = 30000;

        Emit(b, "TestSecurity", "-", "result=" + Esc(p.TestSecurity()));

        PfGate11.CallResult cr;
        PfGate11.Error err;
        string id;
        bool ok;

        foreach (string user in new string[] { "alice", "bob" })
        {
            ok = p.PfAuthUser_4(user + "@contoso.com", PfGate11.AuthenticationType.pfsdk, "10.0.0.5",
                "MIM", true, out cr, out id, out err);
            Emit(b, "PfAuthUser_4", user, Auth(ok, cr != null, cr == null ? 0 : cr.Code,
                cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
                err == null ? null : err.Description, true, id));
        }

        // The number decides, not the user: bob's call to a number ending in 0 is approved, alice's
        // call to a number ending in 1 is not answered.
        string[][] phones = new string[][] {
            new string[] { "bob", "4255550100" },
            new string[] { "alice", "4255550111" },
        };
        foreach (string[] ph in phones)
        {
            ok = p.PfAuthUser_5(ph[0] + "@contoso.com", PfGate11.AuthenticationType.pfsdk, "10.0.0.5",
                "MIM", true, PfGate11.Mode3.voiceCall, "1", ph[1], "", out cr, out id, out err);
            Emit(b, "PfAuthUser_5", ph[1], Auth(ok, cr != null, cr == null ? 0 : cr.Code,
                cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
                err == null ? null : err.Description, true, id));
        }

        foreach (string user in new string[] { "alice@contoso.com", "nobody@contoso.com" })
        {
            PfGate11.UserSettings3 s;
            ok = p.GetUserSettings_3(user, out s, out err);
            Emit(b, "GetUserSettings_3", user, Settings(ok, s == null ? null : new string[] {
                s.FirstName, s.LastName, s.EmailAddress, s.UserGroup, s.CountryCode, s.Phone,
                s.Extension, s.Mode.ToString(), B(s.Enabled), s.DisabledBehavior.ToString() },
                err != null, err == null ? 0 : err.Code, err == null ? null : err.Description));
        }

        // Overloads: same C# method name, different wire operations.
        // PfAuthUser(username, ip, requireUserMatch) -> wire PfAuthUser.
        ok = p.PfAuthUser("bob@contoso.com", "10.0.0.5", true, out cr, out err);
        Emit(b, "PfAuthUser(3)", "bob", Auth(ok, cr != null, cr == null ? 0 : cr.Code,
            cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description, false, null));
        // PfAuthUser(username, type, ip, requireUserMatch) -> wire PfAuthUser2.
        ok = p.PfAuthUser("alice@contoso.com", PfGate11.AuthenticationType.pfsdk, "10.0.0.5", true,
            out cr, out err);
        Emit(b, "PfAuthUser(4)", "alice", Auth(ok, cr != null, cr == null ? 0 : cr.Code,
            cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description, false, null));
        // OneTimeBypass(username, reason, modifyUsername) -> wire OneTimeBypass;
        // OneTimeBypass(username, reason, bypassSeconds, modifyUsername) -> wire OneTimeBypass2.
        ok = p.OneTimeBypass("alice@contoso.com", "interop", "admin@contoso.com", out err);
        Emit(b, "OneTimeBypass(3)", "alice", Plain(ok, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description));
        ok = p.OneTimeBypass("alice@contoso.com", "interop", 300u, "admin@contoso.com", out err);
        Emit(b, "OneTimeBypass(4)", "alice", Plain(ok, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description));
    }

    static void Run12(string url)
    {
        const string b = "12";
        PfGate12.PfWsSdk p = new PfGate12.PfWsSdk();
        // Default (SOAP 1.1) for the SOAP 1.1 proxy; Soap12 for the one generated with -protocol:Soap12.
        Emit(b, "SoapVersion", "-", "version=" + p.SoapVersion);
        Emit(b, "DefaultUrl", "-", "url=" + Esc(p.Url));
        p.Url = url;
        p.Timeout = 30000;

        Emit(b, "TestSecurity", "-", "result=" + Esc(p.TestSecurity()));

        PfGate12.CallResult cr;
        PfGate12.Error err;
        string id;
        bool ok;

        foreach (string user in new string[] { "alice", "bob" })
        {
            ok = p.PfAuthUser_4(user + "@contoso.com", PfGate12.AuthenticationType.pfsdk, "10.0.0.5",
                "MIM", true, out cr, out id, out err);
            Emit(b, "PfAuthUser_4", user, Auth(ok, cr != null, cr == null ? 0 : cr.Code,
                cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
                err == null ? null : err.Description, true, id));
        }

        string[][] phones = new string[][] {
            new string[] { "bob", "4255550100" },
            new string[] { "alice", "4255550111" },
        };
        foreach (string[] ph in phones)
        {
            ok = p.PfAuthUser_5(ph[0] + "@contoso.com", PfGate12.AuthenticationType.pfsdk, "10.0.0.5",
                "MIM", true, PfGate12.Mode3.voiceCall, "1", ph[1], "", out cr, out id, out err);
            Emit(b, "PfAuthUser_5", ph[1], Auth(ok, cr != null, cr == null ? 0 : cr.Code,
                cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
                err == null ? null : err.Description, true, id));
        }

        foreach (string user in new string[] { "alice@contoso.com", "nobody@contoso.com" })
        {
            PfGate12.UserSettings3 s;
            ok = p.GetUserSettings_3(user, out s, out err);
            Emit(b, "GetUserSettings_3", user, Settings(ok, s == null ? null : new string[] {
                s.FirstName, s.LastName, s.EmailAddress, s.UserGroup, s.CountryCode, s.Phone,
                s.Extension, s.Mode.ToString(), B(s.Enabled), s.DisabledBehavior.ToString() },
                err != null, err == null ? 0 : err.Code, err == null ? null : err.Description));
        }

        ok = p.PfAuthUser("bob@contoso.com", "10.0.0.5", true, out cr, out err);
        Emit(b, "PfAuthUser(3)", "bob", Auth(ok, cr != null, cr == null ? 0 : cr.Code,
            cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description, false, null));
        ok = p.PfAuthUser("alice@contoso.com", PfGate12.AuthenticationType.pfsdk, "10.0.0.5", true,
            out cr, out err);
        Emit(b, "PfAuthUser(4)", "alice", Auth(ok, cr != null, cr == null ? 0 : cr.Code,
            cr == null ? null : cr.Description, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description, false, null));
        ok = p.OneTimeBypass("alice@contoso.com", "interop", "admin@contoso.com", out err);
        Emit(b, "OneTimeBypass(3)", "alice", Plain(ok, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description));
        ok = p.OneTimeBypass("alice@contoso.com", "interop", 300u, "admin@contoso.com", out err);
        Emit(b, "OneTimeBypass(4)", "alice", Plain(ok, err != null, err == null ? 0 : err.Code,
            err == null ? null : err.Description));
    }

    static string[] Plain(bool result, bool hasError, int errorCode, string errorDesc)
    {
        return new string[] {
            "result=" + B(result),
            "error=" + (hasError ? errorCode.ToString() : "<null>"),
            "errorDesc=" + (hasError ? Esc(errorDesc) : "<null>"),
        };
    }

    static readonly string[] SettingNames = {
        "FirstName", "LastName", "EmailAddress", "UserGroup", "CountryCode", "Phone", "Extension",
        "Mode", "Enabled", "DisabledBehavior",
    };

    static string[] Settings(bool result, string[] values, bool hasError, int errorCode,
        string errorDesc)
    {
        List<string> f = new List<string>();
        f.Add("result=" + B(result));
        if (values == null)
        {
            f.Add("settings=<null>");
        }
        else
        {
            for (int i = 0; i < SettingNames.Length; i++)
            {
                f.Add(SettingNames[i] + "=" + Esc(values[i]));
            }
        }
        f.Add("error=" + (hasError ? errorCode.ToString() : "<null>"));
        f.Add("errorDesc=" + (hasError ? Esc(errorDesc) : "<null>"));
        return f.ToArray();
    }
}
