//! `pfgate users import --from-sdk`, the real binary, against a pfgate seeded with a few hundred
//! users playing the old MFA Server (it speaks the same SDK) over TLS with NTLM: backup phones,
//! extensions, blocked and disabled users, names that need escaping, PIN and OATH users. The
//! result is checked with `pfgate users export` of both stores (the CSV export, not the import's
//! mapping). Then: a second run changes nothing, a dry run writes nothing, an interrupted run
//! resumes from its checkpoint, and an old server that answers faults for the newest operations
//! is read through the older ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pfgate::testing::{Fault, FaultSide, MockServer, Rule};

use crate::call::{pfgate, text};
use crate::cli::temp_dir;
use crate::support::*;

const MIGRATOR_PW: &str = "Migr8-the-Directory!";
const PIN_USERS: usize = 70; // i % 4 == 3 below
const BLOCK_REASON: &str = "blocked on the old MFA Server";

fn seed_csv() -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "username",
        "first_name",
        "last_name",
        "email",
        "user_group",
        "country_code",
        "phone",
        "extension",
        "backup_country_code",
        "backup_phone",
        "backup_extension",
        "mode",
        "pin_mode",
        "sms_direction",
        "sms_mode",
        "enabled",
        "disabled_behavior",
        "pin",
        "oath_secret",
        "blocked",
        "block_reason",
    ])
    .unwrap();
    for i in 0..280usize {
        let mode = ["voiceCall", "smsText", "phoneApp", "voiceCall"][i % 4];
        let row: Vec<String> = vec![
            format!("user{i:03}@contoso.com"),
            format!("First{i}"),
            format!("Last{i}"),
            format!("user{i:03}@contoso.com"),
            ["Finance", "Engineering", "Sales"][i % 3].into(),
            "1".into(),
            format!("42555{i:05}"),
            if i % 7 == 0 {
                format!("{}", 100 + i)
            } else {
                String::new()
            },
            if i % 5 == 0 {
                "44".into()
            } else {
                String::new()
            },
            if i % 5 == 0 {
                format!("20795{i:05}")
            } else {
                String::new()
            },
            if i % 10 == 0 {
                format!("9{i}")
            } else {
                String::new()
            },
            mode.into(),
            if i % 4 == 3 { "pin" } else { "standard" }.into(),
            if i % 6 == 1 { "oneWay" } else { "twoWay" }.into(),
            if i % 6 == 1 { "otpPlusPin" } else { "otp" }.into(),
            if i % 9 == 0 { "false" } else { "true" }.into(),
            if i % 18 == 0 { "succeed" } else { "fail" }.into(),
            if i % 4 == 3 {
                "8264".into()
            } else {
                String::new()
            },
            String::new(),
            if i % 11 == 0 { "true" } else { "false" }.into(),
            if i % 11 == 0 {
                "lost phone".into()
            } else {
                String::new()
            },
        ];
        w.write_record(&row).unwrap();
    }
    let specials: &[(&str, &str, &str)] = &[
        (
            "o'brien&co<x>@contoso.com",
            "Seán \"Jack\"",
            "<O'Brien & Co>",
        ),
        ("CONTOSO\\jdoe", "John", "Doe"),
        ("zoë.åberg@contoso.com", "Zoë", "Åberg"),
        ("_svc-mfa@contoso.com", "Service", "Account"),
        ("~tilde@contoso.com", "Tilde", "]]>"),
        ("Mixed.Case@Contoso.com", "Mixed", "Case"),
        ("name with space@contoso.com", "Name", "Space"),
        ("comma, user", "Comma", "User"),
    ];
    for (u, f, l) in specials {
        let mut row = vec![
            u.to_string(),
            f.to_string(),
            l.to_string(),
            String::new(),
            "Special&Group".into(),
            "1".into(),
            "4255550999".into(),
            "12".into(),
        ];
        row.extend(vec![String::new(); 3]);
        row.extend(
            [
                "voiceCall",
                "standard",
                "twoWay",
                "otp",
                "true",
                "fail",
                "",
                "",
                "false",
                "",
            ]
            .map(String::from),
        );
        w.write_record(&row).unwrap();
    }
    let mut oath = vec![
        "oath.user@contoso.com".to_string(),
        "Oath".into(),
        "User".into(),
    ];
    oath.extend(vec![String::new(); 8]);
    oath.extend(
        [
            "oathToken",
            "standard",
            "twoWay",
            "otp",
            "true",
            "fail",
            "",
            "JBSWY3DPEHPK3PXP",
            "false",
            "",
        ]
        .map(String::from),
    );
    w.write_record(&oath).unwrap();
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

