//! MFA Server semantics through the SOAP layer over TLS: every policy branch, the in-flight sharing
//! rule under concurrency, the deadline, one-time bypasses, OATH two-step, and the directory
//! operations with their error codes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pfgate::config::Settings;
use pfgate::engine::Engine;
use pfgate::providers::scripted::ScriptedProvider;
use pfgate::store::directory::Directory;

use crate::support::*;

const USERS: &str = r#"
default_phone_outcome = "hang_up"

[[phone_rules]]
suffix = "0"
outcome = "approve"

[[users]]
username = "alice@contoso.com"
country_code = "1"
phone = "4255550100"
outcome = "approve"

[[users]]
username = "slow@contoso.com"
country_code = "1"
phone = "4255550177"
outcome = "approve"
delay_ms = 700

[[users]]
username = "sleepy@contoso.com"
country_code = "1"
phone = "4255550178"
outcome = "approve"
delay_ms = 10000

[[users]]
username = "dis-fail@contoso.com"
phone = "4255550180"
enabled = false
disabled_behavior = "fail"

[[users]]
username = "dis-pass@contoso.com"
phone = "4255550181"
enabled = false
disabled_behavior = "succeed"

[[users]]
username = "carol@contoso.com"
phone = "4255550182"
blocked = true
blocked_reason = "fraud"

[[users]]
username = "oath@contoso.com"
phone = "4255550183"
mode = "oathToken"
oath_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
static_token = "s3cret-static"
pin = "2580"

[[users]]
username = "nophone@contoso.com"
phone = "12"

[[users]]
username = "retry@contoso.com"
country_code = "1"
phone = "4255550184"
sequence = ["no_answer", "busy", "approve"]

[[users]]
username = "inflight@contoso.com"
country_code = "1"
phone = "4255550187"
outcome = "approve"
delay_ms = 1500

[[users]]
username = "fraud@contoso.com"
country_code = "1"
phone = "4255550185"
outcome = "fraud_reported"

[[users]]
username = "broken@contoso.com"
country_code = "1"
phone = "4255550186"
outcome = "fail"
"#;

struct Fixture {
    server: TestServer,
    provider: Arc<ScriptedProvider>,
}

async fn fixture(auth_timeout: Duration) -> Fixture {
    let mut settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.engine.auth_timeout = auth_timeout;
    fixture_with(settings).await
}

/// The server with `settings`, the test users and the scripted provider.
async fn fixture_with(settings: Settings) -> Fixture {
    let directory = Directory::from_toml("engine test", USERS).unwrap();
    let store = pfgate::server::app::open_store(&settings).await.unwrap();
    pfgate::server::app::seed(store.as_ref(), &directory)
        .await
        .unwrap();
    let provider = Arc::new(ScriptedProvider::from_directory(&directory));
    let engine = Engine::new(store, provider.clone(), settings.engine.clone());
    let running = pfgate::server::start_with(settings, engine).await.unwrap();
    Fixture {
        server: TestServer::from_running(running),
        provider,
    }
}

/// Calls `op` with the given inner XML of its element; returns the response body (also used by
/// `security_engine`).
pub(crate) async fn call(c: &Client, op: &str, inner: &str) -> String {
    let r = c
        .soap11(
            Some(&action(op)),
            &env11(&format!(r#"<{op} xmlns="{NS}">{inner}</{op}>"#)),
        )
        .await;
    assert_eq!(r.status, 200, "{op}: {}", r.body);
    r.body
}

fn code_in(body: &str, parent: &str) -> i64 {
    let doc = parse_xml(body);
    doc.descendants()
        .find(|n| n.tag_name().name() == parent)
        .and_then(|n| n.children().find(|c| c.tag_name().name() == "Code"))
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no {parent}/Code in {body}"))
        .parse()
        .unwrap()
}

/// (result, callResult code, error code, request id)
fn auth4(body: &str) -> (String, i64, i64, Option<String>) {
    (
        text_of(body, "PfAuthUser_4Result").unwrap(),
        code_in(body, "callResult"),
        code_in(body, "error"),
        text_of(body, "authenticationRequestId"),
    )
}

fn pf4(user: &str, match_: bool) -> String {
    format!("<username>{user}</username><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType><applicationName>MIM</applicationName><requireUserMatch>{match_}</requireUserMatch>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_branches() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let cases: &[(&str, bool, &str, i64, i64)] = &[
        ("alice@contoso.com", true, "true", 2, 0),
        ("ghost@contoso.com", true, "false", 0, 10),
        ("ghost@contoso.com", false, "true", 7, 0),
        ("dis-fail@contoso.com", true, "false", 151, 12),
        ("dis-pass@contoso.com", true, "true", 7, 0),
        ("carol@contoso.com", true, "false", 14, 12),
        ("nophone@contoso.com", true, "false", 107, 12),
    ];
    for (user, m, result, call_code, error) in cases {
        let (r, cc, e, _) = auth4(&call(&c, "PfAuthUser_4", &pf4(user, *m)).await);
        assert_eq!(
            (r.as_str(), cc, e),
            (*result, *call_code, *error),
            "{user} match={m}"
        );
    }
    // Users that passed without a call, or were refused before one, cost no provider call; alice cost one.
    assert_eq!(f.provider.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_is_consumed_exactly_once_even_concurrently() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let body = call(
        &c,
        "OneTimeBypass2",
        "<username>slow@contoso.com</username><reason>lost phone</reason><bypassSeconds>60</bypassSeconds><modifyUsername>admin</modifyUsername>",
    )
    .await;
    assert_eq!(
        text_of(&body, "OneTimeBypass2Result").as_deref(),
        Some("true")
    );
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                auth4(&call(&c, "PfAuthUser_4", &pf4("slow@contoso.com", true)).await)
            })
        })
        .collect();
    let mut bypassed = 0;
    for t in tasks {
        let (r, cc, _, _) = t.await.unwrap();
        assert_eq!(r, "true");
        if cc == 7 {
            bypassed += 1;
        } else {
            assert_eq!(cc, 2);
        }
    }
    assert_eq!(bypassed, 1, "one bypass, one use");
    // Unknown user: Error 10.
    let body = call(
        &c,
        "OneTimeBypass",
        "<username>ghost</username><reason>x</reason>",
    )
    .await;
    assert_eq!(code_in(&body, "error"), 10);
    // An expired bypass does nothing.
    call(
        &c,
        "OneTimeBypass_2",
        "<username>alice@contoso.com</username><bypassSeconds>1</bypassSeconds>",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, cc, _, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("alice@contoso.com", true)).await);
    assert_eq!(cc, 2, "expired bypass must not be used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_authentications_for_one_user_and_number_share_one_call() {
    share_one_call(fixture(Duration::from_secs(5)).await).await;
}

