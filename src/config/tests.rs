//! The configuration's checks, from TOML text to settings or `key: reason` problems.

use std::path::Path;
use std::time::Duration;

use super::*;

/// The keys of the problems a `[store]` section (and a minimal rest) produces.
/// A provider named explicitly, so a configuration under test has one.
const SCRIPTED: &str =
    "[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n";

fn store_problems(store: &str) -> Result<Settings, Vec<String>> {
    let text = format!("[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n{SCRIPTED}[store]\n{store}");
    let file: FileConfig = toml::from_str(&text).unwrap();
    validate(Path::new("/etc/pfgate/pfgate.toml"), file)
        .map_err(|e| e.0.into_iter().map(|p| p.key).collect())
}

#[test]
fn transport_limits_and_audit_retention_are_read_and_range_checked() {
    let parse = |text: &str| {
        let text = format!(
            "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n{text}"
        );
        let file: FileConfig = toml::from_str(&text).unwrap();
        validate(Path::new("/etc/pfgate/pfgate.toml"), file)
            .map_err(|e| e.0.into_iter().map(|p| p.key).collect::<Vec<_>>())
    };
    let d = parse("").unwrap();
    assert_eq!(d.limits.password_check_threads, 2);
    assert_eq!(d.limits.failed_sign_ins_per_address, 10);
    assert_eq!(d.limits.reserved_connections_percent, 10);
    let s = parse(
        "[limits]\npassword_check_threads = 4\npassword_check_queue = 8\n\
         failed_sign_ins_per_address = 5\nfailed_sign_in_window_secs = 900\n\
         max_unauthenticated_connections_per_address = 16\nunauthenticated_idle_secs = 2\n\
         reserved_connections_percent = 20\naudited_refusals_per_source_per_minute = 3\n\
         [audit]\nfile = \"a.jsonl\"\nkeep_files = 0\nmax_total_bytes = 1000000\n",
    )
    .unwrap();
    let l = &s.limits;
    assert_eq!(
        (
            l.password_check_threads,
            l.password_check_queue,
            l.failed_sign_ins_per_address
        ),
        (4, 8, 5)
    );
    assert_eq!(l.failed_sign_in_window, Duration::from_secs(900));
    assert_eq!(l.unauthenticated_idle, Duration::from_secs(2));
    assert_eq!(
        (
            l.max_unauthenticated_per_address,
            l.reserved_connections_percent,
            l.audited_refusals_per_minute
        ),
        (16, 20, 3)
    );
    let audit = s.audit.unwrap();
    assert_eq!((audit.keep_files, audit.max_total_bytes), (0, 1_000_000));
    let bad = parse(
        "[limits]\npassword_check_threads = 0\nreserved_connections_percent = 95\n\
         unauthenticated_idle_secs = 0\n",
    )
    .unwrap_err();
    assert_eq!(
        bad,
        [
            "limits.password_check_threads",
            "limits.unauthenticated_idle_secs",
            "limits.reserved_connections_percent"
        ]
    );
}

#[test]
fn store_url_selects_postgres_and_its_keys_are_checked() {
    // A key from the environment (hex) so validation can read one.
    std::env::set_var("PFGATE_CONFIG_TEST_KEY", "42".repeat(32));
    let key = "secrets_key_env = \"PFGATE_CONFIG_TEST_KEY\"\n";
    let settings = store_problems(&format!(
        "url = \"postgres://pfgate@db.contoso.com/pfgate?sslmode=require\"\nschema = \"pfgate\"\n\
         pool_size = 4\npassword_file = \"db.password\"\n{key}"
    ))
    .unwrap_err();
    // The password file does not exist: that is the one problem, named by its key.
    assert_eq!(settings, ["store.password_file"]);
    let ok = store_problems(&format!(
        "url = \"postgres://pfgate@127.0.0.1/pfgate\"\nschema = \"pfgate\"\npool_size = 4\n{key}"
    ))
    .unwrap();
    let pg = ok.store.postgres.unwrap();
    assert_eq!((pg.schema.as_deref(), pg.pool_size), (Some("pfgate"), 4));
    assert_eq!(ok.store.path, None);

    for (store, expected) in [
        (
            format!("url = \"postgres://p@127.0.0.1/p\"\npath = \"p.db\"\n{key}"),
            vec!["store.url"],
        ),
        (
            "url = \"postgres://p@127.0.0.1/p\"\n".to_string(),
            vec!["store.secrets_key_file"],
        ),
        (
            format!("schema = \"pfgate\"\ntls_ca_file = \"ca.pem\"\n{key}"),
            vec!["store.schema", "store.tls_ca_file"],
        ),
        (
            format!("url = \"postgres://p:secret@127.0.0.1/p\"\n{key}"),
            vec!["store.url"],
        ),
        (
            format!("url = \"postgres://p@db.contoso.com/p?sslmode=prefer\"\n{key}"),
            vec!["store.url"],
        ),
        (
            format!("url = \"postgres://p@127.0.0.1/p\"\nschema = \"Bad-Name\"\npool_size = 0\n{key}"),
            vec!["store.schema", "store.pool_size"],
        ),
        (
            format!("url = \"postgres://p@127.0.0.1/p\"\npassword_env = \"A\"\npassword_file = \"b\"\n{key}"),
            vec!["store.password_env"],
        ),
    ] {
        assert_eq!(store_problems(&store).unwrap_err(), expected, "{store}");
    }
}