const SEEDED: usize = 280 + 8 + 1;

fn write_tls(dir: &Path) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("secrets.key"), [7u8; 32]).unwrap();
}

/// A configuration with a store file `db` (and NTLM for the migration account when `ntlm`).
fn config(dir: &Path, name: &str, db: &str, ntlm: bool) -> PathBuf {
    let mut t = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         [store]\npath = \"{db}\"\nsecrets_key_file = \"secrets.key\"\n\
         [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n"
    );
    if !ntlm {
        // The destination is never served; the file only names its store.
        t.push_str("[auth]\nallow_anonymous = true\n");
    } else {
        std::fs::write(dir.join("migrator.pw"), format!("{MIGRATOR_PW}\n")).unwrap();
        t.push_str(
            "[auth.ntlm]\nnetbios_domain = \"CONTOSO\"\ndns_domain = \"contoso.com\"\n\
             dns_computer = \"localhost\"\n[[auth.ntlm.accounts]]\nprincipal = \"CONTOSO\\\\migrator\"\n\
             password_file = \"migrator.pw\"\n[[auth.principals]]\nname = \"CONTOSO\\\\migrator\"\n\
             allow = [\"directory_read\"]\n",
        );
    }
    let p = dir.join(name);
    std::fs::write(&p, t).unwrap();
    p
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// The old server: a pfgate on a store seeded from the CSV (by the CSV import, a different path).
async fn old_server(dir: &Path) -> (TestServer, PathBuf) {
    write_tls(dir);
    let cfg = config(dir, "old.toml", "old.db", true);
    let seed = dir.join("seed.csv");
    std::fs::write(&seed, seed_csv()).unwrap();
    let out = pfgate(
        vec![
            "users".into(),
            "import".into(),
            s(&seed),
            "--config".into(),
            s(&cfg),
        ],
        vec![],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let settings = pfgate::config::load(&cfg).unwrap();
    (TestServer::start(settings).await, cfg)
}

/// `users export` of a store: username (lower case) → columns.
async fn export(cfg: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let out = pfgate(
        vec!["users".into(), "export".into(), "--config".into(), s(cfg)],
        vec![],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let mut r = csv::Reader::from_reader(out.stdout.as_slice());
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let row: BTreeMap<String, String> = headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            (row["username"].to_lowercase(), row)
        })
        .collect()
}

