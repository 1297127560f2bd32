//! `fail_mode = "safe"` through the real binary (issue #23 item 3): loud at `check-config`, at
//! start, at every reload and in the admin `/readyz`; the `fail_open` audit event at WARN with its
//! cause; and the same answer (`true`, CallResult 7) whether every provider just failed or was
//! skipped because its breaker is open — it answered 117 "one-time code not sent" then.
//!
//! The route's one provider is a webhook provider whose address refuses connections (a port that
//! was free a moment ago): every call is a genuine provider failure.

use std::path::Path;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{bin, plain_addr, sigterm_and_wait, spawn_serve_env, temp_dir};
use crate::reload::wait_for_log;
use crate::support::*;

/// A port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn safe_config(port: u16) -> String {
    format!(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\nallow_anonymous = true\n[directory]\nusers_file = \"users.toml\"\n\
         [breaker]\nfailure_threshold = 1\ncooldown_secs = 300\n\
         [providers.hook]\nkind = \"webhook\"\nbase_url = \"http://127.0.0.1:{port}/mfa\"\n\
         secret_file = \"webhook.secret\"\n\
         [[routes]]\nproviders = [\"hook\"]\nfail_mode = \"safe\"\n"
    )
}

fn write_files(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::write(
        dir.join("webhook.secret"),
        "fail-modes-test-webhook-secret-7c1d",
    )
    .unwrap();
    std::fs::write(
        dir.join("users.toml"),
        "[[users]]\nusername = \"sam@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550100\"\n",
    )
    .unwrap();
    let config = dir.join("pfgate.toml");
    std::fs::write(&config, safe_config(port)).unwrap();
    config
}

/// `PfAuthUser_4` for `user` over plain HTTP: (result, CallResult code).
pub(crate) async fn auth4(addr: &str, user: &str) -> (String, String) {
    let body = env11(&format!(
        r#"<PfAuthUser_4 xmlns="{NS}"><username>{user}</username><requireUserMatch>true</requireUserMatch></PfAuthUser_4>"#
    ));
    let text = http_plain(addr, "POST", SDK_PATH, &action("PfAuthUser_4"), &body).await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    let result = text_of(&body, "PfAuthUser_4Result").unwrap_or_default();
    let code = body
        .split("<callResult><Code>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or("")
        .to_string();
    (result, code)
}

async fn http_plain(addr: &str, method: &str, path: &str, soap_action: &str, body: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"{soap_action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_mode_safe_is_loud_and_answers_the_same_with_the_breaker_open() {
    let dir = temp_dir("fail-safe");
    let config = write_files(&dir, closed_port());

    // check-config: valid (exit 0), with a warning naming the route.
    let out = bin().arg("check-config").arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning")
            && err.contains("routes[0]")
            && err.contains("fail_mode = \"safe\""),
        "{err}"
    );

    // serve: a WARN line at start.
    let log = dir.join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let cfg = config.display().to_string();
    let served = tokio::task::spawn_blocking(move || {
        spawn_serve_env(&["serve", "--config", &cfg], 2, Stdio::from(file), &[])
    })
    .await
    .unwrap();
    wait_for_log(&log, &["WARN", "routes[0]", "fail_mode"], 1);

    // /readyz on the admin listener names it too.
    let admin = served
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("pfgate admin listener on http://"))
        .and_then(|a| a.split(' ').next())
        .expect("the admin listener's line")
        .to_string();
    let ready = http_plain(&admin, "GET", "/readyz", "", "").await;
    let json: serde_json::Value =
        serde_json::from_str(ready.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap();
    let warnings = json["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("routes[0]")),
        "{json}"
    );
    assert_eq!(json["routes"][0]["fail_mode"], "safe", "{json}");

    // Every provider failed: true/7, and the fail_open audit event at WARN with the cause.
    let addr = plain_addr(&served);
    assert_eq!(
        auth4(&addr, "sam@contoso.com").await,
        ("true".into(), "7".into())
    );
    let line = wait_for_log(&log, &["pfgate::audit", "fail_open"], 1);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("every provider failed"), "{line}");
    assert!(line.contains("hook"), "{line}");

    // The breaker is open now (threshold 1): the same answer, as documented (it was 117).
    assert_eq!(
        auth4(&addr, "sam@contoso.com").await,
        ("true".into(), "7".into())
    );
    let line = wait_for_log(&log, &["pfgate::audit", "fail_open"], 2);
    assert!(line.contains("circuit open"), "{line}");

    // A reload warns again.
    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for_log(&log, &["configuration reloaded"], 1);
    wait_for_log(&log, &["WARN", "routes[0]", "fail_mode"], 2);

    let status = sigterm_and_wait(served.child);
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