/// `match` of an oidc provider: its default follows the claim, a bad value or `oid` matched
/// against usernames is a problem line naming `providers.NAME.match` and saying what to do.
#[test]
fn oidc_match_is_validated_and_defaults_by_claim() {
    use crate::providers::oidc::IdentityMatch;
    let load = |extra: &str| {
        let text = format!(
            "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
             [providers.entra]\nkind = \"oidc\"\nissuer = \"http://127.0.0.1:9/op\"\n\
             client_id = \"c\"\npublic_url = \"http://127.0.0.1:8444\"\n\
             listen = \"127.0.0.1:8444\"\n{extra}\n\
             [providers.entra.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n\
             [[routes]]\nproviders = [\"entra\"]\n"
        );
        let file: FileConfig = toml::from_str(&text).unwrap();
        validate(Path::new("/etc/pfgate/pfgate.toml"), file).map_err(|e| {
            e.0.into_iter()
                .map(|p| format!("{}: {}", p.key, p.reason))
                .collect::<Vec<_>>()
        })
    };
    let matching = |extra: &str| {
        let settings = load(extra).unwrap();
        let ProviderSettings::Oidc(o) = &settings.providers[0].1 else {
            panic!("an oidc provider")
        };
        o.identity_match().unwrap()
    };
    assert_eq!(matching(""), IdentityMatch::Username);
    assert_eq!(
        matching("username_claim = \"upn\""),
        IdentityMatch::Username
    );
    assert_eq!(
        matching("username_claim = \"oid\""),
        IdentityMatch::ExternalId
    );
    assert_eq!(
        matching("username_claim = \"sub\""),
        IdentityMatch::ExternalId
    );
    assert_eq!(
        matching("username_claim = \"email\"\nmatch = \"external_id\""),
        IdentityMatch::ExternalId
    );
    assert_eq!(
        matching("username_claim = \"sub\"\nmatch = \"username\""),
        IdentityMatch::Username
    );
    let problems = load("match = \"upn\"").unwrap_err();
    assert_eq!(
        problems,
        ["providers.entra.match: 'upn' is not \"username\" or \"external_id\""]
    );
    let problems = load("username_claim = \"oid\"\nmatch = \"username\"").unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("providers.entra.match: username_claim = \"oid\" is an object id")
            && problems[0].contains("match = \"external_id\""),
        "{problems:?}"
    );
}

#[test]
fn example_file_uses_only_known_keys() {
    let text = include_str!("../../pfgate.example.toml");
    let parsed: FileConfig = toml::from_str(text).unwrap();
    assert_eq!(parsed.engine.auth_timeout_secs, Some(60));
    assert_eq!(
        parsed.limits.max_body_bytes,
        Some(Limits::default().max_body_bytes)
    );
    assert!(
        !parsed.auth.allow_anonymous,
        "the example must not open the door by default"
    );
}

fn engine_problems(text: &str) -> Result<Settings, Vec<String>> {
    let file: FileConfig = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
    validate(Path::new("/nonexistent/pfgate.toml"), file).map_err(|e| {
        e.0.iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect()
    })
}

/// Without a provider the configuration cannot serve, saying what to configure (issue #17,
/// item 4); a provider named explicitly, even the scripted one, can; demo mode has its own.
#[test]
fn a_configuration_without_providers_cannot_serve() {
    let base = "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n";
    let problems = engine_problems(base).unwrap().serve_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "providers");
    assert!(
        problems[0].1.starts_with("no provider is configured"),
        "{problems:?}"
    );
    assert!(problems[0].1.contains("[[routes]]"), "{problems:?}");
    let named = engine_problems(&format!("{base}{SCRIPTED}")).unwrap();
    assert!(named.serve_problems().is_empty());
    assert!(Settings::demo(([127, 0, 0, 1], 0).into())
        .serve_problems()
        .is_empty());
}

