//! From the demo to production (issue #18): the traps a new administrator hit, each through the
//! real binary — store-only commands, `users import --dry-run` on a CSV, `mim check --url`
//! checks and its `Username` handling, the secrets-key warning, `check-config`'s hints, `pfgate
//! call`'s TLS hint, `--listen HOST:PORT`, `cert dev` paths, a scenario's "did you mean".

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::cli::{bin, sigterm_and_wait, spawn_serve, spawn_serve_logging, temp_dir};

/// Runs the binary with `args`; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = bin().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A path as a command-line argument.
fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// Writes a 32-byte secrets key readable only by its owner (what `(umask 077; head -c 32
/// /dev/urandom > secrets.key)` leaves).
pub(crate) fn write_owner_only_key(path: &Path) {
    std::fs::write(path, [9u8; 32]).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A directory holding `pfgate.toml` with only docs/migration.md's step-1 `[store]` (paths made
/// relative) and its key.
fn store_only_site(tag: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    write_owner_only_key(&dir.join("secrets.key"));
    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        "[store]\npath = \"pfgate.db\"\nsecrets_key_file = \"secrets.key\"\n",
    )
    .unwrap();
    (dir, config)
}

/// `users import` and `users export` need only `[store]`: the step-1 snippet of docs/migration.md
/// (no listener, certificate or caller authentication) imports and exports. Failed before: every
/// missing server setting was a problem line and the import stopped.
#[test]
fn users_import_and_export_work_from_a_store_only_configuration() {
    let (dir, config) = store_only_site("storeonly");
    let csv = dir.join("users.csv");
    std::fs::write(
        &csv,
        "username,first_name,country_code,phone,mode\nmimservice@contoso.com,MIM,1,4255550100,voiceCall\n",
    )
    .unwrap();
    let (code, out, err) = run(&["users", "import", &arg(&csv), "--config", &arg(&config)]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 added"), "{out}");
    let (code, out, err) = run(&["users", "export", "--config", &arg(&config)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("mimservice@contoso.com,MIM,"), "{out}");
    // The store section is still checked: a store file without a key is refused by key name.
    std::fs::write(&config, "[store]\npath = \"pfgate.db\"\n").unwrap();
    let (code, _, err) = run(&["users", "export", "--config", &arg(&config)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(":store.secrets_key_file:"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `users import FILE.csv --dry-run` reports what would change and writes nothing: the export
/// before and after is identical, and the users it would add are still absent. Failed before: the
/// flag was accepted (`requires = "from_sdk"` was not enforced for a file) and the users written.
#[test]
fn users_import_csv_dry_run_writes_nothing() {
    let (dir, config) = store_only_site("dryrun");
    // A whole server configuration: the dry run must not depend on the store-only loading.
    std::fs::write(
        &config,
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
         [store]\npath = \"pfgate.db\"\nsecrets_key_file = \"secrets.key\"\n",
    )
    .unwrap();
    let first = dir.join("first.csv");
    std::fs::write(
        &first,
        "username,first_name,country_code,phone\nada@contoso.com,Ada,1,4255550101\n",
    )
    .unwrap();
    let (code, out, err) = run(&["users", "import", &arg(&first), "--config", &arg(&config)]);
    assert_eq!(code, Some(0), "{out}{err}");
    let export = || run(&["users", "export", "--config", &arg(&config)]).1;
    let before = export();

    let second = dir.join("second.csv");
    std::fs::write(
        &second,
        "username,first_name,country_code,phone\nada@contoso.com,Ada L.,1,4255550101\n\
         bob@contoso.com,Bob,1,4255550102\n",
    )
    .unwrap();
    let dry = |extra: &[&str]| {
        let mut args = vec!["users", "import"];
        let (file, cfg) = (arg(&second), arg(&config));
        args.extend([file.as_str(), "--config", cfg.as_str(), "--dry-run"]);
        args.extend(extra);
        run(&args)
    };
    let (code, out, err) = dry(&[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(":3: would add bob@contoso.com"), "{out}");
    assert!(out.contains(":2: already present ada@contoso.com"), "{out}");
    assert!(
        out.contains("nothing written: 1 would be added, 0 updated, 1 already present"),
        "{out}"
    );
    let (code, out, _) = dry(&["--update"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(":2: would update ada@contoso.com"), "{out}");
    assert_eq!(export(), before, "a dry run changed the store");
    assert!(!export().contains("bob@contoso.com"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mim check --url` refuses what pfgate would never serve (plain http, another path, no host,
/// credentials or a query in the URL) with exit 2, and `--write` then writes nothing and keeps no
/// backup; any letter case of `/PfWsSdk.asmx` is accepted, as the server matches it. Failed
/// before: `http://pfgate.contoso.com/foo` was written into LOCMFASRV.
#[test]
fn mim_check_refuses_urls_pfgate_would_not_serve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mim");
    let dir = temp_dir("mimurl");
    let file = dir.join("MfaSettings.xml");
    std::fs::copy(root.join("MfaSettings.locmfa.xml"), &file).unwrap();
    let original = std::fs::read(&file).unwrap();
    for (url, reason) in [
        ("http://pfgate.contoso.com/foo", "https"),
        (
            "http://pfgate.contoso.com/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx",
            "https",
        ),
        ("https://pfgate.contoso.com/foo", "/PfWsSdk.asmx"),
        (
            "https://pfgate.contoso.com/PfWsSdk.asmx.bak",
            "/PfWsSdk.asmx",
        ),
        ("pfgate.contoso.com/PfWsSdk.asmx", "absolute URL"),
        ("https://svc:pw@pfgate.contoso.com/PfWsSdk.asmx", "password"),
        ("https://pfgate.contoso.com/PfWsSdk.asmx?WSDL", "query"),
    ] {
        let (code, out, err) = run(&["mim", "check", &arg(&file), "--url", url, "--write"]);
        assert_eq!(code, Some(2), "{url}: {out}{err}");
        assert!(err.contains(reason), "{url}: {err}");
        assert_eq!(std::fs::read(&file).unwrap(), original, "{url} was written");
    }
    let backups = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("backup"))
        .count();
    assert_eq!(backups, 0);
    let ok = "https://MFA.contoso.com/multifactorauthwebservicesdk/PFWSSDK.ASMX";
    let (code, out, err) = run(&["mim", "check", &arg(&file), "--url", ok]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("LOCMFASRV: https://CORPSERVICE"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cloud-SDK MfaSettings.xml has only the cloud SDK's lower-case `<username>` ("any username"):
/// LOCMFA needs `<Username>`. Without `--username` the check says what is still to do and exits 1
/// (never "No change needed" beside "Username is not set"); with it, `<Username>` is written and a
/// second check needs nothing. Failed before: after `--write`, "Username is not set" was printed
/// next to "No change needed" with exit 0.
#[test]
fn mim_check_username_is_never_reported_missing_and_done_at_once() {
    const URL: &str = "https://pfgate.contoso.com/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx";
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mim");
    let dir = temp_dir("mimuser");
    let file = dir.join("MfaSettings.xml");
    std::fs::copy(root.join("MfaSettings.cloud.xml"), &file).unwrap();
    let (code, out, _) = run(&["mim", "check", &arg(&file), "--url", URL, "--write"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Still to do: Username is not set"), "{out}");
    assert!(
        out.contains("lower case"),
        "the cloud SDK element is named: {out}"
    );
    let (code, out, _) = run(&["mim", "check", &arg(&file), "--url", URL]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("No change needed"), "{out}");

    let (code, out, _) = run(&[
        "mim",
        "check",
        &arg(&file),
        "--url",
        URL,
        "--username",
        "mimservice@contoso.com",
        "--write",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("<Username>mimservice@contoso.com</Username>"),
        "{text}"
    );
    assert!(text.contains("<username>any username</username>"), "{text}");
    let (code, out, _) = run(&["mim", "check", &arg(&file), "--url", URL]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("No change needed"), "{out}");
    assert!(out.contains("Username is mimservice@contoso.com"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A secrets key readable by others is warned about once per start, not twice (once by the
/// configuration check, once by the store). Failed before: two warnings.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_secrets_key_is_warned_about_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, config) = store_only_site("keywarn");
    let key = dir.join("secrets.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        &config,
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
         [admin]\nenabled = false\n\
         [store]\npath = \"pfgate.db\"\nsecrets_key_file = \"secrets.key\"\n\
         [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
    )
    .unwrap();
    let log = dir.join("stderr.log");
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    let cfg = arg(&config);
    let served = tokio::task::spawn_blocking(move || {
        spawn_serve_logging(&["serve", "--config", &cfg], 1, stderr)
    })
    .await
    .unwrap();
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
        .await
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("secrets key file is readable by group or others")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("umask 077"), "the fix is named: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check-config` on a file without caller authentication names what MIM uses (NTLM through
/// `[auth.ntlm]`) and client certificates, not only Basic and a proxy header. Failed before.
#[test]
fn check_config_hint_names_ntlm_and_client_certificates() {
    let dir = temp_dir("authhint");
    let config = dir.join("pfgate.toml");
    std::fs::write(&config, "[server]\nplain_listen = \"127.0.0.1:0\"\n").unwrap();
    let (code, _, err) = run(&["check-config", &arg(&config)]);
    assert_eq!(code, Some(1));
    let line = err
        .lines()
        .find(|l| l.contains(":auth: no caller authentication"))
        .unwrap_or_else(|| panic!("{err}"));
    for wanted in [
        "[auth.ntlm]",
        "MIM",
        "[[auth.certificate_map]]",
        "client_ca_file",
    ] {
        assert!(line.contains(wanted), "{wanted}: {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve --listen localhost:0` listens (a host name, not only ADDR:PORT), and `pfgate call` to
/// it without trusting its self-signed certificate fails with exit 3 and says how to trust it
/// (`--ca`, `--pin-sha256`); with `--pin-sha256` the call succeeds. Both failed before: clap
/// refused `localhost:0`, and the TLS error carried no hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_takes_a_host_name_and_call_hints_at_trust_options() {
    let served = tokio::task::spawn_blocking(|| {
        spawn_serve(&["serve", "--demo", "--listen", "localhost:0"], 2)
    })
    .await
    .unwrap();
    let line = served
        .lines
        .iter()
        .find(|l| l.contains("listening on https://"))
        .unwrap();
    let url = line
        .split(' ')
        .find(|w| w.starts_with("https://"))
        .unwrap()
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    let fingerprint = served
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("TLS certificate SHA-256 fingerprint: "))
        .unwrap()
        .trim()
        .to_string();
    let call_url = url.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        run(&["call", &call_url, "TestSecurity", "--timeout", "10"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(
        err.contains("--ca") && err.contains("--pin-sha256"),
        "{err}"
    );
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(&[
            "call",
            &url,
            "TestSecurity",
            "--pin-sha256",
            &fingerprint,
            "--timeout",
            "10",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
        .await
        .unwrap();
    assert!(status.success());
}

/// `cert dev` run from one directory prints `tls_cert`/`tls_key` lines a configuration elsewhere
/// can use as printed (absolute paths). Failed before: `certs/dev-server.pem`, relative to where
/// the command ran, which a configuration in another directory resolves against itself.
#[test]
fn cert_dev_prints_paths_a_configuration_anywhere_can_use() {
    let dir = temp_dir("certpaths");
    let work = dir.join("work");
    let etc = dir.join("etc");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    let out = bin()
        .current_dir(&work)
        .args(["cert", "dev", "--dir", "certs"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("tls_cert = ") || l.starts_with("tls_key = "))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let config = etc.join("pfgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n{}\n[auth]\nallow_anonymous = true\n\
             [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
            lines[0], lines[1]
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["check-config", &arg(&config)]);
    assert_eq!(code, Some(0), "{stdout}\n{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An unknown operation name in a mock scenario gets a "did you mean" as `pfgate call` gives.
/// Failed before: only "is not a PfWsSdk operation".
#[test]
fn scenario_unknown_operation_gets_did_you_mean() {
    let dir = temp_dir("scenario");
    let scenario = dir.join("s.toml");
    std::fs::write(
        &scenario,
        "[[rules]]\noperation = \"pfauthuser_4\"\noutcome = \"approve\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["mock", "--scenario", &arg(&scenario)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("did you mean: PfAuthUser_4"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `users import`/`export` with a `[store]` naming only a PostgreSQL database (no `path`): the
/// import lands in the database and the export reads it back. Failed before: the commands
/// demanded `store.path` ("no store file") even with `store.url` set. Skips without
/// `PFGATE_TEST_DATABASE_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_import_and_export_work_with_a_postgres_only_store() {
    use pfgate::store::postgres::testing::{self, TestSchema};
    let Some(url) = testing::database_url("users import into PostgreSQL") else {
        return;
    };
    let schema = TestSchema::create(&url).await.unwrap();
    let dir = temp_dir("pgstore");
    write_owner_only_key(&dir.join("secrets.key"));
    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = {url:?}\nschema = {:?}\nsecrets_key_file = \"secrets.key\"\n",
            schema.name()
        ),
    )
    .unwrap();
    let csv = dir.join("users.csv");
    std::fs::write(&csv, "username,first_name\npg@contoso.com,Pg\n").unwrap();
    let (cfg, file) = (arg(&config), arg(&csv));
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run(&["users", "import", &file, "--config", &cfg]))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 added"), "{out}");
    let cfg = arg(&config);
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run(&["users", "export", "--config", &cfg]))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("pg@contoso.com,Pg,"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