fn import_args(url: &str, fp: &str, cfg: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "users",
        "import",
        "--from-sdk",
        url,
        "--config",
        cfg.to_str().unwrap(),
        "--auth",
        "ntlm",
        "--user",
        "CONTOSO\\migrator",
        "--pin-sha256",
        fp,
        "--page-size",
        "40",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Runs an NTLM import that must succeed; its standard output and error.
async fn import_ok(args: Vec<String>) -> (String, String) {
    let out = pfgate(args, pw()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    (stdout, stderr)
}

/// An import without HTTP authentication (the old servers of the fallback tests admit anyone).
async fn import_anonymous(
    url: &str,
    cfg: &Path,
    problems: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut a: Vec<String> = vec![
        "users".into(),
        "import".into(),
        "--from-sdk".into(),
        url.into(),
        "--config".into(),
        s(cfg),
        "--problems".into(),
        s(problems),
    ];
    a.extend(extra.iter().map(|e| e.to_string()));
    pfgate(a, vec![]).await
}

fn pw() -> Vec<(String, String)> {
    vec![("PFGATE_PASSWORD".into(), MIGRATOR_PW.into())]
}

/// The summary line `name  value`.
fn summary_value(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with("  "))
                .map(|rest| rest.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no '{name}' in:\n{stdout}"))
}

fn assert_same_directory(
    old: &BTreeMap<String, BTreeMap<String, String>>,
    new: &BTreeMap<String, BTreeMap<String, String>>,
) {
    assert_eq!(old.len(), SEEDED);
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        new.keys().collect::<Vec<_>>()
    );
    for (k, o) in old {
        let n = &new[k];
        for (col, v) in o {
            if col == "block_reason" {
                let expect = if o["blocked"] == "true" {
                    BLOCK_REASON
                } else {
                    ""
                };
                assert_eq!(n[col], expect, "{k}: {col}");
            } else {
                assert_eq!(&n[col], v, "{k}: {col}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_a_seeded_directory_and_a_second_run_changes_nothing() {
    let dir = temp_dir("import-full");
    let (old, old_cfg) = old_server(&dir).await;
    let url = old.url();
    let fp = old.fingerprint();
    let new_cfg = config(&dir, "new.toml", "new.db", false);
    let problems = dir.join("problems.csv");

    // Dry run first: nothing written, every user listed as an addition.
    let (stdout, _) = import_ok(import_args(
        &url,
        &fp,
        &new_cfg,
        &["--dry-run", "--problems", &s(&problems)],
    ))
    .await;
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("would add "))
            .count(),
        SEEDED
    );
    assert!(
        stdout.contains("would add o'brien&co<x>@contoso.com"),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was written"));
    assert!(export(&new_cfg).await.is_empty());

    let (stdout, stderr) = import_ok(import_args(
        &url,
        &fp,
        &new_cfg,
        &["--problems", &s(&problems)],
    ))
    .await;
    assert_eq!(summary_value(&stdout, "users listed"), SEEDED.to_string());
    assert_eq!(summary_value(&stdout, "imported"), SEEDED.to_string());
    assert_eq!(summary_value(&stdout, "failed"), "0");
    assert_eq!(
        summary_value(&stdout, "PINs not migrated"),
        PIN_USERS.to_string()
    );
    assert_eq!(summary_value(&stdout, "OATH secrets not migrated"), "1");
    assert!(
        summary_value(&stdout, "listed with").starts_with("FindUsers_4"),
        "{stdout}"
    );
    // Page size 40 for 289 users: the listing had to be sliced.
    assert!(!summary_value(&stdout, "listed with").contains(" 0 slices split"));
    assert!(stderr.contains("progress: "), "{stderr}");
    // No phone number in anything printed or written.
    let problems_text = std::fs::read_to_string(&problems).unwrap();
    for t in [&stdout, &stderr, &problems_text] {
        assert!(!t.contains("42555") && !t.contains("20795"), "{t}");
    }
    let mut r = csv::Reader::from_reader(problems_text.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let pins = rows
        .iter()
        .filter(|r| &r[1] == "not_migrated" && &r[2] == "pin")
        .count();
    assert_eq!(pins, PIN_USERS);
    assert!(rows
        .iter()
        .any(|r| &r[0] == "oath.user@contoso.com" && &r[2] == "oath_secret"));

    let old_dir = export(&old_cfg).await;
    let first = export(&new_cfg).await;
    assert_same_directory(&old_dir, &first);

    // Run again: nothing changes.
    let (stdout, _) = import_ok(import_args(
        &url,
        &fp,
        &new_cfg,
        &["--problems", &s(&problems)],
    ))
    .await;
    assert_eq!(summary_value(&stdout, "imported"), "0");
    assert_eq!(summary_value(&stdout, "updated"), "0");
    assert_eq!(
        summary_value(&stdout, "skipped (present)"),
        SEEDED.to_string()
    );
    let problems_text = std::fs::read_to_string(&problems).unwrap();
    assert!(!problems_text.contains("differs"), "{problems_text}");
    assert_eq!(export(&new_cfg).await, first);

    // Changed in pfgate meanwhile (by the CSV import): kept and reported without --update,
    // replaced by the old server's values with it.
    let changed = dir.join("changed.csv");
    std::fs::write(
        &changed,
        "username,first_name,country_code,phone,mode,enabled,external_id\nuser001@contoso.com,Changed,1,4255559999,voiceCall,false,3F2504E0-4F89-41D3-9A0C-0305E82C3301\n",
    )
    .unwrap();
    let out = pfgate(
        vec![
            "users".into(),
            "import".into(),
            s(&changed),
            "--config".into(),
            s(&new_cfg),
            "--update".into(),
        ],
        vec![],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = import_ok(import_args(
        &url,
        &fp,
        &new_cfg,
        &["--problems", &s(&problems)],
    ))
    .await;
    assert_eq!(summary_value(&stdout, "updated"), "0");
    let problems_text = std::fs::read_to_string(&problems).unwrap();
    let differs: Vec<&str> = problems_text
        .lines()
        .filter(|l| l.contains(",differs,"))
        .collect();
    assert_eq!(differs.len(), 1, "{problems_text}");
    assert!(
        differs[0].starts_with("user001@contoso.com,"),
        "{differs:?}"
    );
    for f in ["first_name", "phone", "mode", "enabled"] {
        assert!(differs[0].contains(f), "{differs:?}");
    }
    assert_eq!(
        export(&new_cfg).await["user001@contoso.com"]["phone"],
        "4255559999"
    );
    let (stdout, _) = import_ok(import_args(
        &url,
        &fp,
        &new_cfg,
        &["--update", "--problems", &s(&problems)],
    ))
    .await;
    assert_eq!(summary_value(&stdout, "updated"), "1");
    // The old server's values, except the external id (the IdP's oid), which MFA Server never
    // had: the one pfgate holds stays.
    let mut expected = first.clone();
    if let Some(u) = expected.get_mut("user001@contoso.com") {
        u.insert(
            "external_id".into(),
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301".into(),
        );
    }
    assert_eq!(export(&new_cfg).await, expected);

    // A wrong password: refused, exit 4, nothing written.
    let other = config(&dir, "other.toml", "other.db", false);
    let out = pfgate(
        import_args(&url, &fp, &other, &[]),
        vec![("PFGATE_PASSWORD".into(), "wrong".into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));
    assert!(export(&other).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_resumes_from_its_checkpoint() {
    let dir = temp_dir("import-resume");
    let (old, old_cfg) = old_server(&dir).await;
    let url = old.url();
    let fp = old.fingerprint();
    let new_cfg = config(&dir, "new.toml", "new.db", false);
    let cp = dir.join("checkpoint.json");
    let problems = dir.join("problems.csv");
    let extra = |more: &[&str]| {
        let mut v = vec!["--since-checkpoint", cp.to_str().unwrap()];
        v.extend(["--problems", problems.to_str().unwrap()]);
        v.extend(more);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let e1 = extra(&["--max-users", "100"]);
    let (stdout, _) = import_ok(import_args(
        &url,
        &fp,
        &new_cfg,
        &e1.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await;
    assert!(stdout.contains("stopped after --max-users"), "{stdout}");
    assert_eq!(summary_value(&stdout, "imported"), "100");
    assert_eq!(export(&new_cfg).await.len(), 100);
    assert!(cp.exists());

    let e2 = extra(&[]);
    let (stdout, _) = import_ok(import_args(
        &url,
        &fp,
        &new_cfg,
        &e2.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await;
    assert_eq!(summary_value(&stdout, "done before (checkpoint)"), "100");
    assert_eq!(summary_value(&stdout, "read"), (SEEDED - 100).to_string());
    assert_eq!(
        summary_value(&stdout, "imported"),
        (SEEDED - 100).to_string()
    );
    assert_same_directory(&export(&old_cfg).await, &export(&new_cfg).await);

    // The checkpoint names its source: another server's is refused.
    let other_url = url.replace("localhost", "127.0.0.1");
    let out = pfgate(
        import_args(
            &other_url,
            &fp,
            &new_cfg,
            &e2.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        pw(),
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("belongs to an import from"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_server_without_the_newest_operations_is_read_through_the_older_ones() {
    let fault = |op: &str| {
        Rule::new().operation(op).fault(Fault::SoapFault {
            code: FaultSide::Client,
            message: format!(
                "Server did not recognize the value of HTTP Header SOAPAction: \
                 http://www.phonefactor.com/PfWsSdk/{op}."
            ),
        })
    };
    let mock = MockServer::builder()
        .scenario_toml(
            r#"
[[users]]
username = "alice@contoso.com"
first_name = "Alice"
country_code = "1"
phone = "4255550100"
extension = "77"
mode = "smsText"

[[users]]
username = "bob@contoso.com"
country_code = "1"
phone = "4255550101"
enabled = false
blocked = true
blocked_reason = "stolen"
"#,
        )
        .rule(fault("FindUsers_4"))
        .rule(fault("FindUsers_3"))
        .rule(fault("GetUserSettings_3"))
        .start()
        .await;
    let dir = temp_dir("import-fallback");
    write_tls(&dir);
    let new_cfg = config(&dir, "new.toml", "new.db", false);
    let problems = dir.join("problems.csv");
    let out = import_anonymous(
        &mock.url(),
        &new_cfg,
        &problems,
        &["--pin-sha256", &mock.fingerprint().unwrap()],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        summary_value(&stdout, "listed with").starts_with("FindUsers3 "),
        "{stdout}"
    );
    assert!(
        summary_value(&stdout, "read with").starts_with("GetUserSettings_2,"),
        "{stdout}"
    );
    // Each unknown operation was asked once, not once per user.
    assert_eq!(mock.received("FindUsers_4"), 1);
    assert_eq!(mock.received("GetUserSettings_3"), 1);
    let users = export(&new_cfg).await;
    assert_eq!(
        users.keys().collect::<Vec<_>>(),
        vec!["alice@contoso.com", "bob@contoso.com"]
    );
    let alice = &users["alice@contoso.com"];
    assert_eq!(alice["phone"], "4255550100");
    assert_eq!(alice["extension"], "77");
    assert_eq!(alice["mode"], "smsText");
    let bob = &users["bob@contoso.com"];
    assert_eq!(bob["enabled"], "false");
    assert_eq!(bob["blocked"], "true");
}

/// An old server of an earlier generation, as a plain local HTTP server: `false` with an Error for
/// `FindUsers_4` and `GetUserSettings_3`, answers for the older operations. Counts requests per
/// operation.
async fn false_answering_old_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let counts = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let op = req
                                .headers()
                                .get("soapaction")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .trim_matches('"')
                                .rsplit('/')
                                .next()
                                .unwrap_or("")
                                .to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body = String::from_utf8_lossy(&body).to_string();
                            *seen.lock().unwrap().entry(op.clone()).or_default() += 1;
                            let carol = body.contains("<username>carol@contoso.com</username>");
                            let ok = "<error><Code>0</Code><Description /></error>";
                            let inner = match op.as_str() {
                            "FindUsers_4" | "GetUserSettings_3" => format!(
                                "<{op}Result>false</{op}Result><error><Code>1</Code>\
                                 <Description>Not supported in this version</Description></error>"
                            ),
                            "FindUsers_3" => format!(
                                "<{op}Result>true</{op}Result><userRows>\
                                 <UserRow><Username>carol@contoso.com</Username></UserRow>\
                                 <UserRow><Username>dave@contoso.com</Username></UserRow>\
                                 </userRows><resultsComplete>true</resultsComplete>{ok}"
                            ),
                            "GetUserSettings_2" => format!(
                                "<{op}Result>true</{op}Result><userSettings>\
                                 <FirstName>{}</FirstName><UserGroup>Ops</UserGroup>\
                                 <CountryCode>1</CountryCode><Phone>0000000000</Phone>\
                                 <Mode>phoneApp</Mode><PinMode>standard</PinMode>\
                                 <SmsDirection>oneWay</SmsDirection><SmsMode>otp</SmsMode>\
                                 <PhoneAppMode>pin</PhoneAppMode><Enabled>{}</Enabled>\
                                 <DisabledBehavior>succeed</DisabledBehavior>\
                                 </userSettings>{ok}",
                                if carol { "Carol" } else { "Dave" },
                                if carol { "true" } else { "false" }
                            ),
                            "GetPhone" => format!(
                                "<{op}Result>true</{op}Result><userPhone><CountryCode>+1</CountryCode>\
                                 <Phone>4255550142</Phone><Extension>5</Extension>\
                                 <BackupCountryCode>49</BackupCountryCode><BackupPhone>301234567</BackupPhone>\
                                 <BackupExtension /></userPhone>{ok}"
                            ),
                            "UserIsBlocked" if carol => format!("<{op}Result>true</{op}Result>{ok}"),
                            "UserIsBlocked" => format!(
                                "<{op}Result>false</{op}Result><error><Code>133</Code>\
                                 <Description>USER_NOT_CURRENTLY_BLOCKED</Description></error>"
                            ),
                            _ => String::new(),
                        };
                            let envelope = format!(
                            "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope \
                             xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
                             <{op}Response xmlns=\"{NS}\">{inner}</{op}Response></soap:Body></soap:Envelope>"
                        );
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "text/xml; charset=utf-8")
                                    .body(Full::new(bytes::Bytes::from(envelope)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_server_answering_false_for_the_newest_operations_is_read_through_the_older_ones() {
    let (addr, counts) = false_answering_old_server().await;
    let dir = temp_dir("import-false");
    write_tls(&dir);
    let new_cfg = config(&dir, "new.toml", "new.db", false);
    let problems = dir.join("problems.csv");
    let out = import_anonymous(
        &format!("http://{addr}{SDK_PATH}"),
        &new_cfg,
        &problems,
        &[],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        summary_value(&stdout, "listed with").starts_with("FindUsers_3 "),
        "{stdout}"
    );
    assert!(
        summary_value(&stdout, "read with").starts_with("GetUserSettings_2,"),
        "{stdout}"
    );
    let counts = counts.lock().unwrap().clone();
    // A listing generation that fails is not asked again; a settings generation that answers
    // false is retried for each user (the error could have been about that user).
    assert_eq!(counts.get("FindUsers_4"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("GetUserSettings_3"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("GetUserSettings_2"), Some(&2), "{counts:?}");
    let users = export(&new_cfg).await;
    assert_eq!(
        users.keys().collect::<Vec<_>>(),
        vec!["carol@contoso.com", "dave@contoso.com"]
    );
    let carol = &users["carol@contoso.com"];
    // GetPhone's numbers win over the settings' copy; the `+` of a country code is dropped.
    for (col, want) in [
        ("first_name", "Carol"),
        ("user_group", "Ops"),
        ("country_code", "1"),
        ("phone", "4255550142"),
        ("extension", "5"),
        ("backup_country_code", "49"),
        ("backup_phone", "301234567"),
        ("mode", "phoneApp"),
        ("phone_app_mode", "pin"),
        ("sms_direction", "oneWay"),
        ("disabled_behavior", "succeed"),
        ("enabled", "true"),
        ("blocked", "true"),
        ("block_reason", BLOCK_REASON),
    ] {
        assert_eq!(carol[col], want, "carol {col}");
    }
    let dave = &users["dave@contoso.com"];
    assert_eq!(dave["enabled"], "false");
    assert_eq!(dave["blocked"], "false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_from_its_checkpoint_without_duplicates_or_gaps() {
    let dir = temp_dir("import-kill");
    let (old, old_cfg) = old_server(&dir).await;
    let new_cfg = config(&dir, "new.toml", "new.db", false);
    let cp = dir.join("checkpoint.json");
    let problems = dir.join("problems.csv");
    let args = import_args(
        &old.url(),
        &old.fingerprint(),
        &new_cfg,
        &["--since-checkpoint", &s(&cp), "--problems", &s(&problems)],
    );
    // Start the import, wait (bounded) until its checkpoint names a user, then SIGKILL it: a
    // crash at an arbitrary point, possibly between storing a user and recording it.
    let first = args.clone();
    let cp_watch = cp.clone();
    let killed_at = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pfgate"))
            .args(&first)
            .env("PFGATE_PASSWORD", MIGRATOR_PW)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + STEP * 6;
        let mut seen = None;
        while std::time::Instant::now() < deadline {
            if let Ok(t) = std::fs::read_to_string(&cp_watch) {
                seen = Some(t);
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        seen
    })
    .await
    .unwrap();
    let killed_at = killed_at.expect("the import recorded progress before it was killed");
    assert!(killed_at.contains("last_done"), "{killed_at}");

    let out = pfgate(args, pw()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let done_before: usize = summary_value(&stdout, "done before (checkpoint)")
        .parse()
        .unwrap();
    let imported: usize = summary_value(&stdout, "imported").parse().unwrap();
    let skipped: usize = summary_value(&stdout, "skipped (present)").parse().unwrap();
    assert!(done_before > 0, "{stdout}");
    // At most the one user stored but not yet recorded is found present again.
    assert!(skipped <= 1, "{stdout}");
    assert_eq!(done_before + imported + skipped, SEEDED, "{stdout}");
    assert_same_directory(&export(&old_cfg).await, &export(&new_cfg).await);
}
