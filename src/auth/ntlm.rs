//! NTLM acceptor: pfgate's own NTLMv2 verifier ([MS-NLMP]), server side only.
//!
//! MIM 2016 calls the old `PfWsSdk.asmx` with Windows Integrated authentication as its service
//! account. When Kerberos is not available, that is NTLM: in `Authorization: NTLM …` or wrapped in
//! SPNEGO in `Authorization: Negotiate …` (see [`super::spnego`]). This module checks those
//! messages against configured accounts (a password or an NT hash per `DOMAIN\user`).
//!
//! # Why our own verifier
//!
//! The `sspi` crate's acceptor computes the NTLMv2 response and throws it away. It checks only the
//! MIC, and the client decides whether to send one, so a client that sends no MIC (Mono's NTLMv2
//! client doesn't) logs in with any password, as any user. The verification is small, so pfgate
//! does it itself and tests it against the spec's vectors and against real clients' messages.
//!
//! # The exchange ([MS-NLMP] §1.3.1.1, §3.2.5)
//!
//! ```text
//! client                               pfgate (per connection)
//! NEGOTIATE_MESSAGE (§2.2.1.1)     ──►  NtlmState::Initial
//!                                  ◄──  CHALLENGE_MESSAGE (§2.2.1.2); NtlmState::ChallengeSent
//! AUTHENTICATE_MESSAGE (§2.2.1.3)  ──►  verify (§3.2.5.1.2, §3.3.2): Authenticated | Rejected
//! ```
//!
//! Each state is consumed by [`NtlmAcceptor::step`], which returns the next step. The server
//! challenge is random, lives only inside [`PendingChallenge`] (which cannot be cloned or built
//! from outside), and is used once. An AUTHENTICATE message can therefore only answer the
//! challenge that this connection issued.
//!
//! # What is verified
//!
//! * Only NTLMv2 (§3.3.2). An LM or NTLMv1 response (a 24-byte `NtChallengeResponse`) is refused,
//!   and so is an anonymous logon (§3.2.5.1.2: empty user name, or no NT response).
//! * `NTOWFv2 = HMAC_MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPERCASE(user) ‖ domain))` and
//!   `NTProofStr = HMAC_MD5(NTOWFv2, ServerChallenge ‖ temp)`, compared in constant time.
//! * The account is looked up by the `(domain, user)` the client sent, through [`NtlmAccounts`].
//!   The domain must match the configured one (case-insensitive), unless the account's domain is
//!   `*`.
//! * The time stamp in the client's blob (§2.2.2.7) must be within
//!   [`NtlmServerConfig::max_clock_skew`] of our clock. The challenge itself expires after
//!   [`NtlmServerConfig::challenge_lifetime`].
//! * The MIC (§3.1.5.1.2, §3.2.5.1.2): if the client's AV_PAIRs carry `MsvAvFlags` with bit `0x2`,
//!   the AUTHENTICATE message must carry a MIC equal to `HMAC_MD5(ExportedSessionKey,
//!   NEGOTIATE ‖ CHALLENGE ‖ AUTHENTICATE with a zeroed MIC)`. The AV_PAIRs are covered by
//!   `NTProofStr`, so an attacker cannot remove that flag. A client that does not set the flag
//!   (Mono) needs no MIC. Its response is still fully checked.
//! * Each accepted response is accepted once ([`ReplayCache`]). Replay across connections is
//!   already impossible because each challenge is fresh. The cache is a second line of defence.
//!
//! # What is not done
//!
//! * Channel binding (Extended Protection, `MsvAvChannelBindings`) and the `MsvAvTargetName` SPN
//!   are not checked. The TLS session is pfgate's own.
//! * Message signing and sealing after authentication: HTTP does not use them. [`SessionKey`] only
//!   computes and checks the single signature that SPNEGO's `mechListMIC` needs (§3.4.4.2).
//! * Verification against a domain controller (Netlogon pass-through): accounts are local.
//!
//! Rejection reasons ([`RejectReason`]) never carry a password, a hash or response bytes.
//!
//! [MS-NLMP]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-nlmp/

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use rc4::{Rc4, StreamCipher};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

// ---------------------------------------------------------------------------------------------
// Wire constants
// ---------------------------------------------------------------------------------------------

/// `NegotiateFlags` bits ([MS-NLMP] §2.2.2.5).
pub(crate) mod flags {
    pub(crate) const UNICODE: u32 = 0x0000_0001;
    pub(crate) const OEM: u32 = 0x0000_0002;
    pub(crate) const REQUEST_TARGET: u32 = 0x0000_0004;
    pub(crate) const SIGN: u32 = 0x0000_0010;
    pub(crate) const SEAL: u32 = 0x0000_0020;
    pub(crate) const NTLM: u32 = 0x0000_0200;
    pub(crate) const ANONYMOUS: u32 = 0x0000_0800;
    pub(crate) const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub(crate) const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub(crate) const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub(crate) const TARGET_INFO: u32 = 0x0080_0000;
    pub(crate) const VERSION: u32 = 0x0200_0000;
    pub(crate) const NEGOTIATE_128: u32 = 0x2000_0000;
    pub(crate) const KEY_EXCH: u32 = 0x4000_0000;
    pub(crate) const NEGOTIATE_56: u32 = 0x8000_0000;
}

/// `AV_PAIR.AvId` values ([MS-NLMP] §2.2.2.1).
pub(crate) mod av {
    pub(crate) const EOL: u16 = 0;
    pub(crate) const NB_COMPUTER_NAME: u16 = 1;
    pub(crate) const NB_DOMAIN_NAME: u16 = 2;
    pub(crate) const DNS_COMPUTER_NAME: u16 = 3;
    pub(crate) const DNS_DOMAIN_NAME: u16 = 4;
    pub(crate) const FLAGS: u16 = 6;
    pub(crate) const TIMESTAMP: u16 = 7;
    /// `MsvAvFlags` bit: "the client is providing message integrity in the MIC field".
    pub(crate) const FLAG_MIC_PRESENT: u32 = 0x0000_0002;
}

/// Every NTLM message starts with this ([MS-NLMP] §2.2.1).
pub(crate) const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const TYPE_NEGOTIATE: u32 = 1;
const TYPE_CHALLENGE: u32 = 2;
const TYPE_AUTHENTICATE: u32 = 3;

/// Larger messages are refused before parsing. Real ones are well under 4 KiB.
const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// NEGOTIATE_MESSAGE without the optional Version field.
const NEGOTIATE_HEADER_LEN: usize = 32;
/// CHALLENGE_MESSAGE header including Version: the payload starts here.
const CHALLENGE_HEADER_LEN: usize = 56;
/// AUTHENTICATE_MESSAGE up to and including `NegotiateFlags`.
const AUTHENTICATE_MIN_LEN: usize = 64;
/// Where the MIC sits in an AUTHENTICATE_MESSAGE that has one (after the Version field).
const MIC_OFFSET: usize = 72;
const MIC_END: usize = MIC_OFFSET + 16;
/// `NTProofStr` (16) plus the fixed part of `NTLMv2_CLIENT_CHALLENGE` (28) ([MS-NLMP] §2.2.2.7).
const NTLMV2_RESPONSE_MIN_LEN: usize = 16 + 28;
/// An NTLMv1 / NTLM2-session `NtChallengeResponse` is exactly 24 bytes (§2.2.2.6).
const NTLMV1_RESPONSE_LEN: usize = 24;
/// What pfgate announces in CHALLENGE_MESSAGE.Version: Windows 10 / Server 2022 build 20348,
/// `NTLMSSP_REVISION_W2K3` (§2.2.2.10). Only informational.
const SERVER_VERSION: [u8; 8] = [10, 0, 0x7c, 0x4f, 0, 0, 0, 0x0f];
/// Seconds between 1601-01-01 (FILETIME epoch) and 1970-01-01, in 100 ns units.
const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;
/// AV_PAIR values from configuration are cut to this many UTF-16 units (NetBIOS names are 15).
const MAX_AV_NAME_UNITS: usize = 255;

// ---------------------------------------------------------------------------------------------
// Errors and results
// ---------------------------------------------------------------------------------------------

/// Why an NTLM exchange was refused. Goes to logs; the client only ever sees a 401.
///
/// No variant carries a password, a hash or response bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The message is not a well-formed NTLM message; the text says which part.
    #[error("malformed NTLM message: {0}")]
    BadMessage(&'static str),
    /// A message arrived in the wrong state (an AUTHENTICATE without a challenge, a CHALLENGE sent
    /// to the server).
    #[error("NTLM message out of sequence")]
    UnexpectedMessage,
    /// Anonymous logon (empty user name or no NT response, or the ANONYMOUS flag).
    #[error("anonymous NTLM logon refused")]
    Anonymous,
    /// LM-only or NTLMv1 (including NTLM2 session security) response: only NTLMv2 is accepted.
    #[error("LM/NTLMv1 response refused: only NTLMv2 is accepted")]
    NtlmV1Refused,
    /// No account is configured for this `(domain, user)`.
    #[error("unknown NTLM account")]
    UnknownAccount,
    /// The NTLMv2 response does not match the account's password.
    #[error("wrong password")]
    WrongPassword,
    /// The time stamp in the client's NTLMv2 blob is outside the allowed clock skew.
    #[error("NTLMv2 time stamp outside the allowed clock skew")]
    StaleTimestamp,
    /// The AUTHENTICATE message arrived after the challenge's lifetime.
    #[error("NTLM challenge expired")]
    ChallengeExpired,
    /// This exact response was already accepted once.
    #[error("NTLM response replayed")]
    Replay,
    /// The client announced a MIC (MsvAvFlags 0x2) and the MIC is missing or wrong.
    #[error("NTLM MIC missing or wrong")]
    BadMic,
    /// A bug in pfgate (a cipher refused a key of a fixed, valid size). Never the client's fault.
    #[error("internal error in the NTLM acceptor")]
    Internal,
}