/// The engine's new settings: secure defaults, the documented literals, ranges checked.
#[test]
fn engine_policy_settings_default_secure_and_are_checked() {
    let base = format!(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n{SCRIPTED}"
    );
    let d = engine_problems(&base).unwrap().engine;
    assert_eq!(d.unknown_users, UnknownUsers::Deny);
    assert_eq!(
        (
            d.lockout.threshold,
            d.lockout.window.as_secs(),
            d.lockout.duration.as_secs()
        ),
        (5, 900, 900)
    );
    assert!(!d.call_only_stored_numbers);
    let set = engine_problems(&format!(
        "{base}[engine]\nunknown_users = \"caller\"\nlockout_threshold = 3\n\
         lockout_window_secs = 60\nlockout_secs = 120\ncall_only_stored_numbers = true\n"
    ))
    .unwrap()
    .engine;
    assert_eq!(set.unknown_users, UnknownUsers::Caller);
    assert_eq!(
        (
            set.lockout.threshold,
            set.lockout.window.as_secs(),
            set.lockout.duration.as_secs()
        ),
        (3, 60, 120)
    );
    assert!(set.call_only_stored_numbers);
    let bad = engine_problems(&format!(
        "{base}[engine]\nunknown_users = \"allow\"\nlockout_threshold = 0\nlockout_secs = 0\n"
    ))
    .unwrap_err();
    let keys: Vec<&str> = bad
        .iter()
        .map(|p| p.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "engine.unknown_users",
            "engine.lockout_threshold",
            "engine.lockout_secs"
        ]
    );
    // Demo mode is a double of MFA Server: unknown users as the caller says.
    assert_eq!(
        Settings::demo(([127, 0, 0, 1], 0).into())
            .engine
            .unknown_users,
        UnknownUsers::Caller
    );
}

/// Problems of an `[auth]` section with `[auth.kerberos]` and an allow-list, as `key: reason`.
fn kerberos_problems(section: &str) -> Result<Settings, Vec<String>> {
    let text = format!(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n{SCRIPTED}{section}\n\
         [[auth.principals]]\nname = \"svc-mim@CONTOSO.COM\"\nallow = [\"authentication\"]\n"
    );
    let file: FileConfig = toml::from_str(&text).map_err(|e| vec![e.to_string()])?;
    validate(Path::new("/nonexistent/pfgate.toml"), file).map_err(|e| {
        e.0.iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect()
    })
}

#[cfg(not(feature = "kerberos"))]
#[test]
fn kerberos_section_is_refused_by_name_without_the_feature() {
    let problems = kerberos_problems(
        "[auth.kerberos]\nkeytab = \"/etc/pfgate/pfgate.keytab\"\n\
         service_principal = \"HTTP/mfa.contoso.com@CONTOSO.COM\"",
    )
    .err()
    .unwrap_or_default();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("auth.kerberos: this pfgate was built without Kerberos"),
        "{problems:?}"
    );
    assert!(problems[0].contains("--features kerberos"), "{problems:?}");
}

#[cfg(feature = "kerberos")]
#[test]
fn kerberos_section_is_checked_with_the_feature() {
    let keytab = std::env::temp_dir().join(format!("pfgate-config-{}.keytab", std::process::id()));
    let _ = std::fs::write(&keytab, b"\x05\x02");
    let ok = kerberos_problems(&format!(
        "[auth.kerberos]\nkeytab = {:?}\nservice_principal = \"HTTP/mfa.contoso.com@CONTOSO.COM\"",
        keytab.display().to_string()
    ));
    let settings = match ok {
        Ok(s) => s,
        Err(p) => panic!("{p:?}"),
    };
    let k = settings
        .auth
        .kerberos
        .as_ref()
        .map(|k| k.acceptor_settings());
    assert_eq!(
        k.map(|k| (k.keytab, k.service_principal)),
        Some((
            keytab.clone(),
            Some("HTTP/mfa.contoso.com@CONTOSO.COM".into())
        ))
    );
    // Validation only reads the settings: the acceptor is built at start-up.
    assert!(settings
        .auth
        .kerberos
        .is_some_and(|k| k.acceptor().is_none()));
    let _ = std::fs::remove_file(&keytab);

    let problems = kerberos_problems(
        "[auth.kerberos]\nkeytab = \"missing.keytab\"\nservice_principal = \"HTTP/mfa.contoso.com\"",
    )
    .err()
    .unwrap_or_default();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("auth.kerberos.keytab: cannot read /nonexistent/missing.keytab"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(
            "auth.kerberos.service_principal: 'HTTP/mfa.contoso.com' is not SERVICE/host@REALM"
        ),
        "{problems:?}"
    );
}
