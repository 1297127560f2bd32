//! Configuration reload while serving: on `SIGHUP`, and when the configuration file or a TLS file
//! it names (certificate, key, client CA) changes.
//!
//! Files are watched by polling their contents once a second rather than through inotify: the
//! files are small, polling behaves the same on every platform and file system (NFS, bind mounts
//! into containers, Windows), and it also catches the rename-into-place that certificate renewal
//! tools and configuration management do. A change is acted on once the file has stayed the same
//! for one more poll, so an editor's half-written file is not read.
//!
//! The new file is validated completely first; an invalid one is refused with one log line per
//! problem naming the file, the key and the reason, and the configuration in force stays. Keys that
//! only take effect at start-up (listeners, store, audit trail, connection cap, Kerberos) refuse the
//! reload as a whole rather than half-applying it. See [`crate::server::Live::reload`].

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{self, Settings, TlsSource};
use crate::server::Live;
use crate::telemetry::audit::{self, AuditEvent, AuditKind};

/// How often the watched files are read.
pub const POLL: Duration = Duration::from_secs(1);

/// Adjusts freshly loaded settings the way the command line adjusted the first ones (`--listen`),
/// so that a reload compares like with like.
pub type Adjust = Box<dyn Fn(&mut Settings) + Send + Sync>;

/// What triggered a reload (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP`.
    Signal,
    /// A watched file changed.
    FileChanged,
    /// The Windows service manager's `paramchange` control (`sc control pfgate paramchange`),
    /// Windows' counterpart of `SIGHUP`.
    ParamChange,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChanged => "file changed",
            Trigger::ParamChange => "service paramchange",
        }
    }
}

/// The outcome of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new configuration is in force.
    Applied,
    /// The configuration was refused; the problems, as logged (`file:key: reason`).
    Refused(Vec<String>),
}

/// A configuration change is a security event: it goes to the audit log (and the hash-chained
/// trail) as well as the service log. `reason` names the file, or the problem (never a secret:
/// configuration errors name keys, not values of secrets).
fn audit_reload(kind: AuditKind, trigger: Trigger, reason: &str) {
    audit::emit(
        kind,
        &AuditEvent {
            operation: "reload",
            caller: trigger.as_str(),
            reason: Some(reason),
            ..AuditEvent::default()
        },
    );
}

/// Loads `path`, validates it and swaps it in, logging the result.
pub async fn reload_once(live: &Live, path: &Path, adjust: &Adjust, trigger: Trigger) -> Outcome {
    // Read off the runtime's worker threads: on a slow (network) file system a read could hold a
    // worker that authentications need.
    let owned = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || config::load(&owned))
        .await
        .map_err(|e| format!("{}: reading the configuration failed: {e}", path.display()));
    let mut settings = match loaded {
        Ok(Ok(s)) => s,
        Err(problem) => return refused(path, trigger, vec![problem]),
        Ok(Err(errors)) => {
            return refused(
                path,
                trigger,
                errors.0.iter().map(ToString::to_string).collect(),
            )
        }
    };
    adjust(&mut settings);
    match live.reload(settings).await {
        Ok(tls) => {
            audit_reload(
                AuditKind::ConfigReloaded,
                trigger,
                &path.display().to_string(),
            );
            match tls {
                Some(t) => tracing::info!(
                    target: "pfgate::reload",
                    file = %path.display(),
                    trigger = trigger.as_str(),
                    tls_sha256 = %t.fingerprint(),
                    "configuration reloaded"
                ),
                None => tracing::info!(
                    target: "pfgate::reload",
                    file = %path.display(),
                    trigger = trigger.as_str(),
                    "configuration reloaded"
                ),
            }
            Outcome::Applied
        }
        Err(e) => refused(path, trigger, vec![format!("{}: {e}", path.display())]),
    }
}

/// A refused reload: one audit event and one `error` line per problem; the old configuration stays.
fn refused(path: &Path, trigger: Trigger, problems: Vec<String>) -> Outcome {
    for p in &problems {
        audit_reload(AuditKind::ConfigRefused, trigger, p);
        tracing::error!(
            target: "pfgate::reload",
            file = %path.display(),
            trigger = trigger.as_str(),
            problem = %p,
            "configuration refused; the one in force stays"
        );
    }
    Outcome::Refused(problems)
}

