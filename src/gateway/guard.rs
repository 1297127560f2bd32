//! What keeps clients that have not signed in from starving the server (issue #17, items 6-8):
//!
//! - [`PasswordChecks`]: Basic passwords are checked (argon2id, ~19 MiB and tens of milliseconds
//!   each) on a few dedicated threads behind a bounded queue, never on the async workers. Sixteen
//!   connections looping wrong passwords had pushed a probe from 1 ms to 556 ms and RSS to 1.5 GB:
//!   each worker thread ran its own hashes with its own allocator arena. A full queue is answered
//!   503 at once.
//! - [`SignInThrottle`]: failed sign-ins are counted per source address; past the limit within
//!   the window, that address's Basic sign-ins are answered 429 with `Retry-After` without being
//!   checked. Nothing is cached that could let a wrong password pass: a success is never
//!   remembered, only failures are counted.
//! - [`RefusalAudit`]: refusals of unauthenticated callers are audited one by one up to a number
//!   per source address and minute; the rest of the minute becomes one summary record with the
//!   count, so a flood of 401s cannot fill the disk.
//! - [`Connections`]: connections that have not signed in are bounded per address and may not
//!   take the share of the connection cap kept for signed-in callers and trusted proxies.
//!
//! One [`Guard`] per server, kept across reloads (its counters are the server's, not the
//! configuration's); the limits are read from the settings in force at each use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::basic::{self, BasicAccount, BasicCredentials};
use crate::config::Limits;

/// Most source addresses tracked at once by the throttle and the refusal audit. Past this, the
/// expired entries are dropped; if none has expired, new addresses share one overflow entry (so a
/// flood from many addresses is still counted, and still limited, as one).
const MAX_TRACKED: usize = 65_536;

/// The server's guards.
#[derive(Debug)]
pub struct Guard {
    /// The password-checking threads.
    pub passwords: PasswordChecks,
    /// Failed sign-ins per source address.
    pub sign_ins: SignInThrottle,
    /// Audited refusals per source address.
    pub refusals: RefusalAudit,
    /// Connections by class and address.
    pub connections: Arc<Connections>,
}

impl Guard {
    /// Starts the password threads (`limits.password_check_threads`, fixed for the server's life).
    pub fn new(limits: &Limits) -> Self {
        Self {
            passwords: PasswordChecks::start(
                limits.password_check_threads,
                limits.password_check_queue,
            ),
            sign_ins: SignInThrottle::default(),
            refusals: RefusalAudit::default(),
            connections: Arc::new(Connections::default()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

// ---- password checks ---------------------------------------------------------------------------

/// A check, run with the thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut basic::PasswordMemory) + Send>;

/// A fixed pool of threads that run password checks, fed through two bounded queues: callers
/// whose address has no failed sign-in in the window go first, so a flood of wrong passwords
/// queues behind itself, not in front of the callers who sign in.
#[derive(Debug)]
pub struct PasswordChecks {
    shared: Arc<Queues>,
}

/// Which queue a check waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The source address has no failed sign-in in the window.
    Clean,
    /// It has: its checks wait until no clean one does.
    Failing,
}

struct Queues {
    state: Mutex<QueueState>,
    ready: std::sync::Condvar,
    capacity: usize,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct QueueState {
    clean: std::collections::VecDeque<Job>,
    failing: std::collections::VecDeque<Job>,
    closed: bool,
}

/// Why a password could not be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckError {
    /// The queue is full: answer 503 with `Retry-After`.
    Busy,
}

impl PasswordChecks {
    /// Starts `threads` threads; each queue holds up to `queue` waiting checks. The threads end
    /// when the pool is dropped.
    pub fn start(threads: usize, queue: usize) -> Self {
        let shared = Arc::new(Queues {
            state: Mutex::new(QueueState::default()),
            ready: std::sync::Condvar::new(),
            capacity: queue.max(1),
        });
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("pfgate-password-{i}"))
                .spawn(move || {
                    let mut memory = basic::PasswordMemory::default();
                    while let Some(job) = shared.next() {
                        job(&mut memory);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-checking thread");
            }
        }
        Self { shared }
    }

    /// The account `creds` prove, checked on a password thread. Always one argon2id verification,
    /// whether the user exists, and whether the password is empty ([`basic::verify`]).
    pub async fn verify(
        &self,
        accounts: &[BasicAccount],
        creds: BasicCredentials,
        priority: Priority,
    ) -> Result<Option<String>, CheckError> {
        let accounts = accounts.to_vec();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let found = basic::verify(&accounts, &creds, memory).map(|a| a.principal.clone());
            let _ = tx.send(found);
        });
        self.shared.push(job, priority)?;
        // A dropped job (the pool shutting down) is a failed check, never a pass.
        Ok(rx.await.unwrap_or(None))
    }
}

impl Drop for PasswordChecks {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.ready.notify_all();
    }
}

