//! The repository stands alone: a fresh clone has everything it cites (issue #18 item 6).
//!
//! The wire contract used to live in a `shared` directory beside the repository, which a clone
//! does not have; it is now `docs/protocol.md`, and the captured client requests are
//! `fixtures/captures/`. These tests keep it that way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the crate is at the root).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directories that hold build output or fetched packages, never sources.
const NOT_SOURCES: &[&str] = &[
    "target",
    ".git",
    "node_modules",
    "fuzz/target",
    "fuzz/corpus",
    "fuzz/artifacts",
    "bench/.alt",
];

/// Every file under version control: `git ls-files`, or — in an export without `.git` — every
/// file outside build output.
fn tracked_files() -> Vec<PathBuf> {
    let root = root();
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output();
    if let Ok(out) = listed {
        if out.status.success() && !out.stdout.is_empty() {
            return out
                .stdout
                .split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
                .filter(|p| p.is_file())
                .collect();
        }
    }
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if path.is_dir() {
            if !NOT_SOURCES.contains(&rel.as_str()) {
                walk(root, &path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// `file:line` of every line in a tracked file that contains `needle`.
fn mentions(needle: &str) -> Vec<String> {
    let root = root();
    let mut found = Vec::new();
    for file in tracked_files() {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if line.contains(needle) {
                let rel = file.strip_prefix(&root).unwrap_or(&file);
                found.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

/// Nothing points outside the repository: no path into the `shared` directory beside it, no
/// reference to the notes kept there (the contract is `docs/protocol.md`). The needles are built
/// at run time so this file does not match itself.
#[test]
fn no_tracked_file_points_outside_the_repository() {
    assert!(
        tracked_files().len() > 100,
        "the file list is implausibly short: {:?}",
        tracked_files()
    );
    for needle in [concat!("..", "/shared"), concat!("PROTOCOL", ".md")] {
        let found = mentions(needle);
        assert!(
            found.is_empty(),
            "{} line(s) mention {needle}; point them at docs/protocol.md or fixtures/captures/:\n{}",
            found.len(),
            found.join("\n")
        );
    }
}

/// The bodies bench/ sends are requests of the committed capture, byte for byte, so the benchmark
/// measures what a real .NET client sends.
#[test]
fn bench_bodies_are_captured_requests() {
    let captures =
        std::fs::read_to_string(root().join("fixtures/captures/dotnet-proxy-requests.txt"))
            .unwrap();
    let bodies: Vec<&str> = captures
        .split("=== ")
        .skip(1)
        .filter_map(|block| block.split_once("\n\n").map(|(_, body)| body.trim()))
        .collect();
    assert!(bodies.len() >= 40, "{} captured requests", bodies.len());
    for name in ["PfAuthUser_5.xml", "TestSecurity.xml"] {
        let body = std::fs::read_to_string(root().join("bench/soap").join(name)).unwrap();
        assert!(
            bodies.contains(&body.trim()),
            "bench/soap/{name} is not one of the captured requests"
        );
    }
}

/// Cargo.toml's licence expression has both licence texts, naming the copyright holder.
#[test]
fn both_licences_are_in_the_repository() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"license = "MIT OR Apache-2.0""#));
    let mit = std::fs::read_to_string(root().join("LICENSE-MIT")).unwrap();
    assert!(mit.contains("Copyright (c) the pfgate authors"), "{mit}");
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = std::fs::read_to_string(root().join("LICENSE-APACHE")).unwrap();
    assert!(apache.contains("Apache License"));
    assert!(apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
}

/// Every test that skips goes through `pfgate::testing::test_skips::skip`, so the end-of-run summary
/// counts it: a bare `SKIP` line is captured by libtest and a skipped test looks like a pass.
#[test]
fn every_skip_is_counted_in_the_summary() {
    let needle = format!("{}SKIP ", '"');
    let bare: Vec<String> = mentions(&needle)
        .into_iter()
        .filter(|hit| hit.split(':').next().is_some_and(|f| f.ends_with(".rs")))
        .filter(|hit| !hit.starts_with("src/core/test_skips.rs:"))
        .collect();
    assert!(
        bare.is_empty(),
        "skips printed without pfgate::testing::test_skips::skip:\n{}",
        bare.join("\n")
    );
}

/// The shipped binary carries no debug info: with line tables it was 102 MB, without 21.4 MiB
/// (BENCHMARKS.md, "Size of the shipped binary"). Building a release binary in a test is too slow,
/// so this guards the profile that decides it.
#[test]
fn release_profile_ships_without_debug_info() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let release = manifest["profile"]["release"].as_table().unwrap();
    let debug = release.get("debug");
    assert!(
        debug.is_none_or(|d| d.as_bool() == Some(false) || d.as_str() == Some("none")),
        "[profile.release] debug = {debug:?}"
    );
    let strip = release.get("strip");
    assert!(
        strip
            .is_some_and(|s| s.as_bool() == Some(true)
                || matches!(s.as_str(), Some("debuginfo" | "symbols"))),
        "[profile.release] strip = {strip:?}"
    );
}