/// The files whose change triggers a reload: the configuration and the TLS files in force.
fn watched_files(path: &Path, settings: &Settings) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    if settings.tls_listen.is_some() {
        if let TlsSource::Files { cert, key } = &settings.tls {
            files.push(cert.clone());
            files.push(key.clone());
        }
    }
    if let Some(ca) = &settings.auth.client_ca_file {
        files.push(ca.clone());
    }
    files
}

/// [`fingerprint`] on the blocking pool, so a slow file system never holds a runtime worker (the
/// watcher reads these files once a second). A failed read task counts as a state of its own.
async fn fingerprint_off_runtime(files: &[PathBuf]) -> u64 {
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || fingerprint(&files))
        .await
        .unwrap_or(u64::MAX)
}

/// A digest of the files' contents (a missing or unreadable file counts as its own state). Not a
/// security boundary — only "did anything change".
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

/// The `SIGHUP` listener, and the `paramchange` of the Windows service manager (passed in as a
/// [`Notify`]). Made before the server says it is listening: a `SIGHUP` that arrives before a
/// handler is installed would end the process (the signal's default action).
pub struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
    param_change: Option<Arc<Notify>>,
}

impl Hangup {
    /// Installs the handler (inside the runtime); `param_change` is notified by the Windows
    /// service's control handler (none on the console).
    pub fn listen(param_change: Option<Arc<Notify>>) -> Self {
        #[cfg(unix)]
        {
            let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(target: "pfgate::reload", error = %e, "cannot listen for SIGHUP; file changes still reload");
                    None
                }
            };
            Self {
                signal,
                param_change,
            }
        }
        #[cfg(not(unix))]
        Self { param_change }
    }

    /// Resolves at each `SIGHUP` or `paramchange`; never where there is neither.
    async fn recv(&mut self) -> Trigger {
        let notify = self.param_change.clone();
        let param_change = async move {
            match notify {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            return tokio::select! {
                _ = s.recv() => Trigger::Signal,
                () = param_change => Trigger::ParamChange,
            };
        }
        param_change.await;
        Trigger::ParamChange
    }
}

/// Watches for `SIGHUP` and file changes until the task is dropped, reloading `path` each time.
pub async fn watch(live: Arc<Live>, path: PathBuf, adjust: Adjust, mut hangup: Hangup) {
    let mut files = watched_files(&path, &live.state().settings);
    let mut seen = fingerprint_off_runtime(&files).await;
    loop {
        let trigger = tokio::select! {
            t = hangup.recv() => t,
            _ = tokio::time::sleep(POLL) => Trigger::FileChanged,
        };
        if trigger == Trigger::FileChanged {
            let now = fingerprint_off_runtime(&files).await;
            if now == seen {
                continue;
            }
            // Settled: unchanged over one more poll.
            tokio::time::sleep(POLL).await;
            let settled = fingerprint_off_runtime(&files).await;
            if settled != now {
                continue;
            }
        }
        reload_once(&live, &path, &adjust, trigger).await;
        files = watched_files(&path, &live.state().settings);
        seen = fingerprint_off_runtime(&files).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Windows service's `paramchange` reaches the watcher as a reload trigger, on every
    /// platform (the SCM side is tested under wine by tests/windows/service.sh).
    #[tokio::test]
    async fn param_change_triggers_a_reload() {
        let notify = Arc::new(Notify::new());
        let mut hangup = Hangup::listen(Some(notify.clone()));
        notify.notify_one();
        let trigger = tokio::time::timeout(Duration::from_secs(5), hangup.recv()).await;
        assert_eq!(trigger.ok(), Some(Trigger::ParamChange));
        assert_eq!(Trigger::ParamChange.as_str(), "service paramchange");
        // Without a notify (the console), nothing but SIGHUP triggers.
        let mut console = Hangup::listen(None);
        let nothing = tokio::time::timeout(Duration::from_millis(100), console.recv()).await;
        assert!(nothing.is_err());
    }
}
