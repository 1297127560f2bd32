//! The container image's command lines and the CI recipes in `examples/ci/`, run against this
//! build's binary, so none of them drifts from what pfgate accepts.
//!
//! Each recipe's pfgate command line is read from the file itself (the Containerfile's `CMD` and
//! `ENV`, the GitLab job's and the compose file's `command:`), started with the image's
//! environment, and driven by the same job steps the recipes run (`examples/ci/pam_check.py`).
//! One change is made to each command line: the listen address becomes `127.0.0.1:0` (a test
//! must not bind every interface of a developer's machine); `.ci/image` runs the image itself, on
//! `0.0.0.0:8080`, inside a network namespace of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::interop::{interop_available, run, TOOL_TIMEOUT};

const TOKEN: &str = "ci-only-token-not-a-secret";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The JSON array after `key` on the first line of `text` that starts (trimmed) with `key`.
fn json_array_after(text: &str, key: &str) -> Vec<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no line starting with {key:?}"));
    serde_json::from_str(line[key.len()..].trim()).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// `ENV NAME=VALUE` lines of the Containerfile.
fn containerfile_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Kills the double when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pfgate ARGS` (listen address made loopback, a ready file added) with `env`; returns the
/// child and the base URL (`http://127.0.0.1:PORT`).
fn start(args: &[String], env: &[(String, String)], dir: &Path) -> (Running, String) {
    let mut args = args.to_vec();
    let at = args
        .iter()
        .position(|a| a == "--listen")
        .expect("the command line names its listen address");
    assert_eq!(
        args[at + 1],
        "0.0.0.0:8080",
        "recipes listen on 0.0.0.0:8080"
    );
    args[at + 1] = "127.0.0.1:0".into();
    let ready = dir.join("ready.json");
    args.push("--ready-file".into());
    args.push(ready.display().to_string());
    let child = Command::new(env!("CARGO_BIN_EXE_pfgate"))
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PFGATE_MOCK_ADMIN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pfgate");
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&ready).map_or(true, |m| m.len() == 0) {
        assert!(Instant::now() < deadline, "{args:?}: no ready file in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).expect("ready file")).expect("json");
    let url = json["url"].as_str().expect("url").to_string();
    let base = url
        .strip_suffix("/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx")
        .expect("the SDK path")
        .to_string();
    (running, base)
}

/// Runs the recipes' job steps against `base`.
async fn job_steps(base: &str) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo("examples/ci/pam_check.py"))
        .arg(base)
        .arg(repo("fixtures/mock-mim-pam.toml"))
        .env("PFGATE_MOCK_ADMIN_TOKEN", TOKEN);
    let out = run(cmd, TOOL_TIMEOUT).await.expect_success();
    assert!(out.stdout.contains("pam_check: OK"), "{}", out.report());
}

async fn healthcheck(url: &str) -> bool {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pfgate"));
    cmd.args(["healthcheck", url, "--timeout", "2"]);
    run(cmd, TOOL_TIMEOUT).await.success()
}

async fn python_available(test: &str) -> bool {
    interop_available(
        test,
        pfgate::testing::test_skips::Needs::Tools("python3"),
        &["python3"],
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_default_command_serves_the_recipes_job_steps_and_its_health_check() {
    let test = "the_image_default_command_serves_the_recipes_job_steps_and_its_health_check";
    if !python_available(test).await {
        return;
    }
    let containerfile = read("deploy/container/Containerfile");
    let entrypoint = json_array_after(&containerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/pfgate"]);
    let cmd = json_array_after(&containerfile, "CMD");
    let health = json_array_after(
        &containerfile,
        "HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD",
    );
    assert_eq!(health, ["/usr/local/bin/pfgate", "healthcheck"]);
    let env = containerfile_env(&containerfile);
    let dir = std::env::temp_dir().join(format!("pfgate-image-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (_double, base) = start(&cmd, &env, &dir);
    // The image's HEALTHCHECK probes the default URL; here the port is another one.
    assert!(healthcheck(&format!("{base}/healthz")).await);
    job_steps(&base).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gitlab_and_compose_command_lines_serve_the_job_steps() {
    let test = "the_gitlab_and_compose_command_lines_serve_the_job_steps";
    if !python_available(test).await {
        return;
    }
    let env = containerfile_env(&read("deploy/container/Containerfile"));
    for recipe in [
        "examples/ci/gitlab-ci.yml",
        "examples/ci/docker-compose.yml",
    ] {
        let text = read(recipe);
        let cmd = json_array_after(&text, "command:");
        assert_eq!(cmd[0], "mock", "{recipe}: the pfgate service runs the mock");
        assert!(
            text.contains("examples/ci/pam_check.py"),
            "{recipe}: runs the tested job steps"
        );
        assert!(text.contains(&format!("PFGATE_MOCK_ADMIN_TOKEN: {TOKEN}")));
        let dir = std::env::temp_dir().join(format!(
            "pfgate-recipe-{}-{}",
            std::process::id(),
            recipe.len()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (_double, base) = start(&cmd, &env, &dir);
        job_steps(&base).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_workflow_uses_the_image_default_command_and_the_tested_steps() {
    let workflow = read("examples/ci/github-actions.yml");
    // Service containers cannot be given a command: the image's CMD is what runs, and the test
    // above runs it. The health check and the steps must be the tested ones.
    assert!(workflow.contains("--health-cmd \"/usr/local/bin/pfgate healthcheck\""));
    assert!(workflow.contains(
        "python3 examples/ci/pam_check.py http://localhost:8080 fixtures/mock-mim-pam.toml"
    ));
    assert!(workflow.contains(&format!("PFGATE_MOCK_ADMIN_TOKEN: {TOKEN}")));
    assert!(workflow.contains("- 8080:8080"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_fails_for_a_closed_port_and_refuses_https() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    assert!(!healthcheck(&format!("http://127.0.0.1:{port}/healthz")).await);
    assert!(!healthcheck("https://127.0.0.1:8443/healthz").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_refuses_plain_http_on_any_address_outside_the_image() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pfgate"));
    cmd.args(["mock", "--plain-http", "--listen", "0.0.0.0:0"])
        .env_remove("PFGATE_MOCK_PLAIN_HTTP_ANY_ADDRESS")
        .env("PFGATE_MOCK_ADMIN_TOKEN", TOKEN);
    let out = run(cmd, TOOL_TIMEOUT).await;
    assert!(!out.success(), "{}", out.report());
    assert!(
        out.stderr.contains("--plain-http serves only on loopback"),
        "{}",
        out.report()
    );
}
