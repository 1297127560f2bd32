//! Why a store call could not be done ([`StoreError::Unavailable`]): what the store was doing and
//! the typed cause — the backend's own error kept as the `source`, or one of the few conditions the
//! store decides itself (a task that panicked, a database that did not answer in time, a schema
//! newer than this build). Callers match on the cause, never on the text; the text (`Display`)
//! is the log's, `doing: doing: cause`, as the string it replaces read.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::secrets::SecretsError;
use super::StoreError;

/// The store could not do what was asked: authentication fails secure.
#[derive(Debug)]
pub struct Unavailable {
    /// What was being done, outermost first (`opening PostgreSQL database …`, `adding a user`).
    doing: Vec<Cow<'static, str>>,
    /// What went wrong.
    pub cause: Cause,
}

/// What went wrong in a store call. No variant carries a bound value, a secret or a row.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Cause {
    /// SQLite refused or failed (rusqlite's text carries SQLite's, never bound parameters).
    #[error("{0}")]
    Sqlite(#[source] rusqlite::Error),
    /// PostgreSQL or the connection to it failed. A server error shows only its message and
    /// SQLSTATE: its DETAIL can quote row values (a sealed secret, a PIN hash).
    #[error("{}", super::postgres::describe(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had.
    #[error("{}", super::postgres::chain(.0))]
    Pool(#[source] deadpool_postgres::PoolError),
    /// The PostgreSQL connection pool could not be built.
    #[error("{0}")]
    PoolBuild(#[source] deadpool_postgres::BuildError),
    /// The PostgreSQL settings are unusable (URL, schema, TLS).
    #[error("{0}")]
    Settings(#[source] super::postgres::SettingsError),
    /// The database password could not be read (the secret source's explanation).
    #[error("{0}")]
    Password(String),
    /// A secret could not be hashed or sealed.
    #[error("{0}")]
    Secrets(#[source] SecretsError),
    /// The blocking task that runs SQLite ended without an answer.
    #[error("{0}")]
    Task(TaskEnd),
    /// The database did not answer within the operation timeout.
    #[error("the database did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The database was written by a newer pfgate.
    #[error(
        "the database schema is version {found}, newer than version {known} that this pfgate \
         knows; upgrade pfgate or use a database written by this version"
    )]
    SchemaTooNew {
        /// The database's schema version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The SQLite build ignores foreign keys (renames and deletes would leave orphans).
    #[error("this SQLite build does not enforce foreign keys")]
    NoForeignKeys,
    /// The SQLite file refused WAL mode.
    #[error("the database refused WAL mode (journal_mode is '{journal_mode}')")]
    WalRefused {
        /// The journal mode it kept.
        journal_mode: String,
    },
    /// A transaction with this id was recorded already.
    #[error("a transaction with this id exists already")]
    DuplicateTransaction,
    /// A provider call's request id was used for another call before.
    #[error("request id {request_id} was used before")]
    RequestIdReused {
        /// The request id.
        request_id: String,
    },
    /// Another pfgate process serves from this SQLite file and holds its lock file in a way that
    /// excludes this one ([`super::sqlite::FileUse`]).
    #[error(
        "{} is held by {owner}, serving from this database file; stop it, or, \
         to serve from one file with several processes on this host, set store.shared_file = true \
         in every one of them (PostgreSQL is the supported way to run several instances, \
         docs/ha.md)",
        lock.display()
    )]
    FileInUse {
        /// The lock file.
        lock: std::path::PathBuf,
        /// Who holds it: `pfgate process <pid>`, or the processes sharing it.
        owner: String,
    },
    /// The lock file next to a SQLite database could not be opened or locked.
    #[error("{0}")]
    LockFile(#[source] std::io::Error),
    /// Another instance kept taking over the call being claimed.
    #[error("the claim kept changing hands")]
    ClaimContended,
}

/// How the blocking task of a store call ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TaskEnd {
    /// It could not be run or joined.
    #[error("task failed")]
    Failed,
    /// It panicked.
    #[error("the store task panicked")]
    Panicked,
    /// The runtime cancelled it (shutting down).
    #[error("the store task was cancelled")]
    Cancelled,
}

impl Unavailable {
    /// `cause`, with no context yet.
    pub fn new(cause: Cause) -> Self {
        Self {
            doing: Vec::new(),
            cause,
        }
    }

    /// Adds what was being done, outside whatever context there is.
    pub fn doing(mut self, what: impl Into<Cow<'static, str>>) -> Self {
        self.doing.insert(0, what.into());
        self
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.doing {
            write!(f, "{d}: ")?;
        }
        write!(f, "{}", self.cause)
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

impl From<Unavailable> for StoreError {
    fn from(u: Unavailable) -> Self {
        StoreError::Unavailable(u)
    }
}

impl StoreError {
    /// [`StoreError::Unavailable`] for `cause`, with no context.
    pub fn unavailable(cause: Cause) -> Self {
        Unavailable::new(cause).into()
    }

    /// [`StoreError::Unavailable`] for `cause` while doing `what`.
    pub fn unavailable_while(what: impl Into<Cow<'static, str>>, cause: Cause) -> Self {
        Unavailable::new(cause).doing(what).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_the_context_then_the_cause() {
        let e = StoreError::unavailable_while("adding a user", Cause::Task(TaskEnd::Panicked));
        assert_eq!(
            e.to_string(),
            "store unavailable: adding a user: the store task panicked"
        );
        let StoreError::Unavailable(u) = e else {
            panic!("not Unavailable")
        };
        let outer = u.doing("opening the SQLite database");
        assert_eq!(
            outer.to_string(),
            "opening the SQLite database: adding a user: the store task panicked"
        );
        assert!(matches!(outer.cause, Cause::Task(TaskEnd::Panicked)));
        assert_eq!(
            Unavailable::new(Cause::Timeout(Duration::from_secs(5))).to_string(),
            "the database did not answer within 5 s"
        );
    }
}