/// The same on a SQLite file store owned by the process (issue #21 goal 3): the calls in flight are
/// shared in memory, as on the in-memory store, not claimed in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_authentications_share_one_call_on_an_owned_store_file() {
    let dir = crate::cli::temp_dir("engine-owned-file");
    let mut settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.engine.auth_timeout = Duration::from_secs(5);
    settings.store.path = Some(dir.join("pfgate.db"));
    let f = fixture_with(settings).await;
    assert!(dir.join("pfgate.db.lock").is_file(), "the file is owned");
    share_one_call(f).await;
}

/// Five concurrent authentications for one user and number: one provider call, one request id.
async fn share_one_call(f: Fixture) {
    let c = f.server.client();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                auth4(&call(&c, "PfAuthUser_4", &pf4("slow@contoso.com", true)).await)
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (r, cc, e, id) = t.await.unwrap();
        assert_eq!((r.as_str(), cc, e), ("true", 2, 0));
        ids.insert(id.unwrap());
    }
    assert_eq!(f.provider.calls(), 1, "five callers, one provider call");
    assert_eq!(ids.len(), 1, "all callers get the one call's request id");
    // After it ended, a new authentication places a new call.
    call(&c, "PfAuthUser_4", &pf4("slow@contoso.com", true)).await;
    assert_eq!(f.provider.calls(), 2);
}

/// Who asks, in the in-flight test: a signed-in principal, the application it names and the
/// address it says the person came from.
#[derive(Clone, Copy)]
struct Asker {
    principal: &'static str,
    password: &'static str,
    application: &'static str,
    ip: &'static str,
}

const MIM_PAM: Asker = Asker {
    principal: "CONTOSO\\svc-mimpam",
    password: "MimPam&Pa55",
    application: "MIM-PAM",
    ip: "10.0.0.5",
};
const EVIL_APP: Asker = Asker {
    principal: "CONTOSO\\evil",
    password: "Ev1l&Pa55",
    application: "EvilApp",
    ip: "203.0.113.9",
};

/// The engine fixture with callers that must sign in (Basic): both principals may authenticate.
async fn two_principals() -> Fixture {
    use pfgate::auth::basic::BasicAccount;
    use pfgate::auth::policy::{OperationGroup, Policy, PrincipalRule};
    let mut settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.engine.auth_timeout = Duration::from_secs(5);
    settings.allow_anonymous = false;
    settings.auth.allow_anonymous = false;
    let accounts = [MIM_PAM, EVIL_APP];
    settings.auth.basic = accounts
        .iter()
        .map(|a| BasicAccount {
            principal: a.principal.into(),
            password_hash: pfgate::store::secrets::hash_pin(a.password).unwrap(),
        })
        .collect();
    settings.auth.policy = Policy::new(
        accounts
            .iter()
            .map(|a| PrincipalRule {
                name: a.principal.into(),
                allow: vec![OperationGroup::Authentication],
            })
            .collect(),
    );
    fixture_with(settings).await
}

