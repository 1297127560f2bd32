//! A SQLite store file is owned by the process serving from it (issue #21, goal 3): a second
//! `pfgate serve` on the same file is refused at start, naming the owner's lock; `pfgate users`
//! still works beside the owner; with `store.shared_file = true` several processes serve from the
//! file (and an owner is refused while they do).

use std::time::Duration;

use crate::cli::{bin, sigterm_and_wait, spawn_serve, temp_dir};

/// A configuration serving plain HTTP from `pfgate.db` in `dir`, shared or owned.
fn config(dir: &std::path::Path, name: &str, shared: Option<bool>) -> String {
    std::fs::write(dir.join("secrets.key"), [7u8; 32]).unwrap();
    let shared = shared
        .map(|s| format!("shared_file = {s}\n"))
        .unwrap_or_default();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[server]\nplain_listen = \"127.0.0.1:0\"\n[store]\npath = \"pfgate.db\"\n\
             secrets_key_file = \"secrets.key\"\n{shared}[auth]\nallow_anonymous = true\n\
             [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Runs `pfgate serve --config cfg` expecting it to stop at start: its exit code and stderr.
fn refused_start(cfg: &str) -> (Option<i32>, String) {
    let mut child = bin()
        .args(["serve", "--config", cfg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("a second pfgate on the same store file kept running (or hung) for 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_an_owned_store_file_is_refused_naming_the_lock() {
    let dir = temp_dir("store-owner");
    let cfg = config(&dir, "pfgate.toml", None);
    let (owner, second, users) = tokio::task::spawn_blocking(move || {
        let owner = spawn_serve(&["serve", "--config", &cfg], 1);
        let second = refused_start(&cfg);
        let users = bin()
            .args(["users", "export", "--config", &cfg])
            .output()
            .unwrap();
        (owner, second, users)
    })
    .await
    .unwrap();
    let pid = owner.child.id();
    let (code, err) = second;
    let lock = dir.join("pfgate.db.lock");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("store.path: "), "{err}");
    assert!(
        err.contains(&format!(
            "{} is held by pfgate process {pid}",
            lock.display()
        )),
        "{err}"
    );
    assert!(err.contains("store.shared_file = true"), "{err}");
    assert!(
        users.status.success(),
        "pfgate users works beside the owner: {}",
        String::from_utf8_lossy(&users.stderr)
    );
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(owner.child))
        .await
        .unwrap();
    assert!(status.success());
    // The lock goes with its owner: the file can be served from again.
    let cfg = dir.join("pfgate.toml").display().to_string();
    let again = tokio::task::spawn_blocking(move || spawn_serve(&["serve", "--config", &cfg], 1))
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(again.child))
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shared_file_two_processes_serve_from_one_file_and_an_owner_is_refused() {
    let dir = temp_dir("store-shared");
    let shared = config(&dir, "shared.toml", Some(true));
    let owned = config(&dir, "owned.toml", Some(false));
    let (a, b, refused) = tokio::task::spawn_blocking(move || {
        let a = spawn_serve(&["serve", "--config", &shared], 1);
        let b = spawn_serve(&["serve", "--config", &shared], 1);
        let refused = refused_start(&owned);
        (a, b, refused)
    })
    .await
    .unwrap();
    let (code, err) = refused;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is held by pfgate processes sharing it"),
        "{err}"
    );
    for served in [a, b] {
        let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
            .await
            .unwrap();
        assert!(status.success());
    }
}