/// An authenticated caller, as the client named itself (compare case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The domain from the AUTHENTICATE message (may be empty).
    pub domain: String,
    /// The user name from the AUTHENTICATE message.
    pub user: String,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            f.write_str(&self.user)
        } else {
            write!(f, "{}\\{}", self.domain, self.user)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------

/// Where the acceptor finds an account's NT hash.
///
/// An implementation returns the hash only if `(domain, user)` identifies a configured account:
/// user names compare case-insensitively, and domains too, unless the account accepts any
/// domain. The domain is the one the client sent (it may be empty). It is also part of the
/// NTLMv2 hash, so it cannot be changed after the fact. Shared by all connections, hence
/// `Send + Sync`.
pub trait NtlmAccounts: Send + Sync {
    /// The account's NT hash (`MD4(UTF-16LE(password))`), or `None` if there is no such account.
    fn nt_hash(&self, domain: &str, user: &str) -> Option<[u8; 16]>;
}

/// `NTOWFv1`/NT hash ([MS-NLMP] §3.3.1): `MD4(UTF-16LE(password))`.
pub fn nt_hash_of_password(password: &str) -> [u8; 16] {
    let mut utf16 = Zeroizing::new(utf16le(password));
    let hash: [u8; 16] = Md4::digest(utf16.as_slice()).into();
    utf16.zeroize();
    hash
}

/// A fixed set of accounts in memory, keyed by `(DOMAIN, USER)` upper-cased.
///
/// An account added with domain `"*"` matches any domain the client sends (including none). An
/// exact domain match wins over `"*"`.
#[derive(Default)]
pub struct NtlmAccountMap {
    accounts: HashMap<(String, String), [u8; 16]>,
}

impl NtlmAccountMap {
    /// The domain that matches any domain.
    pub const ANY_DOMAIN: &'static str = "*";

    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an account by its password.
    pub fn insert_password(&mut self, domain: &str, user: &str, password: &str) {
        self.insert_nt_hash(domain, user, nt_hash_of_password(password));
    }

    /// Adds (or replaces) an account by its NT hash.
    pub fn insert_nt_hash(&mut self, domain: &str, user: &str, nt_hash: [u8; 16]) {
        let key = (upcase(domain), upcase(user));
        if let Some(mut old) = self.accounts.insert(key, nt_hash) {
            old.zeroize();
        }
    }

    /// How many accounts are configured.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// True when no account is configured.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

impl NtlmAccounts for NtlmAccountMap {
    fn nt_hash(&self, domain: &str, user: &str) -> Option<[u8; 16]> {
        let user = upcase(user);
        self.accounts
            .get(&(upcase(domain), user.clone()))
            .or_else(|| self.accounts.get(&(Self::ANY_DOMAIN.to_owned(), user)))
            .copied()
    }
}

impl fmt::Debug for NtlmAccountMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self
            .accounts
            .keys()
            .map(|(d, u)| format!("{d}\\{u}"))
            .collect();
        names.sort();
        f.debug_struct("NtlmAccountMap")
            .field("accounts", &names)
            .finish_non_exhaustive()
    }
}

impl Drop for NtlmAccountMap {
    fn drop(&mut self) {
        for hash in self.accounts.values_mut() {
            hash.zeroize();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration, clock, replay cache
// ---------------------------------------------------------------------------------------------

/// What the server says about itself in the CHALLENGE_MESSAGE, and its time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmServerConfig {
    /// NetBIOS domain name: the CHALLENGE's `TargetName` and `MsvAvNbDomainName`.
    pub nb_domain: String,
    /// NetBIOS computer name (`MsvAvNbComputerName`).
    pub nb_computer: String,
    /// DNS domain name (`MsvAvDnsDomainName`).
    pub dns_domain: String,
    /// DNS computer name (`MsvAvDnsComputerName`).
    pub dns_computer: String,
    /// How far the client's NTLMv2 time stamp may be from our clock, either way. Default 5 minutes
    /// (the Kerberos default, which Windows domains keep their clocks within).
    pub max_clock_skew: Duration,
    /// How long an issued challenge can be answered. Default 5 minutes.
    pub challenge_lifetime: Duration,
}

impl NtlmServerConfig {
    /// Default [`max_clock_skew`](Self::max_clock_skew).
    pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
    /// Default [`challenge_lifetime`](Self::challenge_lifetime).
    pub const DEFAULT_CHALLENGE_LIFETIME: Duration = Duration::from_secs(5 * 60);

    /// A configuration with the default time limits.
    pub fn new(
        nb_domain: impl Into<String>,
        nb_computer: impl Into<String>,
        dns_domain: impl Into<String>,
        dns_computer: impl Into<String>,
    ) -> Self {
        Self {
            nb_domain: nb_domain.into(),
            nb_computer: nb_computer.into(),
            dns_domain: dns_domain.into(),
            dns_computer: dns_computer.into(),
            max_clock_skew: Self::DEFAULT_MAX_CLOCK_SKEW,
            challenge_lifetime: Self::DEFAULT_CHALLENGE_LIFETIME,
        }
    }
}

/// The two clocks a step reads: wall time for NTLM time stamps, monotonic time for expiry.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock time (compared with the client's FILETIME).
    pub wall: SystemTime,
    /// Monotonic time (challenge lifetime, replay cache expiry).
    pub mono: Instant,
}

impl Clock {
    /// The current time.
    pub fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// Remembers accepted NTLMv2 responses so that each is accepted once.
///
/// Shared by all connections (it is `Sync`). Bounded: entries expire after `ttl`, and when the
/// cache is full the oldest entry is dropped. That is safe because a response can only answer the
/// challenge it was computed for, and each challenge is used once. Entries are digests, not
/// responses.
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<ReplayInner>,
    capacity: usize,
    ttl: Duration,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<(Instant, [u8; 16])>,
}

impl ReplayCache {
    /// Default number of remembered responses.
    pub const DEFAULT_CAPACITY: usize = 65_536;
    /// Default lifetime of an entry: a response is fresh for ±5 minutes of clock skew, so within a
    /// 10-minute span.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

    /// A cache holding at most `capacity` entries (at least 1), each for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(ReplayInner::default()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// How many entries are held now (expired ones included until the next insert).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cache sized for `config`: entries live twice the allowed clock skew, the longest span in
    /// which one NTLMv2 time stamp is accepted.
    pub fn for_config(config: &NtlmServerConfig) -> Self {
        Self::new(
            Self::DEFAULT_CAPACITY,
            config.max_clock_skew.saturating_mul(2),
        )
    }

    /// Records `key`; false if it was already there (a replay).
    fn check_and_insert(&self, key: [u8; 16], now: Instant) -> bool {
        let mut inner = self.lock();
        while let Some(&(expires, old)) = inner.order.front() {
            if expires > now && inner.order.len() < self.capacity {
                break;
            }
            inner.order.pop_front();
            inner.seen.remove(&old);
        }
        if !inner.seen.insert(key) {
            return false;
        }
        let expires = now.checked_add(self.ttl).unwrap_or(now);
        inner.order.push_back((expires, key));
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayInner> {
        // A panic while holding the lock cannot leave the set inconsistent in a harmful way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY, Self::DEFAULT_TTL)
    }
}

// ---------------------------------------------------------------------------------------------
// The state machine
// ---------------------------------------------------------------------------------------------

/// Where one connection is in the NTLM exchange. Keep it with the connection; start with
/// [`NtlmState::Initial`] and after `Authenticated` or `Rejected` start again from `Initial`.
#[derive(Debug, Default)]
pub enum NtlmState {
    /// Nothing received yet: a NEGOTIATE_MESSAGE is expected.
    #[default]
    Initial,
    /// A challenge was sent: an AUTHENTICATE_MESSAGE is expected (a new NEGOTIATE restarts).
    ChallengeSent(PendingChallenge),
}

/// A challenge that was sent and not yet answered: the messages so far (for the MIC), the server
/// challenge and when it was issued. Only the acceptor creates one, and it is used once.
pub struct PendingChallenge {
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    server_challenge: [u8; 8],
    flags: u32,
    issued: Instant,
}

impl fmt::Debug for PendingChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingChallenge")
            .field("flags", &format_args!("{:#010x}", self.flags))
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
impl PendingChallenge {
    /// The state the acceptor would hold after sending `challenge` (for captured exchanges).
    pub(crate) fn for_tests(negotiate: &[u8], challenge: &[u8]) -> Self {
        let ch = test_client::read_challenge(challenge);
        Self {
            negotiate: negotiate.to_vec(),
            challenge: challenge.to_vec(),
            server_challenge: ch.server_challenge,
            flags: ch.flags,
            issued: Instant::now(),
        }
    }

    /// A clock set to the challenge's MsvAvTimestamp.
    pub(crate) fn clock_for_tests(&self) -> Clock {
        let ch = test_client::read_challenge(&self.challenge);
        let ticks = ch.timestamp.unwrap_or(FILETIME_UNIX_EPOCH) - FILETIME_UNIX_EPOCH;
        Clock {
            wall: UNIX_EPOCH + Duration::from_nanos(ticks * 100),
            mono: Instant::now(),
        }
    }
}

/// What to do after a step.
#[derive(Debug)]
#[must_use]
pub enum NtlmStep {
    /// Send `token` (a CHALLENGE_MESSAGE) in a 401 and keep `state` with the connection.
    Challenge {
        /// The CHALLENGE_MESSAGE bytes.
        token: Vec<u8>,
        /// The state to keep for the next request on this connection.
        state: NtlmState,
    },
    /// The client proved it knows the account's password.
    Authenticated {
        /// Who the client is.
        principal: Principal,
        /// The session key, for SPNEGO's `mechListMIC`. Nothing else needs it.
        session: SessionKey,
    },
    /// The exchange failed: answer 401 and start again from [`NtlmState::Initial`].
    Rejected(RejectReason),
}

/// Runs NTLM steps against a configuration, an account store and a shared replay cache.
/// Cheap to build per request.
#[derive(Clone, Copy)]
pub struct NtlmAcceptor<'a> {
    config: &'a NtlmServerConfig,
    accounts: &'a dyn NtlmAccounts,
    replay: &'a ReplayCache,
}

impl fmt::Debug for NtlmAcceptor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtlmAcceptor")
            .field("config", self.config)
            .finish_non_exhaustive()
    }
}

impl<'a> NtlmAcceptor<'a> {
    /// An acceptor over these parts.
    pub fn new(
        config: &'a NtlmServerConfig,
        accounts: &'a dyn NtlmAccounts,
        replay: &'a ReplayCache,
    ) -> Self {
        Self {
            config,
            accounts,
            replay,
        }
    }

    /// Handles one incoming NTLM message (already base64-decoded) in `state`.
    pub fn step(&self, state: NtlmState, token: &[u8]) -> NtlmStep {
        self.step_at(state, token, Clock::now())
    }

    /// [`step`](Self::step) with an explicit clock (tests, or a caller with its own clock).
    pub fn step_at(&self, state: NtlmState, token: &[u8], clock: Clock) -> NtlmStep {
        let kind = match message_type(token) {
            Ok(kind) => kind,
            Err(reason) => return NtlmStep::Rejected(reason),
        };
        match (kind, state) {
            // A NEGOTIATE in any state starts a new exchange (the client may restart).
            (TYPE_NEGOTIATE, _) => self.challenge(token, rand::random(), clock),
            (TYPE_AUTHENTICATE, NtlmState::ChallengeSent(pending)) => {
                match self.authenticate(&pending, token, clock) {
                    Ok((principal, session)) => NtlmStep::Authenticated { principal, session },
                    Err(reason) => NtlmStep::Rejected(reason),
                }
            }
            (TYPE_AUTHENTICATE | TYPE_CHALLENGE, _) => {
                NtlmStep::Rejected(RejectReason::UnexpectedMessage)
            }
            _ => NtlmStep::Rejected(RejectReason::BadMessage("unknown message type")),
        }
    }