/// `PfAuthUser_4` for `user` as `who` asks it: (result, callResult, error, request id).
async fn auth4_as(c: &Client, who: Asker, user: &str) -> (String, i64, i64, Option<String>) {
    let inner = format!(
        "<username>{user}</username><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType>\
         <initiatingIpAddress>{}</initiatingIpAddress><applicationName>{}</applicationName>\
         <requireUserMatch>true</requireUserMatch>",
        who.ip, who.application
    );
    let authz = crate::callers::basic(who.principal, who.password);
    let r = crate::callers::post(c, "PfAuthUser_4", &inner, Some(&authz)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    auth4(&r.body)
}

/// Issue #17 item 3: a call in flight is joined only by a true retry — the same principal,
/// application, initiating address, user (any case) and number. Anyone else who asks for the same
/// user meanwhile gets a call of their own, never the first caller's approval or request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_true_retry_joins_a_call_in_flight() {
    let f = two_principals().await;
    let c = f.server.client();
    // (first asker, second asker, user as the second one spells it, may the second join?)
    let evil_mim = Asker {
        principal: EVIL_APP.principal,
        password: EVIL_APP.password,
        ..MIM_PAM
    };
    let cases = [
        (MIM_PAM, MIM_PAM, "inflight@contoso.com", true),
        (MIM_PAM, MIM_PAM, "INFLIGHT@contoso.com", true),
        (MIM_PAM, EVIL_APP, "INFLIGHT@contoso.com", false),
        (MIM_PAM, evil_mim, "inflight@contoso.com", false),
        (
            MIM_PAM,
            Asker {
                application: "EvilApp",
                ..MIM_PAM
            },
            "inflight@contoso.com",
            false,
        ),
        (
            MIM_PAM,
            Asker {
                ip: "203.0.113.9",
                ..MIM_PAM
            },
            "inflight@contoso.com",
            false,
        ),
    ];
    for (n, (first, second, spelled, joins)) in cases.into_iter().enumerate() {
        let calls_before = f.provider.calls();
        let c1 = c.clone();
        let leader =
            tokio::spawn(async move { auth4_as(&c1, first, "inflight@contoso.com").await });
        // The second asks while the first call rings (the scripted call takes 1.5 s).
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (r2, cc2, e2, id2) = auth4_as(&c, second, spelled).await;
        let (r1, cc1, e1, id1) = leader.await.unwrap();
        assert_eq!((r1.as_str(), cc1, e1), ("true", 2, 0), "case {n}: first");
        assert_eq!((r2.as_str(), cc2, e2), ("true", 2, 0), "case {n}: second");
        let placed = f.provider.calls() - calls_before;
        if joins {
            assert_eq!(placed, 1, "case {n}: a true retry places no second call");
            assert_eq!(
                id1, id2,
                "case {n}: a true retry gets the call's request id"
            );
        } else {
            assert_eq!(placed, 2, "case {n}: another asker gets a call of its own");
            assert_ne!(id1, id2, "case {n}: never the first caller's request id");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_answers_call_timed_out() {
    let f = fixture(Duration::from_secs(1)).await;
    let c = f.server.client();
    let started = Instant::now();
    let (r, cc, e, id) = auth4(&call(&c, "PfAuthUser_4", &pf4("sleepy@contoso.com", true)).await);
    let took = started.elapsed();
    assert_eq!((r.as_str(), cc, e), ("false", 11, 12));
    assert!(id.is_some());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pf_auth_user_5_calls_the_number_given() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let pf5 = |user: &str, m: bool, cc: &str, n: &str| {
        format!("<username>{user}</username><requireUserMatch>{m}</requireUserMatch><mode>voiceCall</mode><countryCode>{cc}</countryCode><phoneNumber>{n}</phoneNumber><extension />")
    };
    let r5 = |b: &str| {
        (
            text_of(b, "PfAuthUser_5Result").unwrap(),
            code_in(b, "callResult"),
        )
    };
    // The number decides (ending 0 approves), formatting does not matter, default country code applies.
    assert_eq!(
        r5(&call(
            &c,
            "PfAuthUser_5",
            &pf5("alice@contoso.com", true, "1", "(425) 555-0190")
        )
        .await),
        ("true".into(), 2)
    );
    assert_eq!(
        r5(&call(
            &c,
            "PfAuthUser_5",
            &pf5("alice@contoso.com", true, "", "425.555.0199")
        )
        .await),
        ("false".into(), 108)
    );
    // Unknown service account without user match: the call is still placed to the given number.
    let before = f.provider.calls();
    assert_eq!(
        r5(&call(
            &c,
            "PfAuthUser_5",
            &pf5("svc@contoso.com", false, "1", "4255550110")
        )
        .await),
        ("true".into(), 2)
    );
    assert_eq!(f.provider.calls(), before + 1);
    // A blocked user stays blocked whatever number is given.
    assert_eq!(
        r5(&call(
            &c,
            "PfAuthUser_5",
            &pf5("carol@contoso.com", true, "1", "4255550110")
        )
        .await),
        ("false".into(), 14)
    );
    // Garbage is not dialled.
    assert_eq!(
        r5(&call(
            &c,
            "PfAuthUser_5",
            &pf5("alice@contoso.com", true, "1", "12")
        )
        .await),
        ("false".into(), 107)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oath_two_step_static_token_and_pin() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let (r, cc, e, id) = auth4(&call(&c, "PfAuthUser_4", &pf4("oath@contoso.com", true)).await);
    assert_eq!(
        (r.as_str(), cc, e),
        ("false", 22, 0),
        "OATH users get a pending transaction"
    );
    let id = id.unwrap();
    let secret = b"12345678901234567890"; // the base32 secret in USERS
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = pfgate::engine::totp::hotp(secret, now / 30, 6);
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let v = |code: &str, id: &str| {
        format!("<username>oath@contoso.com</username><code>{code}</code><authenticationRequestId>{id}</authenticationRequestId><fallback>false</fallback>")
    };
    let body = call(&c, "ValidateOathCode", &v(&wrong, &id)).await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("false")
    );
    // The transaction was spent by the wrong attempt: start again.
    let (_, _, _, id) = auth4(&call(&c, "PfAuthUser_4", &pf4("oath@contoso.com", true)).await);
    let body = call(&c, "ValidateOathCode", &v(&code, &id.unwrap())).await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("true"),
        "{body}"
    );
    // The same code again (replay), with a fresh transaction: refused.
    let (_, _, _, id) = auth4(&call(&c, "PfAuthUser_4", &pf4("oath@contoso.com", true)).await);
    let body = call(&c, "ValidateOathCode", &v(&code, &id.unwrap())).await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("false")
    );
    // An id that was never issued.
    let body = call(
        &c,
        "ValidateOathCode",
        &v(&code, "00000000000000000000000000000000"),
    )
    .await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("false")
    );

    let st =
        |t: &str| format!("<username>oath@contoso.com</username><staticToken>{t}</staticToken>");
    let body = call(&c, "ValidateStaticToken", &st("s3cret-static")).await;
    assert_eq!(
        text_of(&body, "ValidateStaticTokenResult").as_deref(),
        Some("true")
    );
    let body = call(&c, "ValidateStaticToken", &st("s3cret-statiC")).await;
    assert_eq!(
        text_of(&body, "ValidateStaticTokenResult").as_deref(),
        Some("false")
    );

    let pin = |p: &str| format!("<username>oath@contoso.com</username><pin>{p}</pin>");
    let body = call(&c, "ValidatePin", &pin("2580")).await;
    assert_eq!(text_of(&body, "ValidatePinResult").as_deref(), Some("true"));
    let body = call(&c, "ValidatePin", &pin("2581")).await;
    assert_eq!(code_in(&body, "error"), 125);
    // Settings never carry the secrets back.
    let body = call(
        &c,
        "GetUserSettings_3",
        "<username>oath@contoso.com</username>",
    )
    .await;
    assert_eq!(text_of(&body, "OathTokenExists").as_deref(), Some("true"));
    assert!(
        !body.contains("GEZDGNBV") && !body.contains("s3cret") && !body.contains("2580"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_operations_and_their_error_codes() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let settings = |pin: &str| {
        format!("<FirstName>Eve</FirstName><LastName>O'Neil &amp; Co</LastName><EmailAddress>eve@contoso.com</EmailAddress><UserGroup>Ops</UserGroup><CountryCode>44</CountryCode><Phone>020 7946 0001</Phone><Extension>12</Extension><Mode>smsText</Mode><PinMode>standard</PinMode><SmsDirection>twoWay</SmsDirection><SmsMode>otp</SmsMode><PhoneAppMode>standard</PhoneAppMode><Pin>{pin}</Pin><Enabled>true</Enabled><PinChangeRequired>false</PinChangeRequired>")
    };
    let add = |user: &str, pin: &str| {
        format!("<username>{user}</username><addUserSettings>{}</addUserSettings><sendEmail>false</sendEmail><modifyUsername>admin</modifyUsername>", settings(pin))
    };
    let err = |b: &str| code_in(b, "error");
    assert_eq!(
        err(&call(&c, "AddUser_3", &add("eve@contoso.com", "2580")).await),
        0
    );
    assert_eq!(
        err(&call(&c, "AddUser_3", &add("EVE@contoso.com", "2580")).await),
        101
    );
    assert_eq!(
        err(&call(&c, "AddUser_3", &add("short@contoso.com", "12")).await),
        109
    );
    assert_eq!(
        err(&call(&c, "AddUser_3", &add("weak@contoso.com", "1111")).await),
        110
    );

    let body = call(
        &c,
        "GetUserSettings_3",
        "<username>Eve@Contoso.com</username>",
    )
    .await;
    assert_eq!(text_of(&body, "LastName").as_deref(), Some("O'Neil & Co"));
    assert_eq!(text_of(&body, "Phone").as_deref(), Some("020 7946 0001"));
    assert_eq!(text_of(&body, "Mode").as_deref(), Some("smsText"));
    let body = call(
        &c,
        "CanonicalizeUser",
        "<username>EVE@CONTOSO.COM</username>",
    )
    .await;
    assert_eq!(
        text_of(&body, "canonicalUsername").as_deref(),
        Some("eve@contoso.com")
    );

    let phone = "<username>eve@contoso.com</username><userPhone><CountryCode>1</CountryCode><Phone>4255550140</Phone><Extension /><BackupCountryCode>1</BackupCountryCode><BackupPhone>4255550141</BackupPhone><BackupExtension /></userPhone><sendEmail>false</sendEmail>";
    assert_eq!(err(&call(&c, "ChangePhone", phone).await), 0);
    let body = call(&c, "GetPhone", "<username>eve@contoso.com</username>").await;
    assert_eq!(text_of(&body, "BackupPhone").as_deref(), Some("4255550141"));
    assert_eq!(
        err(&call(
            &c,
            "ChangeMode_2",
            "<username>eve@contoso.com</username><mode>voiceCall</mode>"
        )
        .await),
        0
    );
    // Her new number ends in 0: the call is approved.
    let (r, cc, _, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("eve@contoso.com", true)).await);
    assert_eq!((r.as_str(), cc), ("true", 2));

    // FindUsers_4: wildcards, case flags, limit and completeness.
    let find = |filter: &str, case: bool, limit: u32| {
        format!("<usernameFilter>{filter}</usernameFilter><usernameCaseSensitive>{case}</usernameCaseSensitive><resultLimit>{limit}</resultLimit>")
    };
    let rows = |b: &str| {
        parse_xml(b)
            .descendants()
            .filter(|n| n.tag_name().name() == "UserRow")
            .count()
    };
    let body = call(&c, "FindUsers_4", &find("*@contoso.com", false, 0)).await;
    assert_eq!(rows(&body), 13, "the 12 users of USERS and eve");
    assert_eq!(text_of(&body, "resultsComplete").as_deref(), Some("true"));
    let body = call(&c, "FindUsers_4", &find("*@contoso.com", false, 3)).await;
    assert_eq!(rows(&body), 3);
    assert_eq!(text_of(&body, "resultsComplete").as_deref(), Some("false"));
    let body = call(&c, "FindUsers_4", &find("EVE*", true, 0)).await;
    assert_eq!(rows(&body), 0);
    let body = call(&c, "FindUsers_4", &find("EVE*", false, 0)).await;
    assert_eq!(rows(&body), 1);
    let body = call(&c, "FindUsers_4", "<phoneFilter>*0141</phoneFilter>").await;
    assert_eq!(rows(&body), 1, "backup phone matches");

    // Block / unblock.
    let blk = "<username>eve@contoso.com</username><reason>test</reason><modifyUsername>admin</modifyUsername>";
    assert_eq!(
        err(&call(&c, "UserIsBlocked", "<username>eve@contoso.com</username>").await),
        133
    );
    assert_eq!(err(&call(&c, "UnblockUser", blk).await), 136);
    assert_eq!(err(&call(&c, "BlockUser", blk).await), 0);
    let body = call(&c, "UserIsBlocked", "<username>eve@contoso.com</username>").await;
    assert_eq!(
        text_of(&body, "UserIsBlockedResult").as_deref(),
        Some("true")
    );
    let (_, cc, _, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("eve@contoso.com", true)).await);
    assert_eq!(cc, 14);
    assert_eq!(err(&call(&c, "UnblockUser", blk).await), 0);

    // Disable / enable.
    assert_eq!(
        err(&call(&c, "Disable", "<username>eve@contoso.com</username>").await),
        0
    );
    let (r, cc, _, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("eve@contoso.com", true)).await);
    assert_eq!((r.as_str(), cc), ("false", 151));
    assert_eq!(
        err(&call(&c, "Enable", "<username>eve@contoso.com</username>").await),
        0
    );

    // PIN change with the rules.
    let pin = |p: &str| {
        format!("<username>eve@contoso.com</username><userPin><Pin>{p}</Pin><PinChangeRequired>false</PinChangeRequired></userPin>")
    };
    assert_eq!(err(&call(&c, "ChangePin", &pin("9876")).await), 110);
    assert_eq!(err(&call(&c, "ChangePin", &pin("4831")).await), 0);
    let body = call(
        &c,
        "ValidatePin",
        "<username>eve@contoso.com</username><pin>4831</pin>",
    )
    .await;
    assert_eq!(text_of(&body, "ValidatePinResult").as_deref(), Some("true"));

    // Rename, then delete.
    let ren =
        |a: &str, b: &str| format!("<oldUsername>{a}</oldUsername><newUsername>{b}</newUsername>");
    assert_eq!(
        err(&call(
            &c,
            "ChangeUsername",
            &ren("eve@contoso.com", "alice@contoso.com")
        )
        .await),
        101
    );
    assert_eq!(
        err(&call(&c, "ChangeUsername", &ren("nobody", "x")).await),
        10
    );
    assert_eq!(
        err(&call(
            &c,
            "ChangeUsername",
            &ren("eve@contoso.com", "eve2@contoso.com")
        )
        .await),
        0
    );
    let body = call(&c, "UserExists", "<username>eve@contoso.com</username>").await;
    assert_eq!(code_in(&body, "error"), 10);
    assert_eq!(
        err(&call(&c, "DeleteUser", "<username>eve2@contoso.com</username>").await),
        0
    );
    assert_eq!(
        err(&call(&c, "DeleteUser", "<username>eve2@contoso.com</username>").await),
        10
    );
    for op in [
        "GetUserSettings",
        "GetUserSettings2",
        "GetUserSettings_2",
        "GetUserSettings_3",
        "GetPhone",
    ] {
        let body = call(&c, op, "<username>eve2@contoso.com</username>").await;
        assert_eq!(code_in(&body, "error"), 10, "{op}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_sms_passcode_is_validated_once() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let add = "<username>sam@contoso.com</username><addUserSettings><CountryCode>1</CountryCode><Phone>4255550150</Phone><Mode>smsText</Mode><PinMode>standard</PinMode><SmsDirection>oneWay</SmsDirection><SmsMode>otp</SmsMode><PhoneAppMode>standard</PhoneAppMode><Enabled>true</Enabled></addUserSettings>";
    assert_eq!(code_in(&call(&c, "AddUser_3", add).await, "error"), 0);
    let (r, cc, e, id) = auth4(&call(&c, "PfAuthUser_4", &pf4("sam@contoso.com", true)).await);
    assert_eq!((r.as_str(), cc, e), ("false", 20, 0), "a passcode was sent");
    assert!(id.is_some());
    let code = f
        .provider
        .last_code("+14255550150")
        .expect("the double's outbox has the code");
    assert_eq!(code.len(), 6);
    let v = |p: &str| format!("<username>sam@contoso.com</username><passcode>{p}</passcode>");
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    // A wrong guess spends the transaction: the right code afterwards is refused too.
    let body = call(&c, "ValidatePasscode", &v(&wrong)).await;
    assert_eq!(
        text_of(&body, "ValidatePasscodeResult").as_deref(),
        Some("false")
    );
    let body = call(&c, "ValidatePasscode", &v(&code)).await;
    assert_eq!(
        text_of(&body, "ValidatePasscodeResult").as_deref(),
        Some("false")
    );
    // A new one, answered right: accepted once.
    call(&c, "PfAuthUser_4", &pf4("sam@contoso.com", true)).await;
    let code = f.provider.last_code("+14255550150").unwrap();
    let body = call(&c, "ValidatePasscode", &v(&code)).await;
    assert_eq!(
        text_of(&body, "ValidatePasscodeResult").as_deref(),
        Some("true"),
        "{body}"
    );
    let body = call(&c, "ValidatePasscodeMaster", &v(&code)).await;
    assert_eq!(
        text_of(&body, "ValidatePasscodeMasterResult").as_deref(),
        Some("false")
    );
}

/// The rest of the operations the engine implements, each checked through its own effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_listed_operation() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let err = |b: &str| code_in(b, "error");
    let u = "<username>alice@contoso.com</username>";

    // Every PfAuthUser* / PfAuthUserMaster* generation reaches the same decision for alice.
    for op in [
        "PfAuthUser",
        "PfAuthUser2",
        "PfAuthUser3",
        "PfAuthUser_3",
        "PfAuthUser_4",
        "PfAuthUserMaster",
        "PfAuthUserMaster2",
        "PfAuthUserMaster_2",
        "PfAuthUserMaster_3",
    ] {
        let body = call(&c, op, &pf4("alice@contoso.com", true)).await;
        assert_eq!(
            text_of(&body, &format!("{op}Result")).as_deref(),
            Some("true"),
            "{op}"
        );
        assert_eq!(code_in(&body, "callResult"), 2, "{op}");
    }
    let body = call(&c, "PfAuthUserMaster_4", "<username>x</username><mode>voiceCall</mode><countryCode>1</countryCode><phoneNumber>4255550120</phoneNumber>").await;
    assert_eq!(
        text_of(&body, "PfAuthUserMaster_4Result").as_deref(),
        Some("true")
    );
    let body = call(&c, "TestMasterConnection_2", "").await;
    assert_eq!(
        text_of(&body, "TestMasterConnection_2Result").as_deref(),
        Some("true")
    );

    // Older AddUser generations, read back through every GetUserSettings generation.
    let v1 = "<username>v1@contoso.com</username><addUserSettings><FirstName>Vee</FirstName><CountryCode>1</CountryCode><Phone>4255550130</Phone><Mode>smsText</Mode><Enabled>true</Enabled></addUserSettings>";
    assert_eq!(err(&call(&c, "AddUser", v1).await), 0);
    let v2 = "<username>v2@contoso.com</username><addUserSettings><FirstName>Vi</FirstName><UserGroup>G2</UserGroup><Phone>4255550131</Phone><Mode>phoneApp</Mode><Enabled>true</Enabled></addUserSettings>";
    assert_eq!(err(&call(&c, "AddUser2", v2).await), 0);
    assert_eq!(
        err(&call(&c, "AddUser_2", &v2.replace("v2@", "v3@")).await),
        0
    );
    for (op, user, mode) in [
        ("GetUserSettings", "v1@contoso.com", "smsText"),
        ("GetUserSettings2", "v2@contoso.com", "phoneApp"),
        ("GetUserSettings_2", "v3@contoso.com", "phoneApp"),
        ("GetUserSettingsMaster", "v2@contoso.com", "phoneApp"),
        ("GetUserSettingsMaster_2", "v1@contoso.com", "smsText"),
    ] {
        let body = call(&c, op, &format!("<username>{user}</username>")).await;
        assert_eq!(text_of(&body, "Mode").as_deref(), Some(mode), "{op}");
    }
    // Older FindUsers generations.
    let rows = |b: &str| {
        parse_xml(b)
            .descendants()
            .filter(|n| n.tag_name().name() == "UserRow")
            .count()
    };
    for op in ["FindUsers", "FindUsers2", "FindUsers3", "FindUsers_3"] {
        let body = call(&c, op, "<usernameFilter>v*@contoso.com</usernameFilter>").await;
        assert_eq!(rows(&body), 3, "{op}");
    }
    let body = call(&c, "FindUsers3", "<userGroupFilter>g2</userGroupFilter>").await;
    assert_eq!(rows(&body), 2, "group filter");
    let body = call(
        &c,
        "FindUsers2",
        "<modeFilter>phoneApp</modeFilter><modeSpecified>true</modeSpecified>",
    )
    .await;
    assert_eq!(rows(&body), 2, "mode filter");

    // Changes, each visible afterwards.
    assert_eq!(
        err(&call(&c, "ChangePinMode", &format!("{u}<pinMode>pin</pinMode>")).await),
        0
    );
    assert_eq!(
        err(&call(
            &c,
            "ChangeSmsMode",
            &format!("{u}<smsDirection>oneWay</smsDirection><smsMode>otpPlusPin</smsMode>")
        )
        .await),
        0
    );
    assert_eq!(
        err(&call(
            &c,
            "ChangePhoneAppMode",
            &format!("{u}<phoneAppMode>pin</phoneAppMode>")
        )
        .await),
        0
    );
    assert_eq!(err(&call(&c, "ChangeLanguage", &format!("{u}<userLanguage><VoiceCallLanguage>de</VoiceCallLanguage><SmsTextLanguage>fr</SmsTextLanguage><PhoneAppLanguage>it</PhoneAppLanguage><OathTokenLanguage>es</OathTokenLanguage></userLanguage>")).await), 0);
    assert_eq!(err(&call(&c, "ChangeUserInformation", &format!("{u}<userInformation><FirstName>Al</FirstName><LastName>Ice</LastName><EmailAddress>al@x</EmailAddress><UserGroup>Fin</UserGroup></userInformation>")).await), 0);
    let body = call(&c, "GetUserSettings_3", u).await;
    for (field, value) in [
        ("PinMode", "pin"),
        ("SmsDirection", "oneWay"),
        ("SmsMode", "otpPlusPin"),
        ("PhoneAppMode", "pin"),
        ("VoiceCallLanguage", "de"),
        ("OathTokenLanguage", "es"),
        ("FirstName", "Al"),
        ("UserGroup", "Fin"),
    ] {
        assert_eq!(text_of(&body, field).as_deref(), Some(value), "{field}");
    }
    // Static token set, then validated; OATH token enrolled only with a matching code.
    assert_eq!(
        err(&call(
            &c,
            "ChangeStaticToken",
            &format!("{u}<staticToken>tok-77</staticToken>")
        )
        .await),
        0
    );
    let body = call(
        &c,
        "ValidateStaticToken",
        &format!("{u}<staticToken>tok-77</staticToken>"),
    )
    .await;
    assert_eq!(
        text_of(&body, "ValidateStaticTokenResult").as_deref(),
        Some("true")
    );
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = pfgate::engine::totp::hotp(b"12345678901234567890", now / 30, 6);
    let wrong = format!(
        "{:06}",
        (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    let enroll = |c: &str| {
        format!("{u}<secretKey>{secret}</secretKey><code>{c}</code><timeInterval>30</timeInterval>")
    };
    assert_eq!(err(&call(&c, "ChangeOathToken", &enroll(&wrong)).await), 12);
    assert_eq!(err(&call(&c, "ChangeOathToken", &enroll(&code)).await), 0);
    // Without a request id the code alone is checked — and it was already used to enroll? No: enrolment does not spend it.
    let body = call(
        &c,
        "ValidateOathCodeMaster",
        &format!("{u}<code>{code}</code>"),
    )
    .await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeMasterResult").as_deref(),
        Some("true"),
        "{body}"
    );
    // Disabled behaviour "succeed": a disabled user passes.
    assert_eq!(
        err(&call(
            &c,
            "DisabledBehavior",
            &format!("{u}<disabledBehavior>succeed</disabledBehavior>")
        )
        .await),
        0
    );
    assert_eq!(err(&call(&c, "Disable", u).await), 0);
    let (r, cc, _, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("alice@contoso.com", true)).await);
    assert_eq!((r.as_str(), cc), ("true", 7));

    // Read-only server data.
    let body = call(&c, "GetUserDevices", u).await;
    assert_eq!(
        text_of(&body, "GetUserDevicesResult").as_deref(),
        Some("true")
    );
    assert_eq!(
        parse_xml(&body)
            .descendants()
            .filter(|n| n.tag_name().name() == "UserDevice")
            .count(),
        0
    );
    for op in [
        "GetCustomerDefaults",
        "GetCustomerDefaults2",
        "GetCustomerDefaults_2",
        "GetCustomerDefaults_3",
    ] {
        let body = call(&c, op, "").await;
        assert_eq!(
            text_of(&body, "MinimumPinLength").as_deref(),
            Some("4"),
            "{op}"
        );
    }
    let body = call(&c, "GetFeatures", "").await;
    assert_eq!(text_of(&body, "WebServiceSdk").as_deref(), Some("true"));
    assert_eq!(
        text_of(&body, "Voiceprint").as_deref(),
        Some("false"),
        "only what pfgate does"
    );
}