impl Queues {
    fn push(&self, job: Job, priority: Priority) -> Result<(), CheckError> {
        let mut st = lock(&self.state);
        let queue = match priority {
            Priority::Clean => &mut st.clean,
            Priority::Failing => &mut st.failing,
        };
        if queue.len() >= self.capacity {
            return Err(CheckError::Busy);
        }
        queue.push_back(job);
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, clean sources first; `None` once the pool is dropped.
    fn next(&self) -> Option<Job> {
        let mut st = lock(&self.state);
        loop {
            if st.closed {
                return None;
            }
            if let Some(job) = st.clean.pop_front().or_else(|| st.failing.pop_front()) {
                return Some(job);
            }
            st = match self.ready.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }
}

// ---- failed sign-ins ---------------------------------------------------------------------------

/// Failures of one address within its window.
#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// Failed sign-ins per source address, in fixed windows.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    table: Mutex<HashMap<IpAddr, Failures>>,
    last_sweep: Mutex<Option<Instant>>,
}

/// The overflow entry's key (see [`MAX_TRACKED`]): an address no caller has.
const OVERFLOW: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

impl SignInThrottle {
    /// `Some(retry_after)` when `source` has used up its failed sign-ins for the window.
    pub fn blocked(&self, source: IpAddr, limits: &Limits) -> Option<Duration> {
        let table = lock(&self.table);
        let key = if table.contains_key(&source) {
            source
        } else {
            OVERFLOW
        };
        let f = table.get(&key)?;
        let elapsed = f.since.elapsed();
        (elapsed < limits.failed_sign_in_window && f.count >= limits.failed_sign_ins_per_address)
            .then(|| limits.failed_sign_in_window - elapsed)
    }

    /// The queue `source`'s password checks wait in: behind clean sources once it has failed.
    pub fn priority(&self, source: IpAddr, limits: &Limits) -> Priority {
        let table = lock(&self.table);
        match table.get(&source).or_else(|| table.get(&OVERFLOW)) {
            Some(f) if f.since.elapsed() < limits.failed_sign_in_window => Priority::Failing,
            _ => Priority::Clean,
        }
    }

    /// Counts a failed sign-in from `source`.
    pub fn failed(&self, source: IpAddr, limits: &Limits) {
        let mut table = lock(&self.table);
        let window = limits.failed_sign_in_window;
        let key = tracked_key(&mut table, &self.last_sweep, source, |f| {
            f.since.elapsed() >= window
        });
        let now = Instant::now();
        let f = table.entry(key).or_insert(Failures {
            since: now,
            count: 0,
        });
        if f.since.elapsed() >= window {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count = f.count.saturating_add(1);
    }
}

/// How often a full table is swept for expired entries at most: a sweep walks all
/// [`MAX_TRACKED`] entries, and without this bound a flood from ever-new addresses (cheap with
/// IPv6) would pay that walk on every request while the table stays full.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The key to count `source` under: itself, or [`OVERFLOW`] when the table is full of entries that
/// have not `expired` yet. `last_sweep` (locked while the table is) bounds how often a full table
/// is swept.
fn tracked_key<V>(
    table: &mut HashMap<IpAddr, V>,
    last_sweep: &Mutex<Option<Instant>>,
    source: IpAddr,
    expired: impl Fn(&V) -> bool,
) -> IpAddr {
    if table.contains_key(&source) || table.len() < MAX_TRACKED {
        return source;
    }
    let mut last = lock(last_sweep);
    if last.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
        return OVERFLOW;
    }
    *last = Some(Instant::now());
    drop(last);
    table.retain(|k, v| *k == OVERFLOW || !expired(v));
    if table.len() < MAX_TRACKED {
        source
    } else {
        OVERFLOW
    }
}

// ---- audited refusals --------------------------------------------------------------------------

/// Refusals of one source address in the current minute.
#[derive(Debug, Clone, Copy)]
struct Minute {
    since: Instant,
    recorded: u32,
    suppressed: u64,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditDecision {
    /// Record it (first `suppressed` is the summary of the source's previous minute to write
    /// first, when that minute had refusals past the limit).
    Record {
        /// Refusals of the previous minute not recorded one by one.
        suppressed: u64,
    },
    /// Count it into the minute's summary.
    Suppress,
}

/// Refusals per source address and minute, for the audit.
#[derive(Debug, Default)]
pub struct RefusalAudit {
    table: Mutex<HashMap<IpAddr, Minute>>,
    last_sweep: Mutex<Option<Instant>>,
}

/// The summary period.
const MINUTE: Duration = Duration::from_secs(60);

impl RefusalAudit {
    /// Whether to audit one more refusal from `source`.
    pub fn admit(&self, source: IpAddr, per_minute: u32) -> AuditDecision {
        let mut table = lock(&self.table);
        let key = tracked_key(&mut table, &self.last_sweep, source, |m| {
            m.since.elapsed() >= MINUTE && m.suppressed == 0
        });
        let now = Instant::now();
        let m = table.entry(key).or_insert(Minute {
            since: now,
            recorded: 0,
            suppressed: 0,
        });
        let mut previous = 0;
        if m.since.elapsed() >= MINUTE {
            previous = m.suppressed;
            *m = Minute {
                since: now,
                recorded: 0,
                suppressed: 0,
            };
        }
        if m.recorded < per_minute {
            m.recorded += 1;
            AuditDecision::Record {
                suppressed: previous,
            }
        } else {
            m.suppressed += 1;
            AuditDecision::Suppress
        }
    }