    fn challenge(&self, negotiate: &[u8], server_challenge: [u8; 8], clock: Clock) -> NtlmStep {
        match issue_challenge(
            self.config,
            negotiate,
            server_challenge,
            filetime(clock.wall),
            clock.mono,
        ) {
            Ok(pending) => NtlmStep::Challenge {
                token: pending.challenge.clone(),
                state: NtlmState::ChallengeSent(pending),
            },
            Err(reason) => NtlmStep::Rejected(reason),
        }
    }

    fn authenticate(
        &self,
        pending: &PendingChallenge,
        authenticate: &[u8],
        clock: Clock,
    ) -> Result<(Principal, SessionKey), RejectReason> {
        if clock.mono.saturating_duration_since(pending.issued) > self.config.challenge_lifetime {
            return Err(RejectReason::ChallengeExpired);
        }
        let verified = verify_authenticate(pending, authenticate, self.accounts)?;
        let skew = u64::try_from(self.config.max_clock_skew.as_nanos() / 100).unwrap_or(u64::MAX);
        if verified.client_time.abs_diff(filetime(clock.wall)) > skew {
            return Err(RejectReason::StaleTimestamp);
        }
        if !self
            .replay
            .check_and_insert(verified.replay_key, clock.mono)
        {
            return Err(RejectReason::Replay);
        }
        Ok((verified.principal, verified.session))
    }
}

// ---------------------------------------------------------------------------------------------
// NEGOTIATE → CHALLENGE
// ---------------------------------------------------------------------------------------------

/// Parses a NEGOTIATE_MESSAGE ([MS-NLMP] §2.2.1.1) and builds the CHALLENGE_MESSAGE (§2.2.1.2,
/// §3.2.5.1.1) for it.
fn issue_challenge(
    config: &NtlmServerConfig,
    negotiate: &[u8],
    server_challenge: [u8; 8],
    now: u64,
    issued: Instant,
) -> Result<PendingChallenge, RejectReason> {
    let client_flags = parse_negotiate(negotiate)?;
    let flags = challenge_flags(client_flags);

    let target_name = if flags & flags::REQUEST_TARGET != 0 {
        encode_string(&config.nb_domain, flags)
    } else {
        Vec::new()
    };
    let mut target_info = Vec::new();
    push_av_name(&mut target_info, av::NB_DOMAIN_NAME, &config.nb_domain);
    push_av_name(&mut target_info, av::NB_COMPUTER_NAME, &config.nb_computer);
    // The two NetBIOS names are mandatory (§2.2.1.2); the DNS names are sent when configured.
    for (id, name) in [
        (av::DNS_DOMAIN_NAME, &config.dns_domain),
        (av::DNS_COMPUTER_NAME, &config.dns_computer),
    ] {
        if !name.is_empty() {
            push_av_name(&mut target_info, id, name);
        }
    }
    push_av(&mut target_info, av::TIMESTAMP, &now.to_le_bytes());
    push_av(&mut target_info, av::EOL, &[]);

    let version = if flags & flags::VERSION != 0 {
        SERVER_VERSION
    } else {
        [0; 8]
    };
    let challenge = encode_challenge(flags, &target_name, server_challenge, &target_info, version);
    Ok(PendingChallenge {
        negotiate: negotiate.to_vec(),
        challenge,
        server_challenge,
        flags,
        issued,
    })
}

/// Returns the client's `NegotiateFlags`. The domain and workstation fields are informational but
/// still bounds-checked.
fn parse_negotiate(msg: &[u8]) -> Result<u32, RejectReason> {
    if message_type(msg)? != TYPE_NEGOTIATE {
        return Err(RejectReason::UnexpectedMessage);
    }
    if msg.len() < NEGOTIATE_HEADER_LEN {
        return Err(RejectReason::BadMessage("NEGOTIATE too short"));
    }
    let client_flags = u32_at(msg, 12)?;
    security_buffer(msg, 16, NEGOTIATE_HEADER_LEN, "NEGOTIATE domain field")?;
    security_buffer(msg, 24, NEGOTIATE_HEADER_LEN, "NEGOTIATE workstation field")?;
    Ok(client_flags)
}

/// The flags pfgate answers with ([MS-NLMP] §3.2.5.1.1): what NTLMv2 needs, plus what the client
/// asked for among the harmless options.
fn challenge_flags(client: u32) -> u32 {
    let mut f = flags::NTLM
        | flags::ALWAYS_SIGN
        | flags::EXTENDED_SESSIONSECURITY
        | flags::TARGET_INFO
        | flags::NEGOTIATE_128;
    // Unicode unless the client can only do OEM.
    if client & flags::UNICODE != 0 || client & flags::OEM == 0 {
        f |= flags::UNICODE;
    } else {
        f |= flags::OEM;
    }
    if client & flags::REQUEST_TARGET != 0 {
        f |= flags::REQUEST_TARGET | flags::TARGET_TYPE_DOMAIN;
    }
    f |= client
        & (flags::SIGN | flags::SEAL | flags::NEGOTIATE_56 | flags::KEY_EXCH | flags::VERSION);
    f
}

/// Lays out a CHALLENGE_MESSAGE: 56-byte header (with Version), then TargetName, TargetInfo.
fn encode_challenge(
    flags: u32,
    target_name: &[u8],
    server_challenge: [u8; 8],
    target_info: &[u8],
    version: [u8; 8],
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(CHALLENGE_HEADER_LEN + target_name.len() + target_info.len());
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&TYPE_CHALLENGE.to_le_bytes());
    let name_offset = CHALLENGE_HEADER_LEN;
    let info_offset = name_offset + target_name.len();
    push_security_buffer(&mut msg, target_name.len(), name_offset);
    msg.extend_from_slice(&flags.to_le_bytes());
    msg.extend_from_slice(&server_challenge);
    msg.extend_from_slice(&[0; 8]); // Reserved
    push_security_buffer(&mut msg, target_info.len(), info_offset);
    msg.extend_from_slice(&version);
    msg.extend_from_slice(target_name);
    msg.extend_from_slice(target_info);
    msg
}

// ---------------------------------------------------------------------------------------------
// AUTHENTICATE
// ---------------------------------------------------------------------------------------------

/// The parts of an AUTHENTICATE_MESSAGE ([MS-NLMP] §2.2.1.3) that verification reads.
struct Authenticate<'a> {
    lm_response: &'a [u8],
    nt_response: &'a [u8],
    domain: String,
    user: String,
    encrypted_session_key: &'a [u8],
    flags: u32,
    /// The lowest payload offset, to know whether the header has room for a MIC.
    payload_start: usize,
}

fn parse_authenticate(msg: &[u8]) -> Result<Authenticate<'_>, RejectReason> {
    if message_type(msg)? != TYPE_AUTHENTICATE {
        return Err(RejectReason::UnexpectedMessage);
    }
    if msg.len() < AUTHENTICATE_MIN_LEN {
        return Err(RejectReason::BadMessage("AUTHENTICATE too short"));
    }
    let hdr = AUTHENTICATE_MIN_LEN;
    let (lm_response, lm_at) = security_buffer(msg, 12, hdr, "LmChallengeResponse field")?;
    let (nt_response, nt_at) = security_buffer(msg, 20, hdr, "NtChallengeResponse field")?;
    let (domain, domain_at) = security_buffer(msg, 28, hdr, "DomainName field")?;
    let (user, user_at) = security_buffer(msg, 36, hdr, "UserName field")?;
    let (_workstation, ws_at) = security_buffer(msg, 44, hdr, "Workstation field")?;
    let (encrypted_session_key, key_at) =
        security_buffer(msg, 52, hdr, "EncryptedRandomSessionKey field")?;
    let flags = u32_at(msg, 60)?;
    let payload_start = [lm_at, nt_at, domain_at, user_at, ws_at, key_at]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(msg.len());
    Ok(Authenticate {
        lm_response,
        nt_response,
        domain: decode_string(domain, flags)?,
        user: decode_string(user, flags)?,
        encrypted_session_key,
        flags,
        payload_start,
    })
}

/// The outcome of the cryptographic checks, before the clock and replay checks.
struct Verified {
    principal: Principal,
    session: SessionKey,
    /// FILETIME from the client's blob.
    client_time: u64,
    /// Digest identifying this response in the [`ReplayCache`].
    replay_key: [u8; 16],
}

/// Verifies an AUTHENTICATE_MESSAGE against the challenge it answers ([MS-NLMP] §3.2.5.1.2).
/// Clock-free: the caller checks the time stamp and the replay cache.
fn verify_authenticate(
    pending: &PendingChallenge,
    msg: &[u8],
    accounts: &dyn NtlmAccounts,
) -> Result<Verified, RejectReason> {
    let auth = parse_authenticate(msg)?;

    // Refuse what is not NTLMv2 before touching any key (§3.2.5.1.2, §3.3.1).
    let lm_present = auth.lm_response.iter().any(|&b| b != 0);
    if auth.flags & flags::ANONYMOUS != 0 || auth.user.is_empty() {
        return Err(RejectReason::Anonymous);
    }
    match auth.nt_response.len() {
        0 if lm_present => return Err(RejectReason::NtlmV1Refused),
        0 => return Err(RejectReason::Anonymous),
        NTLMV1_RESPONSE_LEN => return Err(RejectReason::NtlmV1Refused),
        n if n < NTLMV2_RESPONSE_MIN_LEN => {
            return Err(RejectReason::BadMessage("NTLMv2 response too short"));
        }
        _ => {}
    }
    let (nt_proof, blob) = auth.nt_response.split_at(16);
    let client = parse_client_blob(blob)?;

    // Keep the work the same whether or not the account exists.
    let mut found = accounts.nt_hash(&auth.domain, &auth.user);
    let known = found.is_some();
    let nt_hash = Zeroizing::new(found.unwrap_or([0; 16]));
    found.zeroize();
    let ntowf = Zeroizing::new(ntowf_v2(&nt_hash, &auth.user, &auth.domain));
    let expected = hmac_md5(&ntowf, &[&pending.server_challenge, blob]);
    let matches: bool = expected.ct_eq(nt_proof).into();
    if !known {
        return Err(RejectReason::UnknownAccount);
    }
    if !matches {
        return Err(RejectReason::WrongPassword);
    }

    // Session keys (§3.3.2, §3.4.5.1 KXKEY for NTLMv2, §3.2.5.1.2 key exchange).
    let session_base_key = Zeroizing::new(hmac_md5(&ntowf, &[nt_proof]));
    let negotiated = auth.flags & pending.flags;
    let exported = if negotiated & flags::KEY_EXCH != 0 {
        let mut key: [u8; 16] = auth
            .encrypted_session_key
            .try_into()
            .map_err(|_| RejectReason::BadMessage("EncryptedRandomSessionKey is not 16 bytes"))?;
        rc4_apply(&session_base_key, &mut key)?;
        Zeroizing::new(key)
    } else {
        session_base_key.clone()
    };

    // MIC (§3.2.5.1.2): required exactly when the client's (authenticated) AV_PAIRs announce it.
    if client.mic_present {
        if msg.len() < MIC_END || auth.payload_start < MIC_END {
            return Err(RejectReason::BadMic);
        }
        let mut zeroed = msg.to_vec();
        zeroed[MIC_OFFSET..MIC_END].fill(0);
        let mic = hmac_md5(
            &exported,
            &[&pending.negotiate, &pending.challenge, &zeroed],
        );
        let ok: bool = mic.ct_eq(&msg[MIC_OFFSET..MIC_END]).into();
        if !ok {
            return Err(RejectReason::BadMic);
        }
    }

    let replay_key: [u8; 16] = Md5::new()
        .chain_update(utf16le(&upcase(&auth.user)))
        .chain_update([0, 0])
        .chain_update(utf16le(&upcase(&auth.domain)))
        .chain_update([0, 0])
        .chain_update(client.challenge)
        .chain_update(nt_proof)
        .finalize()
        .into();

    Ok(Verified {
        principal: Principal {
            domain: auth.domain,
            user: auth.user,
        },
        session: SessionKey {
            exported,
            flags: negotiated,
        },
        client_time: client.timestamp,
        replay_key,
    })
}

