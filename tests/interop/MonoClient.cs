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
// own Run method with the same calls (Run12 is Run11 with PfGate11 -> PfGate12 and b = "12"), and
// the typed helpers come in pairs.
//
// The calls change the server's state, and both bindings talk to the same server, so their order
// matters: a one-time bypass is granted and consumed within one binding's run; each run adds its
// own user (frank11@contoso.com, frank12@contoso.com), so the SOAP 1.2 run's FindUsers_4 also sees
// the user the SOAP 1.1 run added. The user settings sent with AddUser_3 (NewUser11/NewUser12) are
// what tests/integration/interop.rs expects back; change both together.

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

    const string Ip = "10.0.0.5";
    const string App = "MIM";
    const string Admin = "admin@contoso.com";

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

    static string[] Plain(bool result, bool hasError, int errorCode, string errorDesc)
    {
        return new string[] {
            "result=" + B(result),
            "error=" + (hasError ? errorCode.ToString() : "<null>"),
            "errorDesc=" + (hasError ? Esc(errorDesc) : "<null>"),
        };
    }

    // GetUserSettings_3 of a demo user: what fixtures/demo.toml sets.
    static readonly string[] SettingNames = {
        "FirstName", "LastName", "EmailAddress", "UserGroup", "CountryCode", "Phone", "Extension",
        "Mode", "Enabled", "DisabledBehavior",
    };

    // GetUserSettings_3 of the user added with AddUser_3: everything AddUserSettings3 set, and the
    // secrets that must never come back.
    static readonly string[] NewSettingNames = {
        "FirstName", "LastName", "EmailAddress", "UserGroup", "CountryCode", "Phone", "Extension",
        "BackupCountryCode", "BackupPhone", "BackupExtension", "Mode", "PinMode", "SmsDirection",
        "SmsMode", "PhoneAppMode", "Enabled", "PinChangeRequired", "Pin", "OathTokenSecretKey",
        "StaticToken", "OathTokenExists", "EnableStaticToken",
    };

    static readonly string[] RowNames = {
        "Username", "FirstName", "LastName", "EmailAddress", "UserGroup", "CountryCode", "Phone",
        "Extension",
    };

    static string[] Settings(bool result, string[] names, string[] values, bool hasError,
        int errorCode, string errorDesc)
    {
        List<string> f = new List<string>();
        f.Add("result=" + B(result));
        if (values == null)
        {
            f.Add("settings=<null>");
        }
        else
        {
            for (int i = 0; i < names.Length; i++)
            {
                f.Add(names[i] + "=" + Esc(values[i]));
            }
        }
        f.Add("error=" + (hasError ? errorCode.ToString() : "<null>"));
        f.Add("errorDesc=" + (hasError ? Esc(errorDesc) : "<null>"));
        return f.ToArray();
    }

    // FindUsers_4: the usernames found in order, and the row of the user this run added (fields
    // prefixed "added."), if it is among them.
    static string[] Found(bool result, bool complete, string[] usernames, string[] addedRow,
        bool hasError, int errorCode, string errorDesc)
    {
        List<string> f = new List<string>();
        f.Add("result=" + B(result));
        f.Add("complete=" + B(complete));
        if (usernames == null)
        {
            f.Add("users=<null>");
        }
        else
        {
            List<string> escaped = new List<string>();
            foreach (string u in usernames) escaped.Add(Esc(u));
            f.Add("users=" + string.Join(",", escaped.ToArray()));
        }
        if (addedRow != null)
        {
            for (int i = 0; i < RowNames.Length; i++)
            {
                f.Add("added." + RowNames[i] + "=" + Esc(addedRow[i]));
            }
        }
        f.Add("error=" + (hasError ? errorCode.ToString() : "<null>"));
        f.Add("errorDesc=" + (hasError ? Esc(errorDesc) : "<null>"));
        return f.ToArray();
    }

    // ---- PfGate11 (SOAP 1.1) ----

    static string[] Auth(bool ok, PfGate11.CallResult cr, PfGate11.Error err, bool hasId, string id)
    {
        return Auth(ok, cr != null, cr == null ? 0 : cr.Code, cr == null ? null : cr.Description,
            err != null, err == null ? 0 : err.Code, err == null ? null : err.Description, hasId, id);
    }

    static string[] Plain(bool ok, PfGate11.Error err)
    {
        return Plain(ok, err != null, err == null ? 0 : err.Code, err == null ? null : err.Description);
    }

    // The user AddUser_3 adds: every field set, most of them to something other than the defaults a
    // new user gets, so GetUserSettings_3 shows they were kept. "2580" passes the PIN rules.
    static PfGate11.AddUserSettings3 NewUser11(string username, string pin)
    {
        PfGate11.AddUserSettings3 a = new PfGate11.AddUserSettings3();
        a.FirstName = "Frank";
        a.LastName = "Fischer";
        a.EmailAddress = username;
        a.UserGroup = "Sales";
        a.CountryCode = "44";
        a.Phone = "2079460958";
        a.Extension = "77";
        a.BackupCountryCode = "1";
        a.BackupPhone = "4255550177";
        a.BackupExtension = "";
        a.Mode = PfGate11.Mode3.smsText;
        a.PinMode = PfGate11.PinMode2.pin;
        a.SmsDirection = PfGate11.SmsDirection.oneWay;
        a.SmsMode = PfGate11.SmsMode.otpPlusPin;
        a.PhoneAppMode = PfGate11.PhoneAppMode.pin;
        a.Pin = pin;
        a.Enabled = true;
        a.PinChangeRequired = true;
        return a;
    }

    static string[] DemoSettings(bool ok, PfGate11.UserSettings3 s, PfGate11.Error err)
    {
        return Settings(ok, SettingNames, s == null ? null : new string[] {
            s.FirstName, s.LastName, s.EmailAddress, s.UserGroup, s.CountryCode, s.Phone,
            s.Extension, s.Mode.ToString(), B(s.Enabled), s.DisabledBehavior.ToString() },
            err != null, err == null ? 0 : err.Code, err == null ? null : err.Description);
    }

    static string[] NewSettings(bool ok, PfGate11.UserSettings3 s, PfGate11.Error err)
    {
        return Settings(ok, NewSettingNames, s == null ? null : new string[] {
            s.FirstName, s.LastName, s.EmailAddress, s.UserGroup, s.CountryCode, s.Phone,
            s.Extension, s.BackupCountryCode, s.BackupPhone, s.BackupExtension, s.Mode.ToString(),
            s.PinMode.ToString(), s.SmsDirection.ToString(), s.SmsMode.ToString(),
            s.PhoneAppMode.ToString(), B(s.Enabled), B(s.PinChangeRequired), s.Pin,
            s.OathTokenSecretKey, s.StaticToken, B(s.OathTokenExists), B(s.EnableStaticToken) },
            err != null, err == null ? 0 : err.Code, err == null ? null : err.Description);
    }

    // FindUsers_4 with only a username filter (every other filter "not specified", no tags).
    static void Find(PfGate11.PfWsSdk p, string b, string filter, bool caseSensitive, uint limit,
        string added)
    {
        PfGate11.UserRow[] rows;
        bool complete;
        PfGate11.Error err;
        bool ok = p.FindUsers_4(filter, caseSensitive, null, false, null, false, null, false, null,
            false, null, PfGate11.Mode3.voiceCall, false, PfGate11.PinMode2.standard, false,
            PfGate11.SmsDirection.twoWay, false, PfGate11.SmsMode.otp, false,
            PfGate11.PhoneAppMode.standard, false, PfGate11.TagMatchType.allUsers, null, true, false,
            limit, out rows, out complete, out err);
        string[] names = null;
        string[] addedRow = null;
        if (rows != null)
        {
            names = new string[rows.Length];
            for (int i = 0; i < rows.Length; i++)
            {
                PfGate11.UserRow r = rows[i];
                names[i] = r == null ? "<null row>" : r.Username;
                if (r != null && r.Username == added)
                {
                    addedRow = new string[] { r.Username, r.FirstName, r.LastName, r.EmailAddress,
                        r.UserGroup, r.CountryCode, r.Phone, r.Extension };
                }
            }
        }
        string label = filter + (caseSensitive ? " case-sensitive" : "") + " limit " + limit;
        Emit(b, "FindUsers_4", label, Found(ok, complete, names, addedRow, err != null,
            err == null ? 0 : err.Code, err == null ? null : err.Description));
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
            ok = p.PfAuthUser_4(user + "@contoso.com", PfGate11.AuthenticationType.pfsdk, Ip, App,
                true, out cr, out id, out err);
            Emit(b, "PfAuthUser_4", user, Auth(ok, cr, err, true, id));
        }

        // The number decides, not the user: bob's call to a number ending in 0 is approved, alice's
        // call to a number ending in 1 is not answered.
        string[][] phones = new string[][] {
            new string[] { "bob", "4255550100" },
            new string[] { "alice", "4255550111" },
        };
        foreach (string[] ph in phones)
        {
            ok = p.PfAuthUser_5(ph[0] + "@contoso.com", PfGate11.AuthenticationType.pfsdk, Ip, App,
                true, PfGate11.Mode3.voiceCall, "1", ph[1], "", out cr, out id, out err);
            Emit(b, "PfAuthUser_5", ph[1], Auth(ok, cr, err, true, id));
        }

        foreach (string user in new string[] { "alice@contoso.com", "nobody@contoso.com" })
        {
            PfGate11.UserSettings3 s;
            ok = p.GetUserSettings_3(user, out s, out err);
            Emit(b, "GetUserSettings_3", user, DemoSettings(ok, s, err));
        }

        // Overloads: same C# method name, different wire operations.
        // PfAuthUser(username, ip, requireUserMatch) -> wire PfAuthUser.
        ok = p.PfAuthUser("bob@contoso.com", Ip, true, out cr, out err);
        Emit(b, "PfAuthUser(3)", "bob", Auth(ok, cr, err, false, null));
        // PfAuthUser(username, type, ip, requireUserMatch) -> wire PfAuthUser2.
        ok = p.PfAuthUser("alice@contoso.com", PfGate11.AuthenticationType.pfsdk, Ip, true, out cr,
            out err);
        Emit(b, "PfAuthUser(4)", "alice", Auth(ok, cr, err, false, null));

        // One-time bypass: the user's next authentication passes without a call, once. Each bypass
        // granted here is consumed here, so the other binding's run starts without one.
        // OneTimeBypass(username, reason, modifyUsername) -> wire OneTimeBypass; for bob, whose
        // calls are never answered, so only the bypass can make his authentication pass.
        ok = p.OneTimeBypass("bob@contoso.com", "interop", Admin, out err);
        Emit(b, "OneTimeBypass(3)", "bob", Plain(ok, err));
        foreach (string label in new string[] { "bob bypassed", "bob after the bypass" })
        {
            ok = p.PfAuthUser_4("bob@contoso.com", PfGate11.AuthenticationType.pfsdk, Ip, App, true,
                out cr, out id, out err);
            Emit(b, "PfAuthUser_4", label, Auth(ok, cr, err, true, id));
        }
        // OneTimeBypass(username, reason, bypassSeconds, modifyUsername) -> wire OneTimeBypass2.
        ok = p.OneTimeBypass("alice@contoso.com", "interop", 300u, Admin, out err);
        Emit(b, "OneTimeBypass(4)", "alice", Plain(ok, err));
        foreach (string label in new string[] { "alice bypassed", "alice after the bypass" })
        {
            ok = p.PfAuthUser_4("alice@contoso.com", PfGate11.AuthenticationType.pfsdk, Ip, App, true,
                out cr, out id, out err);
            Emit(b, "PfAuthUser_4", label, Auth(ok, cr, err, true, id));
        }
        ok = p.OneTimeBypass("nobody@contoso.com", "interop", 300u, Admin, out err);
        Emit(b, "OneTimeBypass(4)", "nobody", Plain(ok, err));

        // AddUser_3: a new user; the same request again; the name in upper case (without a PIN:
        // hashing a PIN is slow in a debug build); a weak PIN.
        string frank = "frank" + b + "@contoso.com";
        ok = p.AddUser_3(frank, NewUser11(frank, "2580"), false, Admin, out err);
        Emit(b, "AddUser_3", frank, Plain(ok, err));
        ok = p.AddUser_3(frank, NewUser11(frank, "2580"), false, Admin, out err);
        Emit(b, "AddUser_3", frank + " again", Plain(ok, err));
        string upper = frank.ToUpperInvariant();
        ok = p.AddUser_3(upper, NewUser11(upper, null), false, Admin, out err);
        Emit(b, "AddUser_3", upper, Plain(ok, err));
        string grace = "grace" + b + "@contoso.com";
        ok = p.AddUser_3(grace, NewUser11(grace, "1111"), false, Admin, out err);
        Emit(b, "AddUser_3", grace + " PIN 1111", Plain(ok, err));

        // What was kept: frank with every field sent and no secret; grace not at all.
        foreach (string user in new string[] { frank, grace })
        {
            PfGate11.UserSettings3 s;
            ok = p.GetUserSettings_3(user, out s, out err);
            Emit(b, "GetUserSettings_3", user, NewSettings(ok, s, err));
        }
        Find(p, b, "*@contoso.com", false, 2u, frank);
        Find(p, b, "*@CONTOSO.COM", false, 0u, frank);
        Find(p, b, "*@CONTOSO.COM", true, 0u, frank);

        // An operation pfgate does not implement: false with Error 501 naming it, never a fault.
        PfGate11.UserSecurityQuestions q;
        ok = p.GetSecurityQuestions("alice@contoso.com", out q, out err);
        Emit(b, "GetSecurityQuestions", "alice", Plain(ok, err));
    }

    // ---- PfGate12 (SOAP 1.2): the same calls as PfGate11 ----

    static string[] Auth(bool ok, PfGate12.CallResult cr, PfGate12.Error err, bool hasId, string id)
    {
        return Auth(ok, cr != null, cr == null ? 0 : cr.Code, cr == null ? null : cr.Description,
            err != null, err == null ? 0 : err.Code, err == null ? null : err.Description, hasId, id);
    }

    static string[] Plain(bool ok, PfGate12.Error err)
    {
        return Plain(ok, err != null, err == null ? 0 : err.Code, err == null ? null : err.Description);
    }

    // The user AddUser_3 adds: every field set, most of them to something other than the defaults a
    // new user gets, so GetUserSettings_3 shows they were kept. "2580" passes the PIN rules.
    static PfGate12.AddUserSettings3 NewUser12(string username, string pin)
    {
        PfGate12.AddUserSettings3 a = new PfGate12.AddUserSettings3();
        a.FirstName = "Frank";
        a.LastName = "Fischer";
        a.EmailAddress = username;
        a.UserGroup = "Sales";
        a.CountryCode = "44";
        a.Phone = "2079460958";
        a.Extension = "77";
        a.BackupCountryCode = "1";
        a.BackupPhone = "4255550177";
        a.BackupExtension = "";
        a.Mode = PfGate12.Mode3.smsText;
        a.PinMode = PfGate12.PinMode2.pin;
        a.SmsDirection = PfGate12.SmsDirection.oneWay;
        a.SmsMode = PfGate12.SmsMode.otpPlusPin;
        a.PhoneAppMode = PfGate12.PhoneAppMode.pin;
        a.Pin = pin;
        a.Enabled = true;
        a.PinChangeRequired = true;
        return a;
    }

    static string[] DemoSettings(bool ok, PfGate12.UserSettings3 s, PfGate12.Error err)
    {
        return Settings(ok, SettingNames, s == null ? null : new string[] {
            s.FirstName, s.LastName, s.EmailAddress, s.UserGroup, s.CountryCode, s.Phone,
            s.Extension, s.Mode.ToString(), B(s.Enabled), s.DisabledBehavior.ToString() },
            err != null, err == null ? 0 : err.Code, err == null ? null : err.Description);
    }

    static string[] NewSettings(bool ok, PfGate12.UserSettings3 s, PfGate12.Error err)
    {
        return Settings(ok, NewSettingNames, s == null ? null : new string[] {
            s.FirstName, s.LastName, s.EmailAddress, s.UserGroup, s.CountryCode, s.Phone,
            s.Extension, s.BackupCountryCode, s.BackupPhone, s.BackupExtension, s.Mode.ToString(),
            s.PinMode.ToString(), s.SmsDirection.ToString(), s.SmsMode.ToString(),
            s.PhoneAppMode.ToString(), B(s.Enabled), B(s.PinChangeRequired), s.Pin,
            s.OathTokenSecretKey, s.StaticToken, B(s.OathTokenExists), B(s.EnableStaticToken) },
            err != null, err == null ? 0 : err.Code, err == null ? null : err.Description);
    }

    // FindUsers_4 with only a username filter (every other filter "not specified", no tags).
    static void Find(PfGate12.PfWsSdk p, string b, string filter, bool caseSensitive, uint limit,
        string added)
    {
        PfGate12.UserRow[] rows;
        bool complete;
        PfGate12.Error err;
        bool ok = p.FindUsers_4(filter, caseSensitive, null, false, null, false, null, false, null,
            false, null, PfGate12.Mode3.voiceCall, false, PfGate12.PinMode2.standard, false,
            PfGate12.SmsDirection.twoWay, false, PfGate12.SmsMode.otp, false,
            PfGate12.PhoneAppMode.standard, false, PfGate12.TagMatchType.allUsers, null, true, false,
            limit, out rows, out complete, out err);
        string[] names = null;
        string[] addedRow = null;
        if (rows != null)
        {
            names = new string[rows.Length];
            for (int i = 0; i < rows.Length; i++)
            {
                PfGate12.UserRow r = rows[i];
                names[i] = r == null ? "<null row>" : r.Username;
                if (r != null && r.Username == added)
                {
                    addedRow = new string[] { r.Username, r.FirstName, r.LastName, r.EmailAddress,
                        r.UserGroup, r.CountryCode, r.Phone, r.Extension };
                }
            }
        }
        string label = filter + (caseSensitive ? " case-sensitive" : "") + " limit " + limit;
        Emit(b, "FindUsers_4", label, Found(ok, complete, names, addedRow, err != null,
            err == null ? 0 : err.Code, err == null ? null : err.Description));
    }

    static void Run12(string url)
    {
        const string b = "12";
        PfGate12.PfWsSdk p = new PfGate12.PfWsSdk();
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
            ok = p.PfAuthUser_4(user + "@contoso.com", PfGate12.AuthenticationType.pfsdk, Ip, App,
                true, out cr, out id, out err);
            Emit(b, "PfAuthUser_4", user, Auth(ok, cr, err, true, id));
        }

        // The number decides, not the user: bob's call to a number ending in 0 is approved, alice's
        // call to a number ending in 1 is not answered.
        string[][] phones = new string[][] {
            new string[] { "bob", "4255550100" },
            new string[] { "alice", "4255550111" },
        };
        foreach (string[] ph in phones)
        {
            ok = p.PfAuthUser_5(ph[0] + "@contoso.com", PfGate12.AuthenticationType.pfsdk, Ip, App,
                true, PfGate12.Mode3.voiceCall, "1", ph[1], "", out cr, out id, out err);
            Emit(b, "PfAuthUser_5", ph[1], Auth(ok, cr, err, true, id));
        }

        foreach (string user in new string[] { "alice@contoso.com", "nobody@contoso.com" })
        {
            PfGate12.UserSettings3 s;
            ok = p.GetUserSettings_3(user, out s, out err);
            Emit(b, "GetUserSettings_3", user, DemoSettings(ok, s, err));
        }

        // Overloads: same C# method name, different wire operations.
        // PfAuthUser(username, ip, requireUserMatch) -> wire PfAuthUser.
        ok = p.PfAuthUser("bob@contoso.com", Ip, true, out cr, out err);
        Emit(b, "PfAuthUser(3)", "bob", Auth(ok, cr, err, false, null));
        // PfAuthUser(username, type, ip, requireUserMatch) -> wire PfAuthUser2.
        ok = p.PfAuthUser("alice@contoso.com", PfGate12.AuthenticationType.pfsdk, Ip, true, out cr,
            out err);
        Emit(b, "PfAuthUser(4)", "alice", Auth(ok, cr, err, false, null));

        // One-time bypass: the user's next authentication passes without a call, once. Each bypass
        // granted here is consumed here, so the other binding's run starts without one.
        // OneTimeBypass(username, reason, modifyUsername) -> wire OneTimeBypass; for bob, whose
        // calls are never answered, so only the bypass can make his authentication pass.
        ok = p.OneTimeBypass("bob@contoso.com", "interop", Admin, out err);
        Emit(b, "OneTimeBypass(3)", "bob", Plain(ok, err));
        foreach (string label in new string[] { "bob bypassed", "bob after the bypass" })
        {
            ok = p.PfAuthUser_4("bob@contoso.com", PfGate12.AuthenticationType.pfsdk, Ip, App, true,
                out cr, out id, out err);
            Emit(b, "PfAuthUser_4", label, Auth(ok, cr, err, true, id));
        }
        // OneTimeBypass(username, reason, bypassSeconds, modifyUsername) -> wire OneTimeBypass2.
        ok = p.OneTimeBypass("alice@contoso.com", "interop", 300u, Admin, out err);
        Emit(b, "OneTimeBypass(4)", "alice", Plain(ok, err));
        foreach (string label in new string[] { "alice bypassed", "alice after the bypass" })
        {
            ok = p.PfAuthUser_4("alice@contoso.com", PfGate12.AuthenticationType.pfsdk, Ip, App, true,
                out cr, out id, out err);
            Emit(b, "PfAuthUser_4", label, Auth(ok, cr, err, true, id));
        }
        ok = p.OneTimeBypass("nobody@contoso.com", "interop", 300u, Admin, out err);
        Emit(b, "OneTimeBypass(4)", "nobody", Plain(ok, err));

        // AddUser_3: a new user; the same request again; the name in upper case (without a PIN:
        // hashing a PIN is slow in a debug build); a weak PIN.
        string frank = "frank" + b + "@contoso.com";
        ok = p.AddUser_3(frank, NewUser12(frank, "2580"), false, Admin, out err);
        Emit(b, "AddUser_3", frank, Plain(ok, err));
        ok = p.AddUser_3(frank, NewUser12(frank, "2580"), false, Admin, out err);
        Emit(b, "AddUser_3", frank + " again", Plain(ok, err));
        string upper = frank.ToUpperInvariant();
        ok = p.AddUser_3(upper, NewUser12(upper, null), false, Admin, out err);
        Emit(b, "AddUser_3", upper, Plain(ok, err));
        string grace = "grace" + b + "@contoso.com";
        ok = p.AddUser_3(grace, NewUser12(grace, "1111"), false, Admin, out err);
        Emit(b, "AddUser_3", grace + " PIN 1111", Plain(ok, err));

        // What was kept: frank with every field sent and no secret; grace not at all.
        foreach (string user in new string[] { frank, grace })
        {
            PfGate12.UserSettings3 s;
            ok = p.GetUserSettings_3(user, out s, out err);
            Emit(b, "GetUserSettings_3", user, NewSettings(ok, s, err));
        }
        Find(p, b, "*@contoso.com", false, 2u, frank);
        Find(p, b, "*@CONTOSO.COM", false, 0u, frank);
        Find(p, b, "*@CONTOSO.COM", true, 0u, frank);

        // An operation pfgate does not implement: false with Error 501 naming it, never a fault.
        PfGate12.UserSecurityQuestions q;
        ok = p.GetSecurityQuestions("alice@contoso.com", out q, out err);
        Emit(b, "GetSecurityQuestions", "alice", Plain(ok, err));
    }
}