    /// The summaries due: sources whose minute has ended with refusals not recorded one by one
    /// (all of them with `all`, at shutdown). Each is returned once.
    pub fn due(&self, all: bool) -> Vec<(IpAddr, u64)> {
        let mut table = lock(&self.table);
        let mut out = Vec::new();
        table.retain(|ip, m| {
            let ended = m.since.elapsed() >= MINUTE;
            if (ended || all) && m.suppressed > 0 {
                out.push((*ip, m.suppressed));
                m.suppressed = 0;
            }
            !ended
        });
        out
    }
}

// ---- connections -------------------------------------------------------------------------------

/// Connections by class: those that have not signed in ("guests") are bounded per address and in
/// all; trusted proxies and signed-in connections are not (they are bounded by the cap only).
#[derive(Debug, Default)]
pub struct Connections {
    guests: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// How a new connection is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the guests' share and its address's cap: served as usual until it signs in, with the
    /// short idle timeout.
    Guest,
    /// Past the guests' share or its address's cap: it must sign in on its first request (or be in
    /// a sign-in handshake); otherwise the connection is closed after that request's answer.
    Probation,
}

/// A guest connection's place in [`Connections`], given back when it signs in or closes.
#[derive(Debug)]
pub struct GuestSlot {
    table: Arc<Connections>,
    ip: IpAddr,
    released: std::sync::atomic::AtomicBool,
}

impl Connections {
    /// Admits a connection from `ip` that has not signed in.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> (Admission, GuestSlot) {
        let reserved = limits
            .max_connections
            .saturating_mul(usize::from(limits.reserved_connections_percent))
            / 100;
        let share = limits.max_connections.saturating_sub(reserved).max(1);
        let guests = self.guests.fetch_add(1, Ordering::SeqCst) + 1;
        let from_ip = {
            let mut table = lock(&self.per_address);
            let n = table.entry(ip).or_insert(0);
            *n += 1;
            *n
        };
        let admission = if guests > share || from_ip > limits.max_unauthenticated_per_address {
            Admission::Probation
        } else {
            Admission::Guest
        };
        let slot = GuestSlot {
            table: self.clone(),
            ip,
            released: std::sync::atomic::AtomicBool::new(false),
        };
        (admission, slot)
    }

    /// Connections that have not signed in, now.
    pub fn guests(&self) -> usize {
        self.guests.load(Ordering::SeqCst)
    }
}

impl GuestSlot {
    /// The connection signed in (or closed): it no longer counts as a guest. Idempotent.
    pub fn release(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        self.table.guests.fetch_sub(1, Ordering::SeqCst);
        let mut table = lock(&self.table.per_address);
        if let Some(n) = table.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }

    /// True once released.
    pub fn released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }
}