/// The fields of `NTLMv2_CLIENT_CHALLENGE` ([MS-NLMP] §2.2.2.7) that verification uses.
struct ClientBlob {
    timestamp: u64,
    challenge: [u8; 8],
    mic_present: bool,
}

fn parse_client_blob(blob: &[u8]) -> Result<ClientBlob, RejectReason> {
    // RespType, HiRespType, Reserved1 (2), Reserved2 (4), TimeStamp (8), ChallengeFromClient (8),
    // Reserved3 (4), AvPairs.
    if blob.len() < 28 {
        return Err(RejectReason::BadMessage("NTLMv2 blob too short"));
    }
    if blob[0] != 1 || blob[1] != 1 {
        return Err(RejectReason::BadMessage("NTLMv2 blob version is not 1"));
    }
    let timestamp = u64_at(blob, 8)?;
    let mut challenge = [0u8; 8];
    challenge.copy_from_slice(&blob[16..24]);
    let mut mic_present = false;
    for pair in AvPairs::new(&blob[28..]) {
        let (id, value) = pair?;
        if id == av::FLAGS {
            let value: [u8; 4] = value
                .try_into()
                .map_err(|_| RejectReason::BadMessage("MsvAvFlags is not 4 bytes"))?;
            mic_present = u32::from_le_bytes(value) & av::FLAG_MIC_PRESENT != 0;
        }
    }
    Ok(ClientBlob {
        timestamp,
        challenge,
        mic_present,
    })
}

/// Iterates AV_PAIRs ([MS-NLMP] §2.2.2.1) up to `MsvAvEOL` or the end of the data. A pair that
/// runs past the end is an error; trailing bytes after EOL (the blob's padding) are ignored.
pub(crate) struct AvPairs<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> AvPairs<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            rest: data,
            done: false,
        }
    }
}