/// The scripted provider's call sequences and outcomes, as the test double's scenarios use them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_sequences_and_outcomes() {
    let f = fixture(Duration::from_secs(5)).await;
    let c = f.server.client();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (r, cc, _, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("retry@contoso.com", true)).await);
        seen.push((r, cc));
    }
    let expected: Vec<(String, i64)> = vec![
        ("false".into(), 11), // no answer
        ("false".into(), 11), // busy
        ("true".into(), 2),   // approved
        ("true".into(), 2),   // the last outcome repeats
    ];
    assert_eq!(seen, expected);
    let (r, cc, e, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("fraud@contoso.com", true)).await);
    assert_eq!((r.as_str(), cc, e), ("false", 150, 12));
    let (r, cc, e, _) = auth4(&call(&c, "PfAuthUser_4", &pf4("broken@contoso.com", true)).await);
    assert_eq!((r.as_str(), cc, e), ("false", 117, 12));
}

/// The SDK has no field for the external id (the IdP's `oid` the OIDC step-up provider matches):
/// every SDK change to a user, a rename included, keeps the stored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_changes_keep_the_stored_external_id() {
    const OID: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    let settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    let directory = Directory::from_toml(
        "external id test",
        "[[users]]\nusername = \"kim@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550190\"\nexternal_id = \"6F9619FF-8B86-D011-B42D-00C04FC964FF\"\n",
    )
    .unwrap();
    let store = pfgate::server::app::open_store(&settings).await.unwrap();
    pfgate::server::app::seed(store.as_ref(), &directory)
        .await
        .unwrap();
    let stored = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .get_user(name)
                .await
                .unwrap()
                .and_then(|u| u.external_id)
        }
    };
    assert_eq!(stored("kim@contoso.com").await.as_deref(), Some(OID));
    let provider = Arc::new(ScriptedProvider::from_directory(&directory));
    let engine = Engine::new(store.clone(), provider, settings.engine.clone());
    let running = pfgate::server::start_with(settings, engine).await.unwrap();
    let server = TestServer::from_running(running);
    let c = server.client();
    let u = "<username>kim@contoso.com</username>";
    let err = |b: &str| code_in(b, "error");
    for (op, inner) in [
        ("ChangeUserInformation", format!("{u}<userInformation><FirstName>Kim</FirstName><LastName>Lee</LastName><EmailAddress>kim@contoso.com</EmailAddress><UserGroup>Ops</UserGroup></userInformation>")),
        ("ChangePhone", format!("{u}<userPhone><CountryCode>1</CountryCode><Phone>4255550191</Phone></userPhone>")),
        ("ChangeMode", format!("{u}<mode>smsText</mode>")),
        ("ChangeLanguage", format!("{u}<userLanguage><VoiceCallLanguage>de</VoiceCallLanguage><SmsTextLanguage>de</SmsTextLanguage><PhoneAppLanguage>de</PhoneAppLanguage><OathTokenLanguage>de</OathTokenLanguage></userLanguage>")),
        ("ChangeStaticToken", format!("{u}<staticToken>tok-kim</staticToken>")),
    ] {
        assert_eq!(err(&call(&c, op, &inner).await), 0, "{op}");
        assert_eq!(stored("kim@contoso.com").await.as_deref(), Some(OID), "after {op}");
    }
    let body = call(&c, "GetUserSettings_3", u).await;
    assert_eq!(text_of(&body, "FirstName").as_deref(), Some("Kim"));
    assert_eq!(
        err(&call(
            &c,
            "ChangeUsername",
            "<oldUsername>kim@contoso.com</oldUsername><newUsername>kim.lee@contoso.com</newUsername>"
        )
        .await),
        0
    );
    assert_eq!(stored("kim.lee@contoso.com").await.as_deref(), Some(OID));
}
