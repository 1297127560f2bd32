//! Validation of a parsed file into [`Settings`], one check per section.
//!
//! Each section's check takes its serde section and returns its validated settings, adding every
//! problem it finds to one list instead of stopping at the first, so `check-config` names them
//! all. A section that has a problem still yields settings (the default in place of a bad value),
//! so the later sections are checked too; the list decides whether the whole file is accepted. The
//! checks run in a fixed order, which is the order the problems are printed in.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{FileConfig, StoreSection};
use super::problems::{ConfigErrors, Problems};
use super::settings::{Settings, StoreSettings};

mod admin;
mod auth;
mod engine;
mod limits;
mod routes;
mod server;
mod store;

/// What every section's check needs: the file's directory (relative paths are relative to it)
/// and the problems found so far.
pub(super) struct Check<'a> {
    base: &'a Path,
    problems: Problems,
}

impl<'a> Check<'a> {
    /// A check of the file at `path`, with no problem yet.
    fn new(path: &'a Path) -> Self {
        Self {
            base: path.parent().unwrap_or(Path::new(".")),
            problems: Problems::new(path),
        }
    }

    /// Records that `key` is wrong for `reason`.
    pub(super) fn problem(&mut self, key: &str, reason: impl Into<String>) {
        self.problems.add(key, reason);
    }

    /// `p` as given when absolute, else relative to the configuration file's directory.
    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The configuration file's directory.
    pub(super) fn base(&self) -> &Path {
        self.base
    }

    /// `value` when no check found a problem, else all of them.
    fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        self.problems.finish(value)
    }
}

/// Validates a parsed file.
pub fn validate(path: &Path, file: FileConfig) -> Result<Settings, ConfigErrors> {
    let mut c = Check::new(path);
    let listeners = server::server(&mut c, &file.server);
    let limits = limits::limits(&mut c, &file.limits);
    let engine = engine::engine(&mut c, &file.engine);
    let directory = engine::directory(&mut c, &file.directory);
    let store = store::store(&mut c, &file.store);
    let primary_auth = file
        .primary_auth
        .as_ref()
        .map(|p| engine::primary_auth(&mut c, p));
    let providers = super::providers::providers(&mut c, &file.providers);
    routes::routes(&mut c, &file.routes, &providers);
    let audit = file.audit.as_ref().map(|a| routes::audit(&c, a));
    let breaker = routes::breaker(&file.breaker);
    let auth = auth::auth(&mut c, &file.auth, &file.server.trusted_proxies);
    let admin = admin::admin(&mut c, &file.admin);
    c.finish(Settings {
        tls_listen: listeners.tls_listen,
        tls: listeners.tls,
        plain_listen: listeners.plain_listen,
        trusted_proxies: listeners.trusted_proxies,
        limits,
        engine,
        directory,
        allow_anonymous: file.auth.allow_anonymous,
        auth,
        demo: false,
        store,
        primary_auth,
        providers,
        routes: file.routes,
        breaker,
        audit,
        admin,
    })
}

/// Validates only `[store]` of the file at `path` (for [`super::load_store`]).
pub(super) fn store_only(
    path: &Path,
    section: &StoreSection,
) -> Result<StoreSettings, ConfigErrors> {
    let mut c = Check::new(path);
    let store = store::store(&mut c, section);
    c.finish(store)
}

/// A number of seconds from 1 to 3600, else the problem is reported and `default` kept.
fn secs(c: &mut Check<'_>, v: Option<u64>, default: Duration, key: &str) -> Duration {
    match v {
        Some(0) => {
            c.problem(key, "must be at least 1 second");
            default
        }
        Some(s) if s > 3600 => {
            c.problem(key, "must be at most 3600 seconds");
            default
        }
        Some(s) => Duration::from_secs(s),
        None => default,
    }
}

/// How a value outside its range is reported: most keys say "{value} is out of range: it must
/// be {start}..={end}"; the first `[limits]` keys say "must be between {start} and {end}".
#[derive(Clone, Copy)]
enum Wording {
    OutOfRange,
    Between,
}

/// `value` if it lies in `range`, else the problem is reported (worded as `wording` says) and
/// `default` kept.
fn in_range<T>(
    c: &mut Check<'_>,
    value: Option<T>,
    default: T,
    range: RangeInclusive<T>,
    key: &str,
    wording: Wording,
) -> T
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    match value {
        Some(v) if !range.contains(&v) => {
            let (start, end) = (range.start(), range.end());
            let reason = match wording {
                Wording::OutOfRange => format!("{v} is out of range: it must be {start}..={end}"),
                Wording::Between => format!("must be between {start} and {end}"),
            };
            c.problem(key, reason);
            default
        }
        Some(v) => v,
        None => default,
    }
}