impl<'a> Iterator for AvPairs<'a> {
    type Item = Result<(u16, &'a [u8]), RejectReason>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let id = u16_at(self.rest, 0)?;
            let len = usize::from(u16_at(self.rest, 2)?);
            let value = self
                .rest
                .get(4..4 + len)
                .ok_or(RejectReason::BadMessage("AV_PAIR runs past the end"))?;
            Ok((id, value, 4 + len))
        })();
        match parsed {
            Ok((av::EOL, _, _)) => {
                self.done = true;
                None
            }
            Ok((id, value, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok((id, value)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Session key and the one signature SPNEGO needs
// ---------------------------------------------------------------------------------------------

/// The ExportedSessionKey of an authenticated exchange and the negotiated flags. Zeroed on drop;
/// `Debug` does not show it.
#[derive(Clone)]
pub struct SessionKey {
    exported: Zeroizing<[u8; 16]>,
    flags: u32,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

const CLIENT_SIGN_MAGIC: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGN_MAGIC: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEAL_MAGIC: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEAL_MAGIC: &[u8] = b"session key to server-to-client sealing key magic constant\0";

impl SessionKey {
    /// Checks `signature` as the client's first signed message (sequence number 0) over `message`
    /// ([MS-NLMP] §3.4.4.2, with extended session security). SPNEGO's `mechListMIC` is one.
    /// False without extended session security, which pfgate always offers.
    pub fn verify_client_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.first_signature(CLIENT_SIGN_MAGIC, CLIENT_SEAL_MAGIC, message) {
            Some(expected) => expected.ct_eq(signature).into(),
            None => false,
        }
    }

    /// The server's first signature (sequence number 0) over `message` ([MS-NLMP] §3.4.4.2).
    /// `None` without extended session security.
    pub fn server_signature(&self, message: &[u8]) -> Option<[u8; 16]> {
        self.first_signature(SERVER_SIGN_MAGIC, SERVER_SEAL_MAGIC, message)
    }

    fn first_signature(
        &self,
        sign_magic: &[u8],
        seal_magic: &[u8],
        message: &[u8],
    ) -> Option<[u8; 16]> {
        if self.flags & flags::EXTENDED_SESSIONSECURITY == 0 {
            return None;
        }
        let sign_key = Zeroizing::new(sign_key(&self.exported, sign_magic));
        let mut handle = if self.flags & flags::KEY_EXCH != 0 {
            let seal = Zeroizing::new(seal_key(&self.exported, self.flags, seal_magic));
            Some(rc4_handle(seal.as_slice()).ok()?)
        } else {
            None
        };
        mac_ess(&sign_key, handle.as_mut(), 0, message).ok()
    }
}

#[cfg(test)]
impl SessionKey {
    pub(crate) fn for_tests(exported: [u8; 16], flags: u32) -> Self {
        Self {
            exported: Zeroizing::new(exported),
            flags,
        }
    }

    /// What a client would send as its first signature (the other direction's keys).
    pub(crate) fn client_signature_for_tests(&self, message: &[u8]) -> [u8; 16] {
        self.first_signature(CLIENT_SIGN_MAGIC, CLIENT_SEAL_MAGIC, message)
            .unwrap()
    }
}

/// SIGNKEY ([MS-NLMP] §3.4.5.2) with extended session security.
fn sign_key(exported: &[u8; 16], magic: &[u8]) -> [u8; 16] {
    Md5::new()
        .chain_update(exported)
        .chain_update(magic)
        .finalize()
        .into()
}

/// SEALKEY ([MS-NLMP] §3.4.5.3) with extended session security: 128, 56 or 40 bits of the key.
fn seal_key(exported: &[u8; 16], negotiated: u32, magic: &[u8]) -> [u8; 16] {
    let used = if negotiated & flags::NEGOTIATE_128 != 0 {
        16
    } else if negotiated & flags::NEGOTIATE_56 != 0 {
        7
    } else {
        5
    };
    Md5::new()
        .chain_update(&exported[..used])
        .chain_update(magic)
        .finalize()
        .into()
}

/// MAC ([MS-NLMP] §3.4.4.2): `Version(1) ‖ Checksum ‖ SeqNum`, the checksum being the first 8
/// bytes of `HMAC_MD5(SigningKey, SeqNum ‖ Message)`, RC4-encrypted with the sealing handle when
/// key exchange was negotiated.
fn mac_ess(
    sign_key: &[u8; 16],
    seal: Option<&mut Rc4>,
    seq_num: u32,
    message: &[u8],
) -> Result<[u8; 16], RejectReason> {
    let digest = hmac_md5(sign_key, &[&seq_num.to_le_bytes(), message]);
    let mut checksum = [0u8; 8];
    checksum.copy_from_slice(&digest[..8]);
    if let Some(handle) = seal {
        handle
            .try_apply_keystream(&mut checksum)
            .map_err(|_| RejectReason::Internal)?;
    }
    let mut sig = [0u8; 16];
    sig[..4].copy_from_slice(&1u32.to_le_bytes());
    sig[4..12].copy_from_slice(&checksum);
    sig[12..].copy_from_slice(&seq_num.to_le_bytes());
    Ok(sig)
}

// ---------------------------------------------------------------------------------------------
// Crypto and encoding helpers
// ---------------------------------------------------------------------------------------------

/// `NTOWFv2` ([MS-NLMP] §3.3.2): `HMAC_MD5(NT hash, UTF-16LE(UPPERCASE(user) ‖ domain))`.
pub(crate) fn ntowf_v2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    let mut identity = Zeroizing::new(utf16le(&upcase(user)));
    identity.extend_from_slice(&utf16le(domain));
    hmac_md5(nt_hash, &[identity.as_slice()])
}

/// HMAC-MD5 with a 16-byte key ([MS-NLMP] §6).
pub(crate) fn hmac_md5(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC pads a key shorter than the block with zeros (RFC 2104 §2), so the key padded to MD5's
    // 64-byte block is the same key, and the fixed-size constructor cannot fail.
    let mut block = Zeroizing::new([0u8; 64]);
    block[..16].copy_from_slice(key);
    let mut mac = <Hmac<Md5> as KeyInit>::new(&(*block).into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn rc4_handle(key: &[u8]) -> Result<Rc4, RejectReason> {
    Rc4::new_from_slice(key).map_err(|_| RejectReason::Internal)
}

/// RC4 with a fresh key over `data` in place ([MS-NLMP] §6 `RC4K`).
pub(crate) fn rc4_apply(key: &[u8; 16], data: &mut [u8]) -> Result<(), RejectReason> {
    rc4_handle(key)?
        .try_apply_keystream(data)
        .map_err(|_| RejectReason::Internal)
}

/// Upper-cases the way Windows does for NTOWFv2: character by character, never changing the
/// length (so `ß` stays `ß`, where Rust's `to_uppercase` would give `SS`).
pub(crate) fn upcase(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A string in the encoding the flags select: UTF-16LE, or OEM (ASCII here; anything else is
/// `?`).
fn encode_string(s: &str, negotiated: u32) -> Vec<u8> {
    if negotiated & flags::UNICODE != 0 {
        utf16le(s)
    } else {
        s.chars()
            .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
            .collect()
    }
}

/// Decodes a name from an AUTHENTICATE message: UTF-16LE if the UNICODE flag is set, otherwise
/// OEM, which pfgate accepts only as ASCII (the OEM code page is unknown).
fn decode_string(bytes: &[u8], negotiated: u32) -> Result<String, RejectReason> {
    if negotiated & flags::UNICODE != 0 {
        if !bytes.len().is_multiple_of(2) {
            return Err(RejectReason::BadMessage("odd-length UTF-16 string"));
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| RejectReason::BadMessage("invalid UTF-16 string"))
    } else if bytes.is_ascii() {
        Ok(bytes.iter().map(|&b| char::from(b)).collect())
    } else {
        Err(RejectReason::BadMessage("non-ASCII OEM string"))
    }
}

fn push_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    // Callers pass at most MAX_AV_NAME_UNITS UTF-16 units or 8 bytes.
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
}

fn push_av_name(out: &mut Vec<u8>, id: u16, name: &str) {
    let units: Vec<u8> = name
        .encode_utf16()
        .take(MAX_AV_NAME_UNITS)
        .flat_map(u16::to_le_bytes)
        .collect();
    push_av(out, id, &units);
}

fn push_security_buffer(out: &mut Vec<u8>, len: usize, offset: usize) {
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    let offset = u32::try_from(offset).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
}

/// Reads a security buffer descriptor (`Len`, `MaxLen`, `BufferOffset`, [MS-NLMP] §2.2.1) at `at`
/// and returns its bytes and offset (`None` when empty). `MaxLen` is ignored, as Windows does. A
/// non-empty field must lie after the fixed header and inside the message.
fn security_buffer<'a>(
    msg: &'a [u8],
    at: usize,
    header_len: usize,
    what: &'static str,
) -> Result<(&'a [u8], Option<usize>), RejectReason> {
    let len = usize::from(u16_at(msg, at)?);
    if len == 0 {
        return Ok((&[], None));
    }
    let offset =
        usize::try_from(u32_at(msg, at + 4)?).map_err(|_| RejectReason::BadMessage(what))?;
    if offset < header_len {
        return Err(RejectReason::BadMessage(what));
    }
    let end = offset
        .checked_add(len)
        .ok_or(RejectReason::BadMessage(what))?;
    let data = msg.get(offset..end).ok_or(RejectReason::BadMessage(what))?;
    Ok((data, Some(offset)))
}

/// Checks the signature and size and returns `MessageType`.
fn message_type(msg: &[u8]) -> Result<u32, RejectReason> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(RejectReason::BadMessage("message too large"));
    }
    if msg.len() < 12 {
        return Err(RejectReason::BadMessage("message too short"));
    }
    if &msg[..8] != SIGNATURE {
        return Err(RejectReason::BadMessage("no NTLMSSP signature"));
    }
    u32_at(msg, 8)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, RejectReason> {
    let bytes = b
        .get(at..at.saturating_add(2))
        .ok_or(RejectReason::BadMessage("truncated"))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, RejectReason> {
    let bytes: [u8; 4] = b
        .get(at..at.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .ok_or(RejectReason::BadMessage("truncated"))?;
    Ok(u32::from_le_bytes(bytes))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, RejectReason> {
    let bytes: [u8; 8] = b
        .get(at..at.saturating_add(8))
        .and_then(|s| s.try_into().ok())
        .ok_or(RejectReason::BadMessage("truncated"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// Wall-clock time as a Windows FILETIME (100 ns since 1601-01-01 UTC).
pub(crate) fn filetime(t: SystemTime) -> u64 {
    let ticks = |d: Duration| u64::try_from(d.as_nanos() / 100).unwrap_or(u64::MAX);
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => FILETIME_UNIX_EPOCH.saturating_add(ticks(after)),
        Err(before) => FILETIME_UNIX_EPOCH.saturating_sub(ticks(before.duration())),
    }
}

// ---------------------------------------------------------------------------------------------
// Test client
// ---------------------------------------------------------------------------------------------

/// A minimal NTLMv2 *client*, written from [MS-NLMP] §3.1.5 independently of the acceptor's
/// parser, so that tests (here and in `spnego`) can run whole exchanges.
#[cfg(test)]
pub(crate) mod test_client {
    use super::*;

    /// What the test client sends.
    #[derive(Clone)]
    pub(crate) struct ClientOpts {
        pub(crate) user: String,
        pub(crate) domain: String,
        pub(crate) password: String,
        pub(crate) workstation: String,
        pub(crate) negotiate_flags: u32,
        /// Set MsvAvFlags 0x2 and fill in the MIC.
        pub(crate) mic: bool,
        /// Blob time stamp; `None` copies the challenge's MsvAvTimestamp.
        pub(crate) timestamp: Option<u64>,
        /// Send a 24-byte (NTLMv1-sized) NT response instead of NTLMv2.
        pub(crate) ntlm_v1: bool,
    }

    impl ClientOpts {
        pub(crate) fn new(domain: &str, user: &str, password: &str) -> Self {
            Self {
                user: user.to_owned(),
                domain: domain.to_owned(),
                password: password.to_owned(),
                workstation: "WS01".to_owned(),
                negotiate_flags: flags::UNICODE
                    | flags::OEM
                    | flags::REQUEST_TARGET
                    | flags::SIGN
                    | flags::NTLM
                    | flags::ALWAYS_SIGN
                    | flags::EXTENDED_SESSIONSECURITY
                    | flags::VERSION
                    | flags::NEGOTIATE_128
                    | flags::KEY_EXCH
                    | flags::NEGOTIATE_56,
                mic: true,
                timestamp: None,
                ntlm_v1: false,
            }
        }

        pub(crate) fn without_key_exch(mut self) -> Self {
            self.negotiate_flags &= !flags::KEY_EXCH;
            self
        }

        pub(crate) fn without_mic(mut self) -> Self {
            self.mic = false;
            self
        }
    }

    /// A 40-byte NEGOTIATE_MESSAGE (with Version, no domain/workstation).
    pub(crate) fn negotiate(opts: &ClientOpts) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&opts.negotiate_flags.to_le_bytes());
        m.extend_from_slice(&[0; 16]); // empty domain and workstation fields
        m.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f]);
        m
    }

    pub(crate) struct Challenge {
        pub(crate) flags: u32,
        pub(crate) server_challenge: [u8; 8],
        pub(crate) target_info: Vec<u8>,
        pub(crate) timestamp: Option<u64>,
    }

    pub(crate) fn read_challenge(msg: &[u8]) -> Challenge {
        assert_eq!(&msg[..8], SIGNATURE);
        assert_eq!(u32::from_le_bytes(msg[8..12].try_into().unwrap()), 2);
        let flags = u32::from_le_bytes(msg[20..24].try_into().unwrap());
        let server_challenge: [u8; 8] = msg[24..32].try_into().unwrap();
        let len = usize::from(u16::from_le_bytes(msg[40..42].try_into().unwrap()));
        let off = u32::from_le_bytes(msg[44..48].try_into().unwrap()) as usize;
        let target_info = msg[off..off + len].to_vec();
        let mut timestamp = None;
        for pair in AvPairs::new(&target_info) {
            let (id, value) = pair.unwrap();
            if id == av::TIMESTAMP {
                timestamp = Some(u64::from_le_bytes(value.try_into().unwrap()));
            }
        }
        Challenge {
            flags,
            server_challenge,
            target_info,
            timestamp,
        }
    }

    /// The AUTHENTICATE_MESSAGE and the ExportedSessionKey the client ends up with.
    pub(crate) struct Authenticate {
        pub(crate) message: Vec<u8>,
        pub(crate) exported_session_key: [u8; 16],
    }

    /// The client's AV_PAIRs: the server's, plus MsvAvFlags when a MIC is sent (§3.1.5.1.2).
    fn client_av_pairs(server: &[u8], mic: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for pair in AvPairs::new(server) {
            let (id, value) = pair.unwrap();
            if id != av::FLAGS {
                push_av(&mut out, id, value);
            }
        }
        if mic {
            push_av(&mut out, av::FLAGS, &av::FLAG_MIC_PRESENT.to_le_bytes());
        }
        push_av(&mut out, av::EOL, &[]);
        out
    }

    pub(crate) fn authenticate(
        opts: &ClientOpts,
        negotiate: &[u8],
        challenge_msg: &[u8],
    ) -> Authenticate {
        let ch = read_challenge(challenge_msg);
        let negotiated = ch.flags;
        let nt_hash = nt_hash_of_password(&opts.password);
        let ntowf = ntowf_v2(&nt_hash, &opts.user, &opts.domain);
        let client_challenge: [u8; 8] = rand::random();
        let timestamp = opts
            .timestamp
            .or(ch.timestamp)
            .unwrap_or_else(|| filetime(SystemTime::now()));

        let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        temp.extend_from_slice(&timestamp.to_le_bytes());
        temp.extend_from_slice(&client_challenge);
        temp.extend_from_slice(&[0; 4]);
        temp.extend_from_slice(&client_av_pairs(&ch.target_info, opts.mic));
        temp.extend_from_slice(&[0; 4]);
        let proof = hmac_md5(&ntowf, &[&ch.server_challenge, &temp]);
        let mut nt_response = proof.to_vec();
        nt_response.extend_from_slice(&temp);
        if opts.ntlm_v1 {
            nt_response.truncate(24);
        }
        let mut lm_response = hmac_md5(&ntowf, &[&ch.server_challenge, &client_challenge]).to_vec();
        lm_response.extend_from_slice(&client_challenge);

        let session_base_key = hmac_md5(&ntowf, &[&proof]);
        let (exported, encrypted) = if negotiated & flags::KEY_EXCH != 0 {
            let random: [u8; 16] = rand::random();
            let mut enc = random;
            rc4_apply(&session_base_key, &mut enc).unwrap();
            (random, enc.to_vec())
        } else {
            (session_base_key, Vec::new())
        };

        let domain = utf16le(&opts.domain);
        let user = utf16le(&opts.user);
        let ws = utf16le(&opts.workstation);
        let fields: [&[u8]; 6] = [&lm_response, &nt_response, &domain, &user, &ws, &encrypted];
        let mut header = Vec::new();
        header.extend_from_slice(SIGNATURE);
        header.extend_from_slice(&3u32.to_le_bytes());
        let mut payload = Vec::new();
        let mut offset = MIC_END;
        for f in fields {
            push_security_buffer(&mut header, f.len(), offset);
            payload.extend_from_slice(f);
            offset += f.len();
        }
        header.extend_from_slice(&negotiated.to_le_bytes());
        header.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f]);
        header.extend_from_slice(&[0; 16]); // MIC, filled below
        assert_eq!(header.len(), MIC_END);
        let mut message = header;
        message.extend_from_slice(&payload);
        if opts.mic {
            let mic = hmac_md5(&exported, &[negotiate, challenge_msg, &message]);
            message[MIC_OFFSET..MIC_END].copy_from_slice(&mic);
        }
        Authenticate {
            message,
            exported_session_key: exported,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::test_client::{self, ClientOpts};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn config() -> NtlmServerConfig {
        NtlmServerConfig::new("CONTOSO", "PFGATE", "contoso.com", "pfgate.contoso.com")
    }

    fn accounts() -> NtlmAccountMap {
        let mut a = NtlmAccountMap::new();
        a.insert_password("CONTOSO", "svc-mim", "S3cret!");
        a.insert_password("*", "anywhere", "Any1");
        a
    }

    fn bob() -> ClientOpts {
        ClientOpts::new("contoso", "SVC-MIM", "S3cret!")
    }

    /// Runs NEGOTIATE → CHALLENGE → AUTHENTICATE with the test client.
    fn run(opts: &ClientOpts, replay: &ReplayCache) -> NtlmStep {
        let cfg = config();
        let acc = accounts();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, replay);
        let t1 = test_client::negotiate(opts);
        let NtlmStep::Challenge { token, state } = acceptor.step(NtlmState::Initial, &t1) else {
            panic!("expected a challenge");
        };
        let t3 = test_client::authenticate(opts, &t1, &token);
        acceptor.step(state, &t3.message)
    }

    /// Issues a challenge and returns (negotiate, challenge bytes, state).
    fn issue(acceptor: &NtlmAcceptor<'_>, opts: &ClientOpts) -> (Vec<u8>, Vec<u8>, NtlmState) {
        let t1 = test_client::negotiate(opts);
        match acceptor.step(NtlmState::Initial, &t1) {
            NtlmStep::Challenge { token, state } => (t1, token, state),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    fn rejected(step: NtlmStep) -> RejectReason {
        match step {
            NtlmStep::Rejected(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    // --- [MS-NLMP] §4.2.4 test vectors ----------------------------------------------------

    const SPEC_CHALLENGE: &str = "4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef\
        00000000000000002400240044000000060070170000000f530065007200760065007200\
        02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000";
    const SPEC_AUTHENTICATE: &str =
        "4e544c4d5353500003000000180018006c00000054005400840000000c000c00\
        480000000800080054000000100010005c00000010001000d8000000358288e2\
        0501280a0000000f44006f006d00610069006e00550073006500720043004f00\
        4d005000550054004500520086c35097ac9cec102554764a57cccc19aaaaaaaa\
        aaaaaaaa68cd0ab851e51c96aabc927bebef6a1c010100000000000000000000\
        00000000aaaaaaaaaaaaaaaa0000000002000c0044006f006d00610069006e00\
        01000c005300650072007600650072000000000000000000c5dad2544fc97990\
        94ce1ce90bc9d03e";
    const SPEC_TEMP: &str = "01010000000000000000000000000000aaaaaaaaaaaaaaaa00000000\
        02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000\
        00000000";

    #[test]
    fn spec_4_2_4_ntowfv2_proof_and_session_base_key() {
        let nt_hash = nt_hash_of_password("Password");
        // §4.2.2.1.2 NTOWFv1 (the NT hash of "Password").
        assert_eq!(nt_hash.to_vec(), hex("a4f49c406510bdcab6824ee7c30fd852"));
        let ntowf = ntowf_v2(&nt_hash, "User", "Domain");
        assert_eq!(ntowf.to_vec(), hex("0c868a403bfd7a93a3001ef22ef02e3f"));
        let server_challenge = hex("0123456789abcdef");
        let temp = hex(SPEC_TEMP);
        let proof = hmac_md5(&ntowf, &[&server_challenge, &temp]);
        assert_eq!(proof.to_vec(), hex("68cd0ab851e51c96aabc927bebef6a1c"));
        let session_base_key = hmac_md5(&ntowf, &[&proof]);
        assert_eq!(
            session_base_key.to_vec(),
            hex("8de40ccadbc14a82f15cb0ad0de95ca3")
        );
        // §4.2.4.2.1 LMv2 response.
        let lmv2 = hmac_md5(&ntowf, &[&server_challenge, &hex("aaaaaaaaaaaaaaaa")]);
        assert_eq!(lmv2.to_vec(), hex("86c35097ac9cec102554764a57cccc19"));
        // §4.2.4.2.3 EncryptedRandomSessionKey = RC4(KeyExchangeKey, RandomSessionKey).
        let mut key = [0x55u8; 16];
        rc4_apply(&session_base_key, &mut key).unwrap();
        assert_eq!(key.to_vec(), hex("c5dad2544fc9799094ce1ce90bc9d03e"));
    }

    #[test]
    fn spec_4_2_4_3_authenticate_message_verifies() {
        let challenge = hex(SPEC_CHALLENGE);
        let pending = PendingChallenge {
            negotiate: Vec::new(),
            challenge: challenge.clone(),
            server_challenge: challenge[24..32].try_into().unwrap(),
            flags: u32::from_le_bytes(challenge[20..24].try_into().unwrap()),
            issued: Instant::now(),
        };
        let mut acc = NtlmAccountMap::new();
        acc.insert_password("domain", "user", "Password");
        let v = verify_authenticate(&pending, &hex(SPEC_AUTHENTICATE), &acc).unwrap();
        assert_eq!(v.principal.user, "User");
        assert_eq!(v.principal.domain, "Domain");
        assert_eq!(v.client_time, 0);
        // KEY_EXCH: the ExportedSessionKey is the spec's RandomSessionKey.
        assert_eq!(*v.session.exported, [0x55; 16]);

        let mut wrong = NtlmAccountMap::new();
        wrong.insert_password("Domain", "User", "password");
        assert!(matches!(
            verify_authenticate(&pending, &hex(SPEC_AUTHENTICATE), &wrong),
            Err(RejectReason::WrongPassword)
        ));
    }

    #[test]
    fn spec_4_2_4_3_challenge_layout_matches() {
        // The spec's CHALLENGE: Unicode TargetName "Server", AV pairs NbDomainName,
        // NbComputerName, EOL, Version 6.0.6000 revision 15.
        let mut info = Vec::new();
        push_av_name(&mut info, av::NB_DOMAIN_NAME, "Domain");
        push_av_name(&mut info, av::NB_COMPUTER_NAME, "Server");
        push_av(&mut info, av::EOL, &[]);
        let msg = encode_challenge(
            0xe28a_8233,
            &utf16le("Server"),
            hex("0123456789abcdef").try_into().unwrap(),
            &info,
            [0x06, 0x00, 0x70, 0x17, 0, 0, 0, 0x0f],
        );
        assert_eq!(msg, hex(SPEC_CHALLENGE));
    }

    #[test]
    fn spec_4_2_4_4_signing_and_sealing_keys_and_signature() {
        let exported = [0x55u8; 16];
        let negotiated = 0xe288_8235; // the spec's AUTHENTICATE flags (128, KEY_EXCH, ESS)
        let sign = sign_key(&exported, CLIENT_SIGN_MAGIC);
        assert_eq!(sign.to_vec(), hex("4788dc861b4782f35d43fd98fe1a2d39"));
        let seal = seal_key(&exported, negotiated, CLIENT_SEAL_MAGIC);
        assert_eq!(seal.to_vec(), hex("59f600973cc4960a25480a7c196e4c58"));
        // SEAL: the plaintext is encrypted first, then the checksum, with the same RC4 handle.
        let plaintext = utf16le("Plaintext");
        let mut handle = rc4_handle(&seal).unwrap();
        let mut sealed = plaintext.clone();
        handle.try_apply_keystream(&mut sealed).unwrap();
        assert_eq!(sealed, hex("54e50165bf1936dc996020c1811b0f06fb5f"));
        let checksum = hmac_md5(&sign, &[&0u32.to_le_bytes(), &plaintext]);
        assert_eq!(checksum[..8].to_vec(), hex("70352851f2564309"));
        let sig = mac_ess(&sign, Some(&mut handle), 0, &plaintext).unwrap();
        assert_eq!(sig.to_vec(), hex("010000007fb38ec5c55d497600000000"));
    }

    // --- round trips ----------------------------------------------------------------------

    #[test]
    fn round_trip_with_mic_and_key_exch() {
        let replay = ReplayCache::default();
        match run(&bob(), &replay) {
            NtlmStep::Authenticated { principal, .. } => {
                assert_eq!(principal.domain, "contoso");
                assert_eq!(principal.user, "SVC-MIM");
                assert_eq!(principal.to_string(), "contoso\\SVC-MIM");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(replay.len(), 1);
    }

    #[test]
    fn round_trip_with_mic_without_key_exch() {
        let step = run(&bob().without_key_exch(), &ReplayCache::default());
        assert!(matches!(step, NtlmStep::Authenticated { .. }), "{step:?}");
    }

    #[test]
    fn round_trip_without_mic_like_mono() {
        for opts in [bob().without_mic(), bob().without_mic().without_key_exch()] {
            let step = run(&opts, &ReplayCache::default());
            assert!(matches!(step, NtlmStep::Authenticated { .. }), "{step:?}");
        }
    }

    #[test]
    fn round_trip_wildcard_domain_and_empty_domain() {
        for domain in ["ANY", "", "fabrikam"] {
            let opts = ClientOpts::new(domain, "AnyWhere", "Any1");
            let step = run(&opts, &ReplayCache::default());
            assert!(
                matches!(step, NtlmStep::Authenticated { .. }),
                "{domain}: {step:?}"
            );
        }
    }

    #[test]
    fn session_keys_agree_with_the_client() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        for opts in [bob(), bob().without_key_exch()] {
            let (t1, t2, state) = issue(&acceptor, &opts);
            let t3 = test_client::authenticate(&opts, &t1, &t2);
            let NtlmStep::Authenticated { session, .. } = acceptor.step(state, &t3.message) else {
                panic!("not authenticated");
            };
            assert_eq!(*session.exported, t3.exported_session_key);
            // What a client signs with its keys verifies; the server's own signature differs.
            let exported = t3.exported_session_key;
            let mut handle = if session.flags & flags::KEY_EXCH != 0 {
                Some(rc4_handle(&seal_key(&exported, session.flags, CLIENT_SEAL_MAGIC)).unwrap())
            } else {
                None
            };
            let sign = sign_key(&exported, CLIENT_SIGN_MAGIC);
            let sig = mac_ess(&sign, handle.as_mut(), 0, b"mechTypes").unwrap();
            assert!(session.verify_client_signature(b"mechTypes", &sig));
            assert!(!session.verify_client_signature(b"mechtypes", &sig));
            assert_ne!(session.server_signature(b"mechTypes").unwrap(), sig);
        }
    }

    #[test]
    fn challenge_message_is_well_formed() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let (_, t2, _) = issue(&acceptor, &bob());
        let ch = test_client::read_challenge(&t2);
        for f in [
            flags::UNICODE,
            flags::NTLM,
            flags::ALWAYS_SIGN,
            flags::EXTENDED_SESSIONSECURITY,
            flags::TARGET_INFO,
            flags::NEGOTIATE_128,
            flags::KEY_EXCH,
            flags::VERSION,
            flags::REQUEST_TARGET,
        ] {
            assert_ne!(ch.flags & f, 0, "flag {f:#x} missing");
        }
        assert_eq!(ch.flags & flags::OEM, 0);
        // TargetName = the NetBIOS domain.
        let len = usize::from(u16::from_le_bytes([t2[12], t2[13]]));
        let off = u32::from_le_bytes(t2[16..20].try_into().unwrap()) as usize;
        assert_eq!(&t2[off..off + len], utf16le("CONTOSO").as_slice());
        let ids: Vec<u16> = AvPairs::new(&ch.target_info)
            .map(|p| p.unwrap().0)
            .collect();
        assert_eq!(
            ids,
            [
                av::NB_DOMAIN_NAME,
                av::NB_COMPUTER_NAME,
                av::DNS_DOMAIN_NAME,
                av::DNS_COMPUTER_NAME,
                av::TIMESTAMP
            ]
        );
        assert!(ch.target_info.ends_with(&[0, 0, 0, 0]));
        let now = filetime(SystemTime::now());
        assert!(ch.timestamp.unwrap().abs_diff(now) < 10 * 10_000_000);
        // Two challenges differ.
        let (_, again, _) = issue(&acceptor, &bob());
        assert_ne!(
            ch.server_challenge,
            test_client::read_challenge(&again).server_challenge
        );
    }

    #[test]
    fn key_exch_and_version_only_when_asked() {
        let mut opts = bob();
        opts.negotiate_flags = flags::UNICODE | flags::NTLM;
        let f = challenge_flags(opts.negotiate_flags);
        assert_eq!(
            f & (flags::KEY_EXCH | flags::VERSION | flags::REQUEST_TARGET),
            0
        );
        assert_ne!(f & flags::TARGET_INFO, 0);
        // An OEM-only client gets OEM.
        assert_eq!(
            challenge_flags(flags::OEM) & (flags::OEM | flags::UNICODE),
            flags::OEM
        );
        // A client without either gets Unicode.
        assert_ne!(challenge_flags(0) & flags::UNICODE, 0);
        // And a full exchange without those options still works.
        let step = run(&opts.without_mic(), &ReplayCache::default());
        assert!(matches!(step, NtlmStep::Authenticated { .. }), "{step:?}");
    }

    // --- rejections -----------------------------------------------------------------------

    #[test]
    fn rejects_wrong_password() {
        let mut opts = bob();
        opts.password = "s3cret!".into();
        assert_eq!(
            rejected(run(&opts, &ReplayCache::default())),
            RejectReason::WrongPassword
        );
        let opts = opts.without_mic();
        assert_eq!(
            rejected(run(&opts, &ReplayCache::default())),
            RejectReason::WrongPassword
        );
    }

    #[test]
    fn rejects_unknown_user() {
        let opts = ClientOpts::new("CONTOSO", "mallory", "S3cret!");
        assert_eq!(
            rejected(run(&opts, &ReplayCache::default())),
            RejectReason::UnknownAccount
        );
    }

    #[test]
    fn rejects_wrong_domain() {
        for domain in ["EVIL", "", "contoso.com"] {
            let opts = ClientOpts::new(domain, "svc-mim", "S3cret!");
            assert_eq!(
                rejected(run(&opts, &ReplayCache::default())),
                RejectReason::UnknownAccount,
                "{domain}"
            );
        }
    }

    #[test]
    fn rejects_replayed_authenticate() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        let (t1, t2, state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2);
        let NtlmState::ChallengeSent(pending) = state else {
            panic!()
        };
        // Rebuild the same pending challenge, as if the server had issued it twice.
        let copy = |p: &PendingChallenge| PendingChallenge {
            negotiate: p.negotiate.clone(),
            challenge: p.challenge.clone(),
            server_challenge: p.server_challenge,
            flags: p.flags,
            issued: p.issued,
        };
        let again = copy(&pending);
        let first = acceptor.step(NtlmState::ChallengeSent(pending), &t3.message);
        assert!(matches!(first, NtlmStep::Authenticated { .. }));
        let second = acceptor.step(NtlmState::ChallengeSent(again), &t3.message);
        assert_eq!(rejected(second), RejectReason::Replay);
    }

    #[test]
    fn rejects_authenticate_against_another_challenge() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob().without_mic();
        let (t1, t2, _first_state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2);
        let (_, _, other_state) = issue(&acceptor, &opts);
        assert_eq!(
            rejected(acceptor.step(other_state, &t3.message)),
            RejectReason::WrongPassword
        );
    }

    #[test]
    fn rejects_ntlm_v1_response() {
        let mut opts = bob().without_mic();
        opts.ntlm_v1 = true;
        assert_eq!(
            rejected(run(&opts, &ReplayCache::default())),
            RejectReason::NtlmV1Refused
        );
    }

    #[test]
    fn rejects_lm_only_and_anonymous() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob().without_mic();
        let (t1, t2, state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        // Empty the NT response (Len = 0): LM-only.
        let mut lm_only = t3.clone();
        lm_only[20..22].copy_from_slice(&[0, 0]);
        assert_eq!(
            rejected(acceptor.step(state, &lm_only)),
            RejectReason::NtlmV1Refused
        );
        // And with a zero LM response too: anonymous.
        let (t1, t2, state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        let mut anon = t3.clone();
        anon[20..22].copy_from_slice(&[0, 0]);
        anon[12..14].copy_from_slice(&[0, 0]);
        assert_eq!(
            rejected(acceptor.step(state, &anon)),
            RejectReason::Anonymous
        );
        // Empty user name: anonymous.
        let (t1, t2, state) = issue(&acceptor, &opts);
        let mut no_user = test_client::authenticate(&opts, &t1, &t2).message;
        no_user[36..38].copy_from_slice(&[0, 0]);
        assert_eq!(
            rejected(acceptor.step(state, &no_user)),
            RejectReason::Anonymous
        );
        // The ANONYMOUS flag.
        let (t1, t2, state) = issue(&acceptor, &opts);
        let mut flagged = test_client::authenticate(&opts, &t1, &t2).message;
        flagged[61] |= 0x08;
        assert_eq!(
            rejected(acceptor.step(state, &flagged)),
            RejectReason::Anonymous
        );
    }

    #[test]
    fn rejects_tampered_mic() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        let (t1, t2, state) = issue(&acceptor, &opts);
        let mut t3 = test_client::authenticate(&opts, &t1, &t2).message;
        t3[MIC_OFFSET + 3] ^= 0x01;
        assert_eq!(rejected(acceptor.step(state, &t3)), RejectReason::BadMic);
    }

    #[test]
    fn rejects_mic_over_other_messages() {
        // A MIC computed over a different NEGOTIATE (e.g. flags downgraded in transit).
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        let (t1, t2, state) = issue(&acceptor, &opts);
        let mut other_t1 = t1.clone();
        other_t1[12] ^= 0x10;
        let t3 = test_client::authenticate(&opts, &other_t1, &t2).message;
        assert_eq!(rejected(acceptor.step(state, &t3)), RejectReason::BadMic);
    }

    #[test]
    fn rejects_mic_flag_with_zero_or_missing_mic() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        // Zeroed MIC.
        let (t1, t2, state) = issue(&acceptor, &opts);
        let mut t3 = test_client::authenticate(&opts, &t1, &t2).message;
        t3[MIC_OFFSET..MIC_END].fill(0);
        assert_eq!(rejected(acceptor.step(state, &t3)), RejectReason::BadMic);
        // No room for a MIC: the payload is moved to right after the Version field.
        let (t1, t2, state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        let mut short = t3[..MIC_OFFSET].to_vec();
        short.extend_from_slice(&t3[MIC_END..]);
        for field in 0..6 {
            let at = 12 + field * 8 + 4;
            let off = u32::from_le_bytes(short[at..at + 4].try_into().unwrap());
            short[at..at + 4].copy_from_slice(&(off - 16).to_le_bytes());
        }
        assert_eq!(rejected(acceptor.step(state, &short)), RejectReason::BadMic);
    }

    #[test]
    fn rejects_removed_mic_flag() {
        // Stripping MsvAvFlags changes the blob, which NTProofStr covers.
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        let (t1, t2, state) = issue(&acceptor, &opts);
        let mut t3 = test_client::authenticate(&opts, &t1, &t2).message;
        let needle = [6u8, 0, 4, 0, 2, 0, 0, 0];
        let at = t3.windows(8).position(|w| w == needle).unwrap();
        t3[at + 4] = 0;
        assert_eq!(
            rejected(acceptor.step(state, &t3)),
            RejectReason::WrongPassword
        );
    }

    #[test]
    fn rejects_stale_timestamp() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let now = filetime(SystemTime::now());
        let six_minutes = 6 * 60 * 10_000_000;
        for ts in [now - six_minutes, now + six_minutes, 0] {
            let mut opts = bob();
            opts.timestamp = Some(ts);
            let (t1, t2, state) = issue(&acceptor, &opts);
            let t3 = test_client::authenticate(&opts, &t1, &t2).message;
            assert_eq!(
                rejected(acceptor.step(state, &t3)),
                RejectReason::StaleTimestamp
            );
        }
        // Four minutes off is within the default window.
        let mut opts = bob();
        opts.timestamp = Some(now - 4 * 60 * 10_000_000);
        let (t1, t2, state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        assert!(matches!(
            acceptor.step(state, &t3),
            NtlmStep::Authenticated { .. }
        ));
    }

    #[test]
    fn rejects_expired_challenge() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        let (t1, t2, state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        let later = Clock {
            wall: SystemTime::now(),
            mono: Instant::now() + Duration::from_secs(6 * 60),
        };
        assert_eq!(
            rejected(acceptor.step_at(state, &t3, later)),
            RejectReason::ChallengeExpired
        );
    }

    #[test]
    fn rejects_messages_out_of_sequence() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        let (t1, t2, state) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        // AUTHENTICATE without a challenge.
        assert_eq!(
            rejected(acceptor.step(NtlmState::Initial, &t3)),
            RejectReason::UnexpectedMessage
        );
        // A CHALLENGE sent to the server.
        assert_eq!(
            rejected(acceptor.step(NtlmState::Initial, &t2)),
            RejectReason::UnexpectedMessage
        );
        // A new NEGOTIATE restarts: the old AUTHENTICATE no longer fits.
        let NtlmStep::Challenge { state, .. } = acceptor.step(state, &t1) else {
            panic!()
        };
        assert_eq!(
            rejected(acceptor.step(state, &t3)),
            RejectReason::WrongPassword
        );
    }

    #[test]
    fn replay_cache_is_bounded_and_expires() {
        let cache = ReplayCache::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(cache.check_and_insert([1; 16], t0));
        assert!(!cache.check_and_insert([1; 16], t0));
        assert!(cache.check_and_insert([2; 16], t0));
        assert!(cache.check_and_insert([3; 16], t0)); // evicts [1]
        assert_eq!(cache.len(), 2);
        assert!(!cache.check_and_insert([3; 16], t0));
        let later = t0 + Duration::from_secs(61);
        assert!(cache.check_and_insert([2; 16], later)); // expired, accepted again
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn account_map_is_case_insensitive_and_strict_on_domain() {
        let acc = accounts();
        let h = nt_hash_of_password("S3cret!");
        assert_eq!(acc.nt_hash("contoso", "SVC-mim"), Some(h));
        assert_eq!(acc.nt_hash("CONTOSO", "svc-mim"), Some(h));
        assert_eq!(acc.nt_hash("FABRIKAM", "svc-mim"), None);
        assert_eq!(acc.nt_hash("", "svc-mim"), None);
        assert_eq!(
            acc.nt_hash("whatever", "ANYWHERE"),
            Some(nt_hash_of_password("Any1"))
        );
        let dbg = format!("{acc:?}");
        assert!(dbg.contains("SVC-MIM") && !dbg.contains(&format!("{:?}", h)));
        assert_eq!(upcase("straße"), "STRAßE");
    }

    #[test]
    fn state_can_live_with_a_connection() {
        fn send<T: Send>() {}
        fn sync<T: Send + Sync>() {}
        send::<NtlmState>();
        send::<NtlmStep>();
        sync::<NtlmAcceptor<'static>>();
        sync::<ReplayCache>();
        sync::<NtlmAccountMap>();
    }

    #[test]
    fn reasons_do_not_leak_secrets() {
        let text = RejectReason::WrongPassword.to_string();
        assert!(!text.contains("S3cret"));
        let key = SessionKey {
            exported: Zeroizing::new([0xab; 16]),
            flags: 0,
        };
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
    }

    // --- real clients' messages ---------------------------------------------------------------
    //
    // Captured once from real clients talking to this acceptor (account CONTOSO\svc-mim, password
    // "S3cret!"): Mono 6.8 `Mono.Security.Protocol.Ntlm` with `NTLMv2_only` (no MIC, no key
    // exchange, no LM response), and pyspnego 0.12.4 `protocol="ntlm"` (MIC, key exchange).
    // Replayed here with the clock set to the challenge's time stamp.

    const MONO_T1: &str =
        "4e544c4d535350000100000007b200000700070024000000040004002000000057533031434f4e544f534f";
    const MONO_T2: &str =
        "4e544c4d53535000020000000e000e0038000000058289205b6579ad71d5c4b8000000000000000074007400\
        46000000000000000000000043004f004e0054004f0053004f0002000e0043004f004e0054004f0053004f00\
        01000c005000460047004100540045000400160063006f006e0074006f0073006f002e0063006f006d000300\
        24007000660067006100740065002e0063006f006e0074006f0073006f002e0063006f006d0007000800dfb6\
        7420f37cdd0100000000";
    const MONO_T3: &str =
        "4e544c4d53535000030000000000000064000000a000a000640000000e000e00400000000e000e004e000000\
        080008005c000000000000000401000001b2080043004f004e0054004f0053004f007300760063002d006d00\
        69006d0057005300300031008274f0b90684dbb3a6f48b9d6c3b83be01010000000000002cb87920f37cdd01\
        3c34ee0ffe913ec20000000002000e0043004f004e0054004f0053004f0001000c0050004600470041005400\
        45000400160063006f006e0074006f0073006f002e0063006f006d0003002400700066006700610074006500\
        2e0063006f006e0074006f0073006f002e0063006f006d0007000800dfb67420f37cdd0100000000";
    const PYSPNEGO_T1: &str =
        "4e544c4d5353500001000000378208e200000000280000000000000028000000000c04000000000f";
    const PYSPNEGO_T2: &str =
        "4e544c4d53535000020000000e000e0038000000358289e2ce9a45fde8120aa3000000000000000074007400\
        460000000a007c4f0000000f43004f004e0054004f0053004f0002000e0043004f004e0054004f0053004f00\
        01000c005000460047004100540045000400160063006f006e0074006f0073006f002e0063006f006d000300\
        24007000660067006100740065002e0063006f006e0074006f0073006f002e0063006f006d0007000800391f\
        d520f37cdd0100000000";
    const PYSPNEGO_T3: &str =
        "4e544c4d53535000030000001800180058000000de00de00700000000e000e004e0100000e000e005c010000\
        040004006a010000100010006e010000358289e2000c04000000000fa5b065298281bb79ee1572a364511066\
        0000000000000000000000000000000000000000000000000d2e9fd486b912bc5a5eb3a874930d2b01010000\
        00000000391fd520f37cdd01cea32be131a152510000000002000e0043004f004e0054004f0053004f000100\
        0c005000460047004100540045000400160063006f006e0074006f0073006f002e0063006f006d0003002400\
        7000660067006100740065002e0063006f006e0074006f0073006f002e0063006f006d0007000800391fd520\
        f37cdd0109002e0048005400540050002f007000660067006100740065002e0063006f006e0074006f007300\
        6f002e0063006f006d000600040002000000000000000000000043004f004e0054004f0053004f0073007600\
        63002d006d0069006d0056004d0078d544d81c5f170d7778e6b38dd169fb";

    /// Rebuilds the pending state for a captured CHALLENGE and runs the captured AUTHENTICATE
    /// at the challenge's time.
    fn replay_capture(t1: &str, t2: &str, t3: &[u8], acc: &NtlmAccountMap) -> NtlmStep {
        let pending = PendingChallenge::for_tests(&hex(t1), &hex(t2));
        let clock = pending.clock_for_tests();
        let cfg = config();
        let replay = ReplayCache::default();
        NtlmAcceptor::new(&cfg, acc, &replay).step_at(NtlmState::ChallengeSent(pending), t3, clock)
    }

    fn svc_mim(password: &str) -> NtlmAccountMap {
        let mut acc = NtlmAccountMap::new();
        acc.insert_password("CONTOSO", "svc-mim", password);
        acc
    }

    #[test]
    fn interop_mono_ntlmv2_without_mic() {
        let t3 = hex(MONO_T3);
        match replay_capture(MONO_T1, MONO_T2, &t3, &svc_mim("S3cret!")) {
            NtlmStep::Authenticated { principal, .. } => {
                assert_eq!(principal.to_string(), "CONTOSO\\svc-mim");
            }
            other => panic!("{other:?}"),
        }
        // The sspi-rs failure mode: no MIC, wrong password. Must be refused.
        let step = replay_capture(MONO_T1, MONO_T2, &t3, &svc_mim("other"));
        assert_eq!(rejected(step), RejectReason::WrongPassword);
    }

    #[test]
    fn interop_pyspnego_with_mic_and_key_exch() {
        let t3 = hex(PYSPNEGO_T3);
        let step = replay_capture(PYSPNEGO_T1, PYSPNEGO_T2, &t3, &svc_mim("S3cret!"));
        assert!(matches!(step, NtlmStep::Authenticated { .. }), "{step:?}");
        let step = replay_capture(PYSPNEGO_T1, PYSPNEGO_T2, &t3, &svc_mim("S3cret"));
        assert_eq!(rejected(step), RejectReason::WrongPassword);
        let mut tampered = t3.clone();
        tampered[MIC_OFFSET] ^= 0x80;
        let step = replay_capture(PYSPNEGO_T1, PYSPNEGO_T2, &tampered, &svc_mim("S3cret!"));
        assert_eq!(rejected(step), RejectReason::BadMic);
    }

    // --- hostile input --------------------------------------------------------------------

    /// Every prefix of every valid message, and random bytes, in every state: no panic, and
    /// never `Authenticated`.
    #[test]
    fn truncated_and_garbage_messages_never_panic() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let opts = bob();
        let (t1, t2, _) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        let spec = hex(SPEC_AUTHENTICATE);
        let (mono, py) = (hex(MONO_T3), hex(PYSPNEGO_T3));
        for msg in [&t1, &t2, &t3, &spec, &mono, &py] {
            for cut in 0..msg.len() {
                let prefix = &msg[..cut];
                let _ = acceptor.step(NtlmState::Initial, prefix);
                let (_, _, state) = issue(&acceptor, &opts);
                let step = acceptor.step(state, prefix);
                assert!(
                    !matches!(step, NtlmStep::Authenticated { .. }),
                    "prefix {cut}"
                );
            }
        }
        // Random bytes, with and without a valid header, and single-byte corruptions of a
        // valid AUTHENTICATE.
        for i in 0..3000usize {
            let len = i % 300;
            let mut msg: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if i % 2 == 0 && len >= 12 {
                msg[..8].copy_from_slice(SIGNATURE);
                msg[8..12].copy_from_slice(&(1 + (i as u32 / 2) % 3).to_le_bytes());
            }
            let _ = acceptor.step(NtlmState::Initial, &msg);
            let (_, _, state) = issue(&acceptor, &opts);
            assert!(!matches!(
                acceptor.step(state, &msg),
                NtlmStep::Authenticated { .. }
            ));
        }
        for i in 0..t3.len() {
            let mut msg = t3.clone();
            msg[i] ^= 1u8 << (i % 8);
            let (_, _, state) = issue(&acceptor, &opts);
            let step = acceptor.step(state, &msg);
            assert!(!matches!(step, NtlmStep::Authenticated { .. }), "byte {i}");
        }
    }

    #[test]
    fn rejects_fields_out_of_bounds() {
        let opts = bob();
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let (t1, t2, _) = issue(&acceptor, &opts);
        let t3 = test_client::authenticate(&opts, &t1, &t2).message;
        for field in 0..6 {
            let at = 12 + field * 8;
            for (len, off) in [
                (0xffffu16, 88u32),
                (16, u32::MAX),
                (16, u32::MAX - 8),
                (4, 10),
                (1, t3.len() as u32),
            ] {
                let mut bad = t3.clone();
                bad[at..at + 2].copy_from_slice(&len.to_le_bytes());
                bad[at + 4..at + 8].copy_from_slice(&off.to_le_bytes());
                let (_, _, state) = issue(&acceptor, &opts);
                assert!(
                    matches!(
                        rejected(acceptor.step(state, &bad)),
                        RejectReason::BadMessage(_)
                    ),
                    "field {field} len {len} off {off}"
                );
            }
        }
        let mut bad_t1 = t1.clone();
        bad_t1[16..18].copy_from_slice(&8u16.to_le_bytes());
        bad_t1[20..24].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            rejected(acceptor.step(NtlmState::Initial, &bad_t1)),
            RejectReason::BadMessage(_)
        ));
        assert!(matches!(
            rejected(acceptor.step(NtlmState::Initial, &vec![0u8; MAX_MESSAGE_LEN + 1])),
            RejectReason::BadMessage(_)
        ));
    }

    #[test]
    fn av_pairs_parser_is_bounded() {
        assert!(AvPairs::new(&[]).next().is_none());
        assert!(matches!(
            AvPairs::new(&[2, 0, 10, 0, 1]).next(),
            Some(Err(RejectReason::BadMessage(_)))
        ));
        assert!(matches!(AvPairs::new(&[2, 0]).next(), Some(Err(_))));
        let pairs: Vec<_> = AvPairs::new(&[2, 0, 1, 0, 0xaa, 0, 0, 0, 0, 9, 9])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(pairs, vec![(2, &[0xaa][..])]);
    }
}