impl Drop for GuestSlot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full table is swept at most once per [`SWEEP_EVERY`]: a new address right after a sweep
    /// is counted under the overflow entry even when every entry has expired since, so a flood of
    /// ever-new addresses cannot make each request walk the whole table.
    #[test]
    fn a_full_table_is_swept_at_most_once_a_second() {
        let mut table: HashMap<IpAddr, ()> = (0..MAX_TRACKED as u32)
            .map(|i| (IpAddr::from(i.to_be_bytes()), ()))
            .collect();
        let last_sweep = Mutex::new(None);
        let newcomer = |n: u8| IpAddr::from([10, 255, 255, n]);
        // Nothing expired: swept, still full, the overflow entry.
        assert_eq!(
            tracked_key(&mut table, &last_sweep, newcomer(1), |_| false),
            OVERFLOW
        );
        assert_eq!(table.len(), MAX_TRACKED);
        // Everything expired now, but a sweep just ran: no walk, the overflow entry.
        assert_eq!(
            tracked_key(&mut table, &last_sweep, newcomer(2), |_| true),
            OVERFLOW
        );
        assert_eq!(table.len(), MAX_TRACKED);
        // Once the period has passed, the sweep frees the table and the newcomer is itself.
        *lock(&last_sweep) = Instant::now().checked_sub(SWEEP_EVERY);
        assert_eq!(
            tracked_key(&mut table, &last_sweep, newcomer(3), |_| true),
            newcomer(3)
        );
        assert!(table.is_empty());
    }

    fn limits() -> Limits {
        Limits {
            failed_sign_ins_per_address: 3,
            max_connections: 10,
            reserved_connections_percent: 20,
            max_unauthenticated_per_address: 4,
            ..Limits::default()
        }
    }

    #[test]
    fn throttle_blocks_an_address_past_its_failures_and_only_that_one() {
        let t = SignInThrottle::default();
        let l = limits();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            t.failed(a, &l);
        }
        assert!(t.blocked(a, &l).is_none());
        t.failed(a, &l);
        let wait = t.blocked(a, &l).unwrap();
        assert!(wait <= l.failed_sign_in_window && wait > Duration::from_secs(50));
        assert!(t.blocked(b, &l).is_none());
    }

    #[test]
    fn refusal_audit_records_the_first_n_then_summarises() {
        let r = RefusalAudit::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(r.admit(a, 3), AuditDecision::Record { suppressed: 0 });
        }
        for _ in 0..5 {
            assert_eq!(r.admit(a, 3), AuditDecision::Suppress);
        }
        assert!(r.due(false).is_empty(), "the minute has not ended");
        assert_eq!(r.due(true), vec![(a, 5)]);
        assert!(r.due(true).is_empty(), "each summary once");
    }

    #[test]
    fn guests_past_their_share_or_address_cap_are_on_probation() {
        let c = Arc::new(Connections::default());
        let l = limits();
        let mut slots = Vec::new();
        for i in 0..4 {
            let (adm, slot) = c.admit("192.0.2.1".parse().unwrap(), &l);
            assert_eq!(adm, Admission::Guest, "{i}");
            slots.push(slot);
        }
        let (adm, fifth) = c.admit("192.0.2.1".parse().unwrap(), &l);
        assert_eq!(adm, Admission::Probation, "past the per-address cap");
        for i in 0..3 {
            let (adm, slot) = c.admit(format!("192.0.2.{}", 10 + i).parse().unwrap(), &l);
            assert_eq!(adm, Admission::Guest);
            slots.push(slot);
        }
        let (adm, _) = c.admit("192.0.2.99".parse().unwrap(), &l);
        assert_eq!(
            adm,
            Admission::Probation,
            "past the guests' share (8 of 10)"
        );
        // A guest that signs in gives its place back.
        slots[0].release();
        slots[0].release();
        drop((slots, fifth));
        assert_eq!(c.guests(), 0);
    }

    #[test]
    fn clean_sources_are_checked_before_failing_ones() {
        let q = Queues {
            state: Mutex::new(QueueState::default()),
            ready: std::sync::Condvar::new(),
            capacity: 2,
        };
        let order = Arc::new(Mutex::new(Vec::new()));
        let job = |name: &'static str| -> Job {
            let order = order.clone();
            Box::new(move |_| lock(&order).push(name))
        };
        q.push(job("failing 1"), Priority::Failing).unwrap();
        q.push(job("failing 2"), Priority::Failing).unwrap();
        assert_eq!(
            q.push(job("failing 3"), Priority::Failing),
            Err(CheckError::Busy)
        );
        q.push(job("clean"), Priority::Clean).unwrap();
        let mut memory = basic::PasswordMemory::default();
        for _ in 0..3 {
            (q.next().unwrap())(&mut memory);
        }
        assert_eq!(*lock(&order), ["clean", "failing 1", "failing 2"]);
    }

    #[tokio::test]
    async fn password_checks_run_on_the_pool_and_refuse_when_full() {
        let hash = crate::store::secrets::hash_pin("right").unwrap();
        let accounts = vec![BasicAccount {
            principal: "svc".into(),
            password_hash: hash,
        }];
        let pool = PasswordChecks::start(1, 4);
        let creds = |pw: &str| BasicCredentials {
            user: "svc".into(),
            password: pw.into(),
        };
        assert_eq!(
            pool.verify(&accounts, creds("right"), Priority::Clean)
                .await,
            Ok(Some("svc".into()))
        );
        assert_eq!(
            pool.verify(&accounts, creds("wrong"), Priority::Failing)
                .await,
            Ok(None)
        );
        // Twenty at once against one thread and four places: some are refused at once, none passes.
        let pool = Arc::new(pool);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (pool, accounts, c) = (pool.clone(), accounts.clone(), creds("x"));
            set.spawn(async move { pool.verify(&accounts, c, Priority::Failing).await });
        }
        let results = set.join_all().await;
        assert!(results.contains(&Err(CheckError::Busy)), "{results:?}");
        assert!(results.iter().all(|r| r != &Ok(Some("svc".into()))));
    }
}
