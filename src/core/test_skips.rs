//! For pfgate's own tests: tests that skip because something is missing (a database, Mono, zeep,
//! slapd …) record why here, and the last test of each test binary prints a summary.
//!
//! Why: libtest has no "skipped" outcome, so a test that returns early counts as passed, and its
//! `SKIP` line is captured with the rest of a passing test's output — on a fresh machine
//! `cargo test` said "153 passed" while 52 tests had tested nothing. The summary is written
//! straight to the process's standard error (not through `eprintln!`, which libtest captures), so
//! a developer running plain `cargo test` sees how many tests skipped, why, and how to run them.
//!
//! The summary is printed by a test named `zz_skip_summary` in each test binary: libtest starts
//! tests in name order, so it starts after every other test has started, and the skipping tests
//! decide at their start. `PFGATE_REQUIRE_INTEROP=1` (CI) turns a missing tool into a failure
//! instead; those tests never reach [`skip`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// What a skipped test needed and did not find; each says how to provide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    /// A PostgreSQL database named by `PFGATE_TEST_DATABASE_URL`.
    PostgreSql,
    /// Mono with `mcs` and `wsdl` (the .NET proxy interop).
    Mono,
    /// Python 3 with zeep.
    Zeep,
    /// Python 3 with pyspnego and requests-ntlm.
    Pyspnego,
    /// OpenLDAP `slapd` and `slapadd`.
    Ldap,
    /// node, chromium and the npm packages of `tests/oidc`.
    Oidc,
    /// MIT Kerberos KDC tools and a curl with GSS-API.
    Kerberos,
    /// Command-line tools named in the text (curl, python3, systemd-analyze …).
    Tools(&'static str),
}

impl Needs {
    /// How a developer provides it.
    pub fn how_to_enable(self) -> &'static str {
        match self {
            Needs::PostgreSql => {
                "export PFGATE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
                 (any database the tests may create schemas in)"
            }
            Needs::Mono | Needs::Zeep | Needs::Pyspnego | Needs::Ldap | Needs::Kerberos => {
                "bash .ci/install-deps"
            }
            Needs::Oidc => "bash .ci/install-deps, then (cd tests/oidc && npm ci)",
            Needs::Tools(_) => "install them (bash .ci/install-deps installs all test tools)",
        }
    }
}

impl fmt::Display for Needs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Needs::PostgreSql => f.write_str("PostgreSQL (PFGATE_TEST_DATABASE_URL not set)"),
            Needs::Mono => f.write_str("Mono (mono, mcs, wsdl)"),
            Needs::Zeep => f.write_str("Python zeep"),
            Needs::Pyspnego => f.write_str("Python pyspnego and requests-ntlm"),
            Needs::Ldap => f.write_str("OpenLDAP slapd"),
            Needs::Oidc => {
                f.write_str("OIDC browser test (node, chromium, tests/oidc npm packages)")
            }
            Needs::Kerberos => f.write_str("Kerberos KDC tools and GSS-API curl"),
            Needs::Tools(names) => f.write_str(names),
        }
    }
}

static SKIPPED: Mutex<Vec<(Needs, String)>> = Mutex::new(Vec::new());

/// Records that `test` skipped for want of `needs` (`detail` says what exactly was missing) and
/// prints the usual `SKIP` line (shown with `--nocapture` or when the test fails).
pub fn skip(needs: Needs, test: &str, detail: &str) {
    eprintln!(
        "SKIP {test}: {needs} unavailable: {detail} ({})",
        needs.how_to_enable()
    );
    SKIPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((needs, test.to_string()));
}

/// The summary of this process's skips, or `None` when nothing skipped.
pub fn summary() -> Option<String> {
    let skipped = SKIPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if skipped.is_empty() {
        return None;
    }
    let mut per_reason: BTreeMap<Needs, usize> = BTreeMap::new();
    for (needs, _) in &skipped {
        *per_reason.entry(*needs).or_default() += 1;
    }
    let mut out = format!(
        "\nSKIPPED: {} test(s) of this binary did not run and were counted as passed:\n",
        skipped.len()
    );
    for (needs, count) in &per_reason {
        out.push_str(&format!(
            "  {count:>3}  {needs} — {}\n",
            needs.how_to_enable()
        ));
    }
    out.push_str(
        "  The full suite: README.md, \"Running the whole test suite\". \
         PFGATE_REQUIRE_INTEROP=1 turns a missing tool into a failure.\n",
    );
    Some(out)
}

/// Prints [`summary`] past libtest's output capture; for the `zz_skip_summary` test of each
/// test binary. Waits `settle` first so tests started just before it finish deciding.
pub fn print_summary(settle: Duration) {
    std::thread::sleep(settle);
    if let Some(text) = summary() {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_per_reason_with_the_fix() {
        skip(Needs::Tools("frobnicate"), "t1", "not on PATH");
        skip(Needs::Tools("frobnicate"), "t2", "not on PATH");
        let text = summary().unwrap_or_default();
        assert!(text.starts_with("\nSKIPPED: "), "{text}");
        assert!(text.contains("  2  frobnicate — install them"), "{text}");
        // Leave nothing behind for the binary's real summary.
        SKIPPED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(n, _)| *n != Needs::Tools("frobnicate"));
    }
}
