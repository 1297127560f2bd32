//! `Negotiate` authentication: SPNEGO ([RFC 4178], [MS-SPNG]) around pfgate's NTLM acceptor.
//!
//! Windows clients that use `UseDefaultCredentials` (MIM among them) answer
//! `WWW-Authenticate: Negotiate` with a SPNEGO token. If the client can get a Kerberos ticket for
//! our SPN, the token offers Kerberos. Otherwise it offers NTLM and usually carries the NTLM
//! NEGOTIATE_MESSAGE directly ("optimistic token"). pfgate verifies only NTLM (see
//! [`super::ntlm`]), so this module:
//!
//! * parses the client's tokens: a GSS-API `InitialContextToken` ([RFC 2743] §3.1, OID
//!   `1.3.6.1.5.5.2`) holding a `NegTokenInit`, later bare `NegTokenResp`s, and also a raw NTLMSSP
//!   message, which some clients put in a `Negotiate` header;
//! * picks NTLMSSP (`1.3.6.1.4.1.311.2.2.10`) and runs [`NtlmAcceptor`] on the wrapped tokens;
//! * answers with `NegTokenResp`: `accept-incomplete` + `supportedMech` + the CHALLENGE, then
//!   `accept-completed`;
//! * handles `mechListMIC` ([RFC 4178] §5): when the client sends one it must be the NTLM signature
//!   ([MS-NLMP] §3.4.4.2) of the `mechTypes` it sent, and pfgate answers with its own. If NTLM was
//!   not the client's first choice, the MIC is required (`request-mic`), because otherwise an
//!   attacker could have removed the client's preferred mechanism;
//! * says [`NegotiateReject::KerberosNotSupported`] when the client offers only Kerberos. Without
//!   a Kerberos acceptor the caller then answers 401 with `WWW-Authenticate: NTLM`;
//! * tells a server that also accepts Kerberos (feature `kerberos`, [`super::kerberos`]) which
//!   acceptor a token is for ([`mechanism_of`]): Kerberos tokens go to GSS-API whole, SPNEGO
//!   framing included, and NTLM ones stay here.
//!
//! The DER reader below is small and checks every bound: the structures are fixed and shallow,
//! and a general ASN.1 crate would be a larger attack surface than these few lines.
//!
//! # Use
//!
//! ```
//! use pfgate::auth::ntlm::{NtlmAcceptor, NtlmAccountMap, NtlmServerConfig, ReplayCache};
//! use pfgate::auth::spnego::{NegotiateReject, NegotiateState, NegotiateStep};
//!
//! let config = NtlmServerConfig::new("CONTOSO", "PFGATE", "contoso.com", "pfgate.contoso.com");
//! let mut accounts = NtlmAccountMap::new();
//! accounts.insert_password("CONTOSO", "svc-mim", "S3cret!");
//! let replay = ReplayCache::default(); // one per process, shared by connections
//! let acceptor = NtlmAcceptor::new(&config, &accounts, &replay);
//!
//! // Per connection: keep a NegotiateState; feed it each base64-decoded `Negotiate` token.
//! let state = NegotiateState::default();
//! let token = b"not a token"; // from `Authorization: Negotiate <base64>`
//! match state.step(&acceptor, token) {
//!     NegotiateStep::Continue { token, state } => { /* 401, `Negotiate <b64(token)>` */ }
//!     NegotiateStep::Authenticated { principal, token } => { /* serve; send token if Some */ }
//!     NegotiateStep::Rejected(NegotiateReject::KerberosNotSupported) => { /* 401 + `NTLM` */ }
//!     NegotiateStep::Rejected(_reason) => { /* 401, log the reason */ }
//! }
//! ```
//!
//! [RFC 4178]: https://www.rfc-editor.org/rfc/rfc4178
//! [RFC 2743]: https://www.rfc-editor.org/rfc/rfc2743
//! [MS-SPNG]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-spng/
//! [MS-NLMP]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-nlmp/

use std::borrow::Cow;
use std::fmt;

use super::ntlm::{self, Clock, NtlmAcceptor, NtlmState, NtlmStep, Principal, RejectReason};

// ---------------------------------------------------------------------------------------------
// Object identifiers
// ---------------------------------------------------------------------------------------------

/// An ASN.1 object identifier, kept as its DER content octets (without tag and length).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Oid(Cow<'static, [u8]>);

impl Oid {
    /// SPNEGO, `1.3.6.1.5.5.2`.
    pub const SPNEGO: Oid = Oid(Cow::Borrowed(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02]));
    /// NTLMSSP, `1.3.6.1.4.1.311.2.2.10`.
    pub const NTLMSSP: Oid = Oid(Cow::Borrowed(&[
        0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a,
    ]));
    /// Kerberos 5, `1.2.840.113554.1.2.2`.
    pub const KRB5: Oid = Oid(Cow::Borrowed(&[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
    ]));
    /// Microsoft's legacy Kerberos 5 OID, `1.2.840.48018.1.2.2`.
    pub const MS_KRB5: Oid = Oid(Cow::Borrowed(&[
        0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02,
    ]));
    /// Kerberos 5 user-to-user, `1.2.840.113554.1.2.2.3`.
    pub const KRB5_U2U: Oid = Oid(Cow::Borrowed(&[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x03,
    ]));
    /// IAKERB, `1.3.6.1.5.2.5`.
    pub const IAKERB: Oid = Oid(Cow::Borrowed(&[0x2b, 0x06, 0x01, 0x05, 0x02, 0x05]));
    /// NEGOEX, `1.3.6.1.4.1.311.2.2.30`.
    pub const NEGOEX: Oid = Oid(Cow::Borrowed(&[
        0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x1e,
    ]));

    /// An OID from its DER content octets.
    pub fn from_der_content(content: &[u8]) -> Self {
        Oid(Cow::Owned(content.to_vec()))
    }

    /// The DER content octets.
    pub fn as_der_content(&self) -> &[u8] {
        &self.0
    }

    /// True for the Kerberos family (which the NTLM acceptor here does not accept; the `kerberos`
    /// feature's acceptor takes Kerberos 5).
    pub fn is_kerberos(&self) -> bool {
        [Self::KRB5, Self::MS_KRB5, Self::KRB5_U2U, Self::IAKERB].contains(self)
    }
}

impl fmt::Display for Oid {
    /// Dotted decimal; malformed content prints as hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut arcs: Vec<u64> = Vec::new();
        let mut value: u64 = 0;
        let mut pending = false;
        for &b in self.0.iter() {
            if value > (u64::MAX >> 7) {
                return write!(f, "{}", hex(&self.0));
            }
            value = (value << 7) | u64::from(b & 0x7f);
            pending = true;
            if b & 0x80 == 0 {
                if arcs.is_empty() {
                    let first = (value / 40).min(2);
                    arcs.push(first);
                    arcs.push(value - first * 40);
                } else {
                    arcs.push(value);
                }
                value = 0;
                pending = false;
            }
        }
        if pending || arcs.is_empty() {
            return write!(f, "{}", hex(&self.0));
        }
        let text: Vec<String> = arcs.iter().map(u64::to_string).collect();
        f.write_str(&text.join("."))
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// Why a token could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpnegoError {
    /// Not valid DER or not the expected structure; the text says where.
    #[error("malformed SPNEGO token: {0}")]
    Malformed(&'static str),
    /// A GSS-API token for a mechanism other than SPNEGO (and not Kerberos).
    #[error("GSS-API token for a mechanism other than SPNEGO")]
    NotSpnego,
}

/// `NegState` ([RFC 4178] §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegState {
    /// `accept-completed (0)`.
    AcceptCompleted,
    /// `accept-incomplete (1)`.
    AcceptIncomplete,
    /// `reject (2)`.
    Reject,
    /// `request-mic (3)`.
    RequestMic,
}

impl NegState {
    fn to_wire(self) -> u8 {
        match self {
            NegState::AcceptCompleted => 0,
            NegState::AcceptIncomplete => 1,
            NegState::Reject => 2,
            NegState::RequestMic => 3,
        }
    }

    fn from_wire(v: u8) -> Option<Self> {
        Some(match v {
            0 => NegState::AcceptCompleted,
            1 => NegState::AcceptIncomplete,
            2 => NegState::Reject,
            3 => NegState::RequestMic,
            _ => return None,
        })
    }
}

/// The initiator's first token ([RFC 4178] §4.2.1). `reqFlags` is read past and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegTokenInit {
    /// The offered mechanisms, most preferred first.
    pub mech_types: Vec<Oid>,
    /// The DER encoding of `mechTypes` exactly as received: `mechListMIC` is computed over it.
    pub mech_types_der: Vec<u8>,
    /// The optimistic token for the first mechanism.
    pub mech_token: Option<Vec<u8>>,
    /// `mechListMIC`, if the initiator sent one already.
    pub mech_list_mic: Option<Vec<u8>>,
}

/// Every later token, in both directions ([RFC 4178] §4.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegTokenResp {
    /// `negState`.
    pub neg_state: Option<NegState>,
    /// `supportedMech`: the acceptor's choice, in its first reply only.
    pub supported_mech: Option<Oid>,
    /// `responseToken`: the mechanism's token.
    pub response_token: Option<Vec<u8>>,
    /// `mechListMIC`.
    pub mech_list_mic: Option<Vec<u8>>,
}

/// What a client put in `Authorization: Negotiate …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingToken {
    /// A SPNEGO `NegTokenInit` (inside the GSS-API framing).
    Init(NegTokenInit),
    /// A SPNEGO `NegTokenResp`.
    Resp(NegTokenResp),
    /// A raw NTLMSSP message (no SPNEGO framing).
    RawNtlm(Vec<u8>),
    /// A raw Kerberos GSS-API token (no SPNEGO framing).
    RawKerberos,
}

/// Upper bound on `mechTypes` entries; real clients send at most five.
const MAX_MECH_TYPES: usize = 32;

const TAG_OID: u8 = 0x06;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_APPLICATION_0: u8 = 0x60;
const fn context(n: u8) -> u8 {
    0xa0 | n
}

/// Reads one `Negotiate` token.
pub fn parse_token(token: &[u8]) -> Result<IncomingToken, SpnegoError> {
    if token.starts_with(ntlm::SIGNATURE) {
        return Ok(IncomingToken::RawNtlm(token.to_vec()));
    }
    let mut outer = Der::new(token);
    let first = outer.read()?;
    if !outer.is_empty() {
        return Err(SpnegoError::Malformed("bytes after the token"));
    }
    match first.tag {
        // InitialContextToken ::= [APPLICATION 0] IMPLICIT SEQUENCE { thisMech, innerContextToken }
        TAG_APPLICATION_0 => {
            let mut inner = Der::new(first.content);
            let mech = Oid::from_der_content(inner.expect(TAG_OID, "thisMech")?);
            if mech.is_kerberos() {
                return Ok(IncomingToken::RawKerberos);
            }
            if mech != Oid::SPNEGO {
                return Err(SpnegoError::NotSpnego);
            }
            let body = inner.read()?;
            if !inner.is_empty() {
                return Err(SpnegoError::Malformed("bytes after the NegotiationToken"));
            }
            match body.tag {
                t if t == context(0) => parse_init(body.content).map(IncomingToken::Init),
                t if t == context(1) => parse_resp(body.content).map(IncomingToken::Resp),
                _ => Err(SpnegoError::Malformed("unknown NegotiationToken choice")),
            }
        }
        t if t == context(1) => parse_resp(first.content).map(IncomingToken::Resp),
        _ => Err(SpnegoError::Malformed(
            "neither NTLMSSP nor a GSS-API/SPNEGO token",
        )),
    }
}

/// Which acceptor a `Negotiate` token is for, on a server that accepts Kerberos as well as NTLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Kerberos: a bare Kerberos GSS-API token (as IIS accepts), or a `NegTokenInit` whose first
    /// mechanism among Kerberos 5 (`1.2.840.113554.1.2.2`, or Microsoft's `1.2.840.48018.1.2.2`)
    /// and NTLMSSP is Kerberos 5.
    Kerberos,
    /// NTLM: a raw NTLMSSP message, or a `NegTokenInit` that offers NTLMSSP before Kerberos 5 (or
    /// offers no Kerberos 5 at all; the NTLM path then answers as it does without Kerberos).
    Ntlm,
    /// A `NegTokenResp`: the next leg of whatever the connection started.
    Continuation,
}

/// The mechanism a client's token asks for. [RFC 4178] has the acceptor honour the initiator's
/// order, and only the first mechanism's optimistic token can be used without another round
/// trip, so the first supported mechanism in `mechTypes` wins. Mechanisms neither acceptor speaks
/// (NEGOEX, IAKERB, user-to-user) are skipped: Windows lists NEGOEX between Kerberos and NTLM.
pub fn mechanism_of(token: &[u8]) -> Result<Mechanism, SpnegoError> {
    Ok(match parse_token(token)? {
        IncomingToken::RawKerberos => Mechanism::Kerberos,
        IncomingToken::RawNtlm(_) => Mechanism::Ntlm,
        IncomingToken::Resp(_) => Mechanism::Continuation,
        IncomingToken::Init(init) => init
            .mech_types
            .iter()
            .find_map(|m| {
                if *m == Oid::KRB5 || *m == Oid::MS_KRB5 {
                    Some(Mechanism::Kerberos)
                } else if *m == Oid::NTLMSSP {
                    Some(Mechanism::Ntlm)
                } else {
                    None
                }
            })
            .unwrap_or(Mechanism::Ntlm),
    })
}

/// `NegTokenInit ::= SEQUENCE { mechTypes [0], reqFlags [1] OPTIONAL, mechToken [2] OPTIONAL,
/// mechListMIC [3] OPTIONAL }`; the content of the `[0]` choice.
fn parse_init(choice: &[u8]) -> Result<NegTokenInit, SpnegoError> {
    let mut fields = sequence_fields(choice)?;
    let mut mech_types = None;
    let mut mech_token = None;
    let mut mech_list_mic = None;
    while let Some((n, content)) = fields.next_field()? {
        match n {
            0 => {
                let mut d = Der::new(content);
                let list = d.read()?;
                if list.tag != TAG_SEQUENCE || !d.is_empty() {
                    return Err(SpnegoError::Malformed("mechTypes is not a SEQUENCE"));
                }
                let mut oids = Vec::new();
                let mut items = Der::new(list.content);
                while !items.is_empty() {
                    if oids.len() == MAX_MECH_TYPES {
                        return Err(SpnegoError::Malformed("too many mechTypes"));
                    }
                    oids.push(Oid::from_der_content(items.expect(TAG_OID, "mechType")?));
                }
                mech_types = Some((oids, list.raw.to_vec()));
            }
            1 => {
                only(content, TAG_BIT_STRING, "reqFlags")?;
            }
            2 => mech_token = Some(only(content, TAG_OCTET_STRING, "mechToken")?.to_vec()),
            // [3] is mechListMIC in RFC 4178; [MS-SPNG]'s NegTokenInit2 puts negHints there and
            // the MIC in [4]. Clients send the RFC form; accept an OCTET STRING in either.
            3 | 4 => {
                let mut d = Der::new(content);
                let value = d.read()?;
                if value.tag == TAG_OCTET_STRING {
                    mech_list_mic = Some(value.content.to_vec());
                }
            }
            _ => {}
        }
    }
    let (mech_types, mech_types_der) =
        mech_types.ok_or(SpnegoError::Malformed("NegTokenInit without mechTypes"))?;
    Ok(NegTokenInit {
        mech_types,
        mech_types_der,
        mech_token,
        mech_list_mic,
    })
}

/// `NegTokenResp ::= SEQUENCE { negState [0] ENUMERATED OPTIONAL, supportedMech [1] OPTIONAL,
/// responseToken [2] OPTIONAL, mechListMIC [3] OPTIONAL }`; the content of the `[1]` choice.
fn parse_resp(choice: &[u8]) -> Result<NegTokenResp, SpnegoError> {
    let mut fields = sequence_fields(choice)?;
    let mut resp = NegTokenResp::default();
    while let Some((n, content)) = fields.next_field()? {
        match n {
            0 => {
                let v = only(content, TAG_ENUMERATED, "negState")?;
                let state = match v {
                    [b] => NegState::from_wire(*b),
                    _ => None,
                };
                resp.neg_state = Some(state.ok_or(SpnegoError::Malformed("unknown negState"))?);
            }
            1 => {
                resp.supported_mech = Some(Oid::from_der_content(only(
                    content,
                    TAG_OID,
                    "supportedMech",
                )?));
            }
            2 => {
                resp.response_token =
                    Some(only(content, TAG_OCTET_STRING, "responseToken")?.to_vec());
            }
            3 => {
                resp.mech_list_mic = Some(only(content, TAG_OCTET_STRING, "mechListMIC")?.to_vec());
            }
            _ => {}
        }
    }
    Ok(resp)
}

impl NegTokenResp {
    /// The DER encoding (`[1]` choice of `NegotiationToken`), as sent in the header.
    pub fn encode(&self) -> Vec<u8> {
        let mut fields = Vec::new();
        if let Some(state) = self.neg_state {
            let value = tlv(TAG_ENUMERATED, &[state.to_wire()]);
            fields.extend(tlv(context(0), &value));
        }
        if let Some(mech) = &self.supported_mech {
            fields.extend(tlv(context(1), &tlv(TAG_OID, mech.as_der_content())));
        }
        if let Some(token) = &self.response_token {
            fields.extend(tlv(context(2), &tlv(TAG_OCTET_STRING, token)));
        }
        if let Some(mic) = &self.mech_list_mic {
            fields.extend(tlv(context(3), &tlv(TAG_OCTET_STRING, mic)));
        }
        tlv(context(1), &tlv(TAG_SEQUENCE, &fields))
    }
}

// ---------------------------------------------------------------------------------------------
// DER
// ---------------------------------------------------------------------------------------------

/// One DER element: its tag, its content and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

/// A cursor over consecutive DER elements. Only single-byte tags and definite lengths of at most
/// four bytes are accepted (DER forbids indefinite lengths). Every read is bounds-checked.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn read(&mut self) -> Result<Tlv<'a>, SpnegoError> {
        let data = self.rest;
        let (&tag, after_tag) = data
            .split_first()
            .ok_or(SpnegoError::Malformed("truncated: missing tag"))?;
        if tag & 0x1f == 0x1f {
            return Err(SpnegoError::Malformed("multi-byte tag"));
        }
        let (&first, after_len) = after_tag
            .split_first()
            .ok_or(SpnegoError::Malformed("truncated: missing length"))?;
        let (len, body) = if first < 0x80 {
            (usize::from(first), after_len)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(SpnegoError::Malformed("indefinite length"));
            }
            if n > 4 {
                return Err(SpnegoError::Malformed("length too large"));
            }
            let bytes = after_len
                .get(..n)
                .ok_or(SpnegoError::Malformed("truncated length"))?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &after_len[n..])
        };
        let content = body
            .get(..len)
            .ok_or(SpnegoError::Malformed("length runs past the end"))?;
        let header_len = data.len() - body.len();
        let total = header_len + len;
        self.rest = &data[total..];
        Ok(Tlv {
            tag,
            content,
            raw: &data[..total],
        })
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], SpnegoError> {
        let tlv = self.read()?;
        if tlv.tag != tag {
            return Err(SpnegoError::Malformed(what));
        }
        Ok(tlv.content)
    }
}

/// The content of an explicitly tagged field, which must be exactly one element with `tag`.
fn only<'a>(content: &'a [u8], tag: u8, what: &'static str) -> Result<&'a [u8], SpnegoError> {
    let mut d = Der::new(content);
    let value = d.expect(tag, what)?;
    if !d.is_empty() {
        return Err(SpnegoError::Malformed(what));
    }
    Ok(value)
}

/// Iterates the `[n]`-tagged fields of the single SEQUENCE in `choice`, in increasing order.
struct SequenceFields<'a> {
    der: Der<'a>,
    last: Option<u8>,
}

fn sequence_fields(choice: &[u8]) -> Result<SequenceFields<'_>, SpnegoError> {
    let mut d = Der::new(choice);
    let seq = d.read()?;
    if seq.tag != TAG_SEQUENCE || !d.is_empty() {
        return Err(SpnegoError::Malformed("expected one SEQUENCE"));
    }
    Ok(SequenceFields {
        der: Der::new(seq.content),
        last: None,
    })
}

impl<'a> SequenceFields<'a> {
    fn next_field(&mut self) -> Result<Option<(u8, &'a [u8])>, SpnegoError> {
        if self.der.is_empty() {
            return Ok(None);
        }
        let field = self.der.read()?;
        if field.tag & 0xe0 != 0xa0 {
            return Err(SpnegoError::Malformed("expected a context-specific field"));
        }
        let n = field.tag & 0x1f;
        if self.last.is_some_and(|last| n <= last) {
            return Err(SpnegoError::Malformed("fields out of order or repeated"));
        }
        self.last = Some(n);
        Ok(Some((n, field.content)))
    }
}

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

// ---------------------------------------------------------------------------------------------
// The Negotiate state machine
// ---------------------------------------------------------------------------------------------

/// Why a `Negotiate` exchange was refused. Goes to logs; the client sees a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiateReject {
    /// The token could not be read.
    #[error(transparent)]
    Malformed(#[from] SpnegoError),
    /// The client offered only Kerberos. Answer 401 with `WWW-Authenticate: NTLM` so that it falls
    /// back to NTLM.
    #[error("client offered only Kerberos, which pfgate does not accept")]
    KerberosNotSupported,
    /// The client offered neither NTLM nor Kerberos.
    #[error("client offered no mechanism pfgate supports")]
    NoCommonMechanism,
    /// A token arrived in the wrong state (a `NegTokenResp` without a `NegTokenInit`).
    #[error("SPNEGO token out of sequence")]
    UnexpectedToken,
    /// The client ended the negotiation (`negState = reject`) or sent no mechanism token.
    #[error("client abandoned the SPNEGO negotiation")]
    ClientRejected,
    /// `mechListMIC` was required (NTLM was not the client's first choice) and not sent.
    #[error("required mechListMIC missing")]
    MechListMicMissing,
    /// `mechListMIC` did not verify: the mechanism list may have been tampered with.
    #[error("mechListMIC does not verify")]
    BadMechListMic,
    /// NTLM refused the client.
    #[error("NTLM: {0}")]
    Ntlm(RejectReason),
}

/// Where one connection is in a `Negotiate` exchange. Start with `NegotiateState::default()`; after
/// `Authenticated` or `Rejected` start again from the default.
#[derive(Debug, Default)]
pub struct NegotiateState {
    phase: Phase,
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Initial,
    /// NTLM without SPNEGO framing.
    RawNtlm(NtlmState),
    /// NTLM inside SPNEGO.
    Spnego {
        ntlm: NtlmState,
        /// The client's `mechTypes` DER, for `mechListMIC`.
        mech_types_der: Vec<u8>,
        /// NTLM was not the client's first choice: a `mechListMIC` is required.
        mic_required: bool,
    },
}

/// What to do after a `Negotiate` step.
#[derive(Debug)]
#[must_use]
pub enum NegotiateStep {
    /// Answer 401 with `WWW-Authenticate: Negotiate <base64(token)>` and keep `state`.
    Continue {
        /// The token to send.
        token: Vec<u8>,
        /// The state to keep with the connection.
        state: NegotiateState,
    },
    /// The client is authenticated. If `token` is `Some`, send it in
    /// `WWW-Authenticate: Negotiate <base64(token)>` on the successful response.
    Authenticated {
        /// Who the client is.
        principal: Principal,
        /// The final SPNEGO token: `accept-completed`, with a `mechListMIC` if the client sent
        /// one.
        token: Option<Vec<u8>>,
    },
    /// Refused: answer 401 (see [`NegotiateReject::KerberosNotSupported`]) and start again.
    Rejected(NegotiateReject),
}

impl NegotiateState {
    /// Handles one `Negotiate` token (already base64-decoded).
    pub fn step(self, acceptor: &NtlmAcceptor<'_>, token: &[u8]) -> NegotiateStep {
        self.step_at(acceptor, token, Clock::now())
    }

    /// [`step`](Self::step) with an explicit clock.
    pub fn step_at(self, acceptor: &NtlmAcceptor<'_>, token: &[u8], clock: Clock) -> NegotiateStep {
        let incoming = match parse_token(token) {
            Ok(t) => t,
            Err(e) => return NegotiateStep::Rejected(NegotiateReject::Malformed(e)),
        };
        match (incoming, self.phase) {
            (IncomingToken::RawKerberos, _) => {
                NegotiateStep::Rejected(NegotiateReject::KerberosNotSupported)
            }
            // A raw NTLM message: continue a raw exchange, or start one.
            (IncomingToken::RawNtlm(msg), phase) => {
                let ntlm = match phase {
                    Phase::RawNtlm(ntlm) => ntlm,
                    _ => NtlmState::Initial,
                };
                match acceptor.step_at(ntlm, &msg, clock) {
                    NtlmStep::Challenge { token, state } => NegotiateStep::Continue {
                        token,
                        state: NegotiateState {
                            phase: Phase::RawNtlm(state),
                        },
                    },
                    NtlmStep::Authenticated { principal, .. } => NegotiateStep::Authenticated {
                        principal,
                        token: None,
                    },
                    NtlmStep::Rejected(r) => NegotiateStep::Rejected(NegotiateReject::Ntlm(r)),
                }
            }
            // A NegTokenInit always starts a new negotiation.
            (IncomingToken::Init(init), _) => start(acceptor, init, clock),
            (
                IncomingToken::Resp(resp),
                Phase::Spnego {
                    ntlm,
                    mech_types_der,
                    mic_required,
                },
            ) => continue_spnego(acceptor, resp, ntlm, mech_types_der, mic_required, clock),
            (IncomingToken::Resp(_), _) => {
                NegotiateStep::Rejected(NegotiateReject::UnexpectedToken)
            }
        }
    }
}

/// First SPNEGO token: choose NTLM, use the optimistic token if it is NTLM's.
fn start(acceptor: &NtlmAcceptor<'_>, init: NegTokenInit, clock: Clock) -> NegotiateStep {
    let Some(position) = init.mech_types.iter().position(|m| *m == Oid::NTLMSSP) else {
        let reject = if init.mech_types.iter().any(Oid::is_kerberos) {
            NegotiateReject::KerberosNotSupported
        } else {
            NegotiateReject::NoCommonMechanism
        };
        return NegotiateStep::Rejected(reject);
    };
    let preferred = position == 0;
    match (preferred, init.mech_token) {
        (true, Some(mech_token)) => {
            match acceptor.step_at(NtlmState::Initial, &mech_token, clock) {
                NtlmStep::Challenge { token, state } => NegotiateStep::Continue {
                    token: NegTokenResp {
                        neg_state: Some(NegState::AcceptIncomplete),
                        supported_mech: Some(Oid::NTLMSSP),
                        response_token: Some(token),
                        mech_list_mic: None,
                    }
                    .encode(),
                    state: NegotiateState {
                        phase: Phase::Spnego {
                            ntlm: state,
                            mech_types_der: init.mech_types_der,
                            mic_required: false,
                        },
                    },
                },
                NtlmStep::Authenticated { .. } => {
                    NegotiateStep::Rejected(NegotiateReject::Ntlm(RejectReason::UnexpectedMessage))
                }
                NtlmStep::Rejected(r) => NegotiateStep::Rejected(NegotiateReject::Ntlm(r)),
            }
        }
        // No usable optimistic token: name NTLM and wait for its NEGOTIATE. When NTLM was not the
        // client's first choice, ask for the mechListMIC ([RFC 4178] §5).
        (_, _) => NegotiateStep::Continue {
            token: NegTokenResp {
                neg_state: Some(if preferred {
                    NegState::AcceptIncomplete
                } else {
                    NegState::RequestMic
                }),
                supported_mech: Some(Oid::NTLMSSP),
                response_token: None,
                mech_list_mic: None,
            }
            .encode(),
            state: NegotiateState {
                phase: Phase::Spnego {
                    ntlm: NtlmState::Initial,
                    mech_types_der: init.mech_types_der,
                    mic_required: !preferred,
                },
            },
        },
    }
}

/// A later SPNEGO token: pass the NTLM token on, and check `mechListMIC` at the end.
fn continue_spnego(
    acceptor: &NtlmAcceptor<'_>,
    resp: NegTokenResp,
    ntlm: NtlmState,
    mech_types_der: Vec<u8>,
    mic_required: bool,
    clock: Clock,
) -> NegotiateStep {
    if resp.neg_state == Some(NegState::Reject) {
        return NegotiateStep::Rejected(NegotiateReject::ClientRejected);
    }
    if resp
        .supported_mech
        .as_ref()
        .is_some_and(|m| *m != Oid::NTLMSSP)
    {
        return NegotiateStep::Rejected(NegotiateReject::UnexpectedToken);
    }
    let Some(token) = resp.response_token else {
        return NegotiateStep::Rejected(NegotiateReject::ClientRejected);
    };
    match acceptor.step_at(ntlm, &token, clock) {
        NtlmStep::Challenge { token, state } => NegotiateStep::Continue {
            token: NegTokenResp {
                neg_state: Some(NegState::AcceptIncomplete),
                supported_mech: None,
                response_token: Some(token),
                mech_list_mic: None,
            }
            .encode(),
            state: NegotiateState {
                phase: Phase::Spnego {
                    ntlm: state,
                    mech_types_der,
                    mic_required,
                },
            },
        },
        NtlmStep::Authenticated { principal, session } => {
            let mech_list_mic = match resp.mech_list_mic {
                Some(mic) => {
                    if !session.verify_client_signature(&mech_types_der, &mic) {
                        return NegotiateStep::Rejected(NegotiateReject::BadMechListMic);
                    }
                    match session.server_signature(&mech_types_der) {
                        Some(ours) => Some(ours.to_vec()),
                        None => return NegotiateStep::Rejected(NegotiateReject::BadMechListMic),
                    }
                }
                None if mic_required => {
                    return NegotiateStep::Rejected(NegotiateReject::MechListMicMissing);
                }
                None => None,
            };
            NegotiateStep::Authenticated {
                principal,
                token: Some(
                    NegTokenResp {
                        neg_state: Some(NegState::AcceptCompleted),
                        supported_mech: None,
                        response_token: None,
                        mech_list_mic,
                    }
                    .encode(),
                ),
            }
        }
        NtlmStep::Rejected(r) => NegotiateStep::Rejected(NegotiateReject::Ntlm(r)),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ntlm::test_client::{self, ClientOpts};
    use crate::auth::ntlm::{
        NtlmAccountMap, NtlmServerConfig, PendingChallenge, ReplayCache, SessionKey,
    };

    fn unhex(s: &str) -> Vec<u8> {
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
        a
    }

    fn opts() -> ClientOpts {
        ClientOpts::new("CONTOSO", "svc-mim", "S3cret!")
    }

    /// Builds the client's first token: InitialContextToken { SPNEGO, [0] NegTokenInit }.
    fn init_token(mechs: &[Oid], mech_token: Option<&[u8]>, mic: Option<&[u8]>) -> Vec<u8> {
        let list: Vec<u8> = mechs
            .iter()
            .flat_map(|m| tlv(TAG_OID, m.as_der_content()))
            .collect();
        let mut fields = tlv(context(0), &tlv(TAG_SEQUENCE, &list));
        fields.extend(tlv(context(1), &tlv(TAG_BIT_STRING, &[0x00])));
        if let Some(t) = mech_token {
            fields.extend(tlv(context(2), &tlv(TAG_OCTET_STRING, t)));
        }
        if let Some(m) = mic {
            fields.extend(tlv(context(3), &tlv(TAG_OCTET_STRING, m)));
        }
        let neg = tlv(context(0), &tlv(TAG_SEQUENCE, &fields));
        let mut inner = tlv(TAG_OID, Oid::SPNEGO.as_der_content());
        inner.extend(neg);
        tlv(TAG_APPLICATION_0, &inner)
    }

    fn mech_types_der(mechs: &[Oid]) -> Vec<u8> {
        let list: Vec<u8> = mechs
            .iter()
            .flat_map(|m| tlv(TAG_OID, m.as_der_content()))
            .collect();
        tlv(TAG_SEQUENCE, &list)
    }

    fn resp_token(response: &[u8], mic: Option<Vec<u8>>) -> Vec<u8> {
        NegTokenResp {
            neg_state: None,
            supported_mech: None,
            response_token: Some(response.to_vec()),
            mech_list_mic: mic,
        }
        .encode()
    }

    fn resp(token: &[u8]) -> NegTokenResp {
        match parse_token(token).unwrap() {
            IncomingToken::Resp(r) => r,
            other => panic!("expected NegTokenResp, got {other:?}"),
        }
    }

    /// The client's mechListMIC: its first signature over `mechTypes`, made with the client's
    /// ExportedSessionKey and client-to-server keys.
    fn client_mic(exported: [u8; 16], flags: u32, data: &[u8]) -> Vec<u8> {
        SessionKey::for_tests(exported, flags)
            .client_signature_for_tests(data)
            .to_vec()
    }

    struct Exchange {
        step: NegotiateStep,
        server_mic_check: Option<(SessionKey, Vec<u8>)>,
    }

    /// Full SPNEGO exchange with NTLM as the first and only mech, optimistic token, optional MIC.
    fn spnego_exchange(mechs: &[Oid], send_mic: bool, client: &ClientOpts) -> Exchange {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let t1 = test_client::negotiate(client);
        let ntlm_first = mechs.first() == Some(&Oid::NTLMSSP);
        let first = init_token(mechs, Some(&t1), None);
        let NegotiateStep::Continue { token, state } =
            NegotiateState::default().step(&acceptor, &first)
        else {
            panic!("expected Continue");
        };
        let reply = resp(&token);
        assert_eq!(reply.supported_mech, Some(Oid::NTLMSSP));
        let (t2, state) = if ntlm_first {
            assert_eq!(reply.neg_state, Some(NegState::AcceptIncomplete));
            (reply.response_token.unwrap(), state)
        } else {
            assert_eq!(reply.neg_state, Some(NegState::RequestMic));
            assert_eq!(reply.response_token, None);
            let NegotiateStep::Continue { token, state } =
                state.step(&acceptor, &resp_token(&t1, None))
            else {
                panic!("expected Continue");
            };
            let reply = resp(&token);
            assert_eq!(reply.neg_state, Some(NegState::AcceptIncomplete));
            assert_eq!(reply.supported_mech, None);
            (reply.response_token.unwrap(), state)
        };
        let t3 = test_client::authenticate(client, &t1, &t2);
        let negotiated = test_client::read_challenge(&t2).flags;
        let der = mech_types_der(mechs);
        let mic = send_mic.then(|| client_mic(t3.exported_session_key, negotiated, &der));
        let step = state.step(&acceptor, &resp_token(&t3.message, mic));
        Exchange {
            step,
            server_mic_check: Some((
                SessionKey::for_tests(t3.exported_session_key, negotiated),
                der,
            )),
        }
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(Oid::SPNEGO.to_string(), "1.3.6.1.5.5.2");
        assert_eq!(Oid::NTLMSSP.to_string(), "1.3.6.1.4.1.311.2.2.10");
        assert_eq!(Oid::KRB5.to_string(), "1.2.840.113554.1.2.2");
        assert_eq!(Oid::MS_KRB5.to_string(), "1.2.840.48018.1.2.2");
        assert_eq!(Oid::NEGOEX.to_string(), "1.3.6.1.4.1.311.2.2.30");
        assert_eq!(Oid::from_der_content(&[0x2b, 0x86]).to_string(), "2b86");
        assert_eq!(Oid::from_der_content(&[]).to_string(), "");
    }

    #[test]
    fn parses_neg_token_init() {
        let t1 = test_client::negotiate(&opts());
        let mechs = [Oid::NTLMSSP, Oid::KRB5];
        let tok = init_token(&mechs, Some(&t1), Some(b"mic"));
        let IncomingToken::Init(init) = parse_token(&tok).unwrap() else {
            panic!()
        };
        assert_eq!(init.mech_types, mechs);
        assert_eq!(init.mech_types_der, mech_types_der(&mechs));
        assert_eq!(init.mech_token.as_deref(), Some(&t1[..]));
        assert_eq!(init.mech_list_mic.as_deref(), Some(&b"mic"[..]));
    }

    #[test]
    fn neg_token_resp_round_trips() {
        let long = vec![0x5a; 300]; // forces a two-byte length
        for r in [
            NegTokenResp::default(),
            NegTokenResp {
                neg_state: Some(NegState::AcceptIncomplete),
                supported_mech: Some(Oid::NTLMSSP),
                response_token: Some(long.clone()),
                mech_list_mic: None,
            },
            NegTokenResp {
                neg_state: Some(NegState::AcceptCompleted),
                supported_mech: None,
                response_token: None,
                mech_list_mic: Some(vec![1; 16]),
            },
            NegTokenResp {
                neg_state: Some(NegState::RequestMic),
                supported_mech: Some(Oid::KRB5),
                response_token: Some(vec![]),
                mech_list_mic: Some(long.clone()),
            },
        ] {
            assert_eq!(resp(&r.encode()), r);
        }
        // Hand-encoded accept-incomplete + NTLMSSP + 2-byte token, byte for byte.
        let r = NegTokenResp {
            neg_state: Some(NegState::AcceptIncomplete),
            supported_mech: Some(Oid::NTLMSSP),
            response_token: Some(vec![0xab, 0xcd]),
            mech_list_mic: None,
        };
        assert_eq!(r.encode(), expected_resp_bytes());
    }

    /// `a1 L 30 L [a0 03 0a 01 01] [a1 0c 06 0a <ntlmssp>] [a2 04 04 02 ab cd]`.
    fn expected_resp_bytes() -> Vec<u8> {
        unhex(
            "a1 1b 30 19 a0 03 0a 01 01 a1 0c 06 0a 2b 06 01 04 01 82 37 02 02 0a \
             a2 04 04 02 ab cd",
        )
    }

    #[test]
    fn detects_raw_ntlm_and_raw_kerberos() {
        let t1 = test_client::negotiate(&opts());
        assert_eq!(
            parse_token(&t1).unwrap(),
            IncomingToken::RawNtlm(t1.clone())
        );
        let mut krb = tlv(TAG_OID, Oid::KRB5.as_der_content());
        krb.extend_from_slice(&[0x01, 0x00, 0x6e, 0x00]);
        let krb = tlv(TAG_APPLICATION_0, &krb);
        assert_eq!(parse_token(&krb).unwrap(), IncomingToken::RawKerberos);
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        assert!(matches!(
            NegotiateState::default().step(&acceptor, &krb),
            NegotiateStep::Rejected(NegotiateReject::KerberosNotSupported)
        ));
    }

    #[test]
    fn kerberos_only_init_is_reported_as_such() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let tok = init_token(&[Oid::MS_KRB5, Oid::KRB5], Some(&[0x60, 0x00]), None);
        assert!(matches!(
            NegotiateState::default().step(&acceptor, &tok),
            NegotiateStep::Rejected(NegotiateReject::KerberosNotSupported)
        ));
        let tok = init_token(&[Oid::NEGOEX], None, None);
        assert!(matches!(
            NegotiateState::default().step(&acceptor, &tok),
            NegotiateStep::Rejected(NegotiateReject::NoCommonMechanism)
        ));
        let tok = init_token(&[], None, None);
        assert!(matches!(
            NegotiateState::default().step(&acceptor, &tok),
            NegotiateStep::Rejected(NegotiateReject::NoCommonMechanism)
        ));
    }

    #[test]
    fn raw_ntlm_in_negotiate_header_authenticates() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let client = opts();
        let t1 = test_client::negotiate(&client);
        let NegotiateStep::Continue { token: t2, state } =
            NegotiateState::default().step(&acceptor, &t1)
        else {
            panic!()
        };
        assert!(t2.starts_with(ntlm::SIGNATURE), "raw in, raw out");
        let t3 = test_client::authenticate(&client, &t1, &t2);
        match state.step(&acceptor, &t3.message) {
            NegotiateStep::Authenticated { principal, token } => {
                assert_eq!(principal.to_string(), "CONTOSO\\svc-mim");
                assert_eq!(token, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spnego_ntlm_first_with_mech_list_mic() {
        let ex = spnego_exchange(&[Oid::NTLMSSP], true, &opts());
        let NegotiateStep::Authenticated { principal, token } = ex.step else {
            panic!("{:?}", ex.step)
        };
        assert_eq!(principal.user, "svc-mim");
        let done = resp(&token.unwrap());
        assert_eq!(done.neg_state, Some(NegState::AcceptCompleted));
        // The server's mechListMIC is its first signature, which the client can check.
        let (key, der) = ex.server_mic_check.unwrap();
        assert_eq!(
            done.mech_list_mic,
            Some(key.server_signature(&der).unwrap().to_vec())
        );
    }

    #[test]
    fn spnego_ntlm_first_without_mech_list_mic() {
        for client in [opts(), opts().without_mic().without_key_exch()] {
            let ex = spnego_exchange(&[Oid::NTLMSSP, Oid::KRB5], false, &client);
            let NegotiateStep::Authenticated { token, .. } = ex.step else {
                panic!("{:?}", ex.step)
            };
            let done = resp(&token.unwrap());
            assert_eq!(done.neg_state, Some(NegState::AcceptCompleted));
            assert_eq!(done.mech_list_mic, None);
        }
    }

    #[test]
    fn spnego_ntlm_not_first_requires_mech_list_mic() {
        let mechs = [Oid::NEGOEX, Oid::MS_KRB5, Oid::KRB5, Oid::NTLMSSP];
        let ex = spnego_exchange(&mechs, true, &opts());
        assert!(
            matches!(ex.step, NegotiateStep::Authenticated { .. }),
            "{:?}",
            ex.step
        );
        let ex = spnego_exchange(&mechs, false, &opts());
        assert!(
            matches!(
                ex.step,
                NegotiateStep::Rejected(NegotiateReject::MechListMicMissing)
            ),
            "{:?}",
            ex.step
        );
        let ex = spnego_exchange(&mechs, true, &opts().without_key_exch());
        assert!(
            matches!(ex.step, NegotiateStep::Authenticated { .. }),
            "{:?}",
            ex.step
        );
    }

    #[test]
    fn spnego_rejects_bad_mech_list_mic() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let client = opts();
        let mechs = [Oid::NTLMSSP, Oid::KRB5];
        let t1 = test_client::negotiate(&client);
        let NegotiateStep::Continue { token, state } =
            NegotiateState::default().step(&acceptor, &init_token(&mechs, Some(&t1), None))
        else {
            panic!()
        };
        let t2 = resp(&token).response_token.unwrap();
        let t3 = test_client::authenticate(&client, &t1, &t2);
        let negotiated = test_client::read_challenge(&t2).flags;
        // Signed over a different (downgraded) list.
        let mic = client_mic(
            t3.exported_session_key,
            negotiated,
            &mech_types_der(&[Oid::NTLMSSP]),
        );
        assert!(matches!(
            state.step(&acceptor, &resp_token(&t3.message, Some(mic))),
            NegotiateStep::Rejected(NegotiateReject::BadMechListMic)
        ));
    }

    #[test]
    fn spnego_passes_ntlm_rejections_through() {
        let mut client = opts();
        client.password = "wrong".into();
        let ex = spnego_exchange(&[Oid::NTLMSSP], true, &client);
        assert!(matches!(
            ex.step,
            NegotiateStep::Rejected(NegotiateReject::Ntlm(RejectReason::WrongPassword))
        ));
        let client = ClientOpts::new("EVIL", "mallory", "whatever").without_mic();
        let ex = spnego_exchange(&[Oid::NTLMSSP], false, &client);
        assert!(matches!(
            ex.step,
            NegotiateStep::Rejected(NegotiateReject::Ntlm(RejectReason::UnknownAccount))
        ));
    }

    #[test]
    fn spnego_rejects_out_of_sequence_and_client_reject() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        // A NegTokenResp first.
        assert!(matches!(
            NegotiateState::default().step(&acceptor, &resp_token(b"x", None)),
            NegotiateStep::Rejected(NegotiateReject::UnexpectedToken)
        ));
        // negState = reject from the client.
        let t1 = test_client::negotiate(&opts());
        let start = || {
            let NegotiateStep::Continue { state, .. } = NegotiateState::default()
                .step(&acceptor, &init_token(&[Oid::NTLMSSP], Some(&t1), None))
            else {
                panic!()
            };
            state
        };
        let reject = NegTokenResp {
            neg_state: Some(NegState::Reject),
            ..NegTokenResp::default()
        }
        .encode();
        assert!(matches!(
            start().step(&acceptor, &reject),
            NegotiateStep::Rejected(NegotiateReject::ClientRejected)
        ));
        // No responseToken.
        let empty = NegTokenResp::default().encode();
        assert!(matches!(
            start().step(&acceptor, &empty),
            NegotiateStep::Rejected(NegotiateReject::ClientRejected)
        ));
        // A second NEGOTIATE inside SPNEGO where the AUTHENTICATE belongs restarts NTLM.
        let NegotiateStep::Continue { token, .. } = start().step(&acceptor, &resp_token(&t1, None))
        else {
            panic!()
        };
        assert!(resp(&token).response_token.is_some());
    }

    #[test]
    fn mechanism_follows_the_clients_first_supported_choice() {
        let t1 = test_client::negotiate(&opts());
        let cases = [
            (
                vec![Oid::MS_KRB5, Oid::KRB5, Oid::NEGOEX, Oid::NTLMSSP],
                Mechanism::Kerberos,
            ),
            (vec![Oid::KRB5], Mechanism::Kerberos),
            (
                vec![Oid::NEGOEX, Oid::MS_KRB5, Oid::NTLMSSP],
                Mechanism::Kerberos,
            ),
            (vec![Oid::NTLMSSP, Oid::KRB5], Mechanism::Ntlm),
            (
                vec![Oid::NEGOEX, Oid::NTLMSSP, Oid::MS_KRB5],
                Mechanism::Ntlm,
            ),
            (vec![Oid::IAKERB, Oid::KRB5_U2U], Mechanism::Ntlm),
        ];
        for (mechs, want) in cases {
            assert_eq!(
                mechanism_of(&init_token(&mechs, Some(&t1), None)),
                Ok(want),
                "{mechs:?}"
            );
        }
        assert_eq!(mechanism_of(&t1), Ok(Mechanism::Ntlm));
        assert_eq!(
            mechanism_of(&resp_token(&t1, None)),
            Ok(Mechanism::Continuation)
        );
        // A bare Kerberos GSS-API token: [APPLICATION 0] { thisMech 1.2.840.113554.1.2.2, ... }.
        let mut raw = tlv(TAG_OID, Oid::KRB5.as_der_content());
        raw.extend_from_slice(&[0x01, 0x00, 0x6e, 0x00]);
        assert_eq!(
            mechanism_of(&tlv(TAG_APPLICATION_0, &raw)),
            Ok(Mechanism::Kerberos)
        );
        assert!(mechanism_of(b"\x60\x80").is_err());
        assert!(mechanism_of(b"").is_err());
    }

    #[test]
    fn rejects_malformed_tokens() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x60",
            b"\x60\x80\x06\x00\x00\x00",             // indefinite length
            b"\x60\x85\x01\x00\x00\x00\x00",         // 5-byte length
            b"\x60\x84\xff\xff\xff\xff",             // length past the end
            b"\x7f\x01\x00",                         // multi-byte tag
            b"\x60\x02\x06\x00",                     // empty OID then nothing
            b"\x60\x04\x06\x02\x2a\x03",             // unknown mechanism
            b"\xa1\x02\x31\x00",                     // resp: not a SEQUENCE
            b"\xa1\x05\x30\x03\xa0\x01\x0a",         // negState truncated
            b"\xa1\x07\x30\x05\xa0\x03\x0a\x01\x07", // unknown negState
            b"\xa1\x06\x30\x04\xa2\x02\x04\x00\xff", // trailing byte
            b"\xa1\x08\x30\x06\xa2\x02\x04\x00\xa2\x00", // repeated field
            b"\xa1\x04\x30\x02\x04\x00",             // not a context field
            b"NTLMSSQ\0",
            b"\xa0\x02\x30\x00", // bare NegTokenInit without GSS framing
        ];
        for &c in cases {
            assert!(parse_token(c).is_err(), "{c:02x?}");
        }
        // NegTokenInit without mechTypes.
        let fields = tlv(context(2), &tlv(TAG_OCTET_STRING, b"x"));
        let mut inner = tlv(TAG_OID, Oid::SPNEGO.as_der_content());
        inner.extend(tlv(context(0), &tlv(TAG_SEQUENCE, &fields)));
        assert!(parse_token(&tlv(TAG_APPLICATION_0, &inner)).is_err());
        // Too many mechTypes.
        let many = vec![Oid::KRB5; MAX_MECH_TYPES + 1];
        assert!(parse_token(&init_token(&many, None, None)).is_err());
    }

    // pyspnego 0.12.4 with `protocol="negotiate"` (NTLM inside SPNEGO, with mechListMIC), captured
    // once against this acceptor (CONTOSO\svc-mim / "S3cret!"). pyspnego accepted NEG_FINAL,
    // including its mechListMIC, and reported the context complete; with one bit of that MIC
    // flipped it raised BadMICError.
    const NEG_C0: &str =
        "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d535350000100\
        0000378208e200000000280000000000000028000000000c04000000000f";
    const NEG_S0: &str =
        "a181d63081d3a0030a0101a10c060a2b06010401823702020aa281bd0481ba4e544c4d53535000020000000e\
        000e0038000000358289e252f652c2ff12e248000000000000000074007400460000000a007c4f0000000f43\
        004f004e0054004f0053004f0002000e0043004f004e0054004f0053004f0001000c00500046004700410054\
        0045000400160063006f006e0074006f0073006f002e0063006f006d00030024007000660067006100740065\
        002e0063006f006e0074006f0073006f002e0063006f006d00070008003e344e49f47cdd0100000000";
    const NEG_C1: &str =
        "a18201a33082019fa0030a0101a28201820482017e4e544c4d53535000030000001800180058000000de00de\
        00700000000e000e004e0100000e000e005c010000040004006a010000100010006e010000358289e2000c04\
        000000000f1bf767ff33728dd452f337ea9ba1240d0000000000000000000000000000000000000000000000\
        00751094834678c88146d4b4a7342a0dd601010000000000003e344e49f47cdd01051dbe683fc919fb000000\
        0002000e0043004f004e0054004f0053004f0001000c005000460047004100540045000400160063006f006e\
        0074006f0073006f002e0063006f006d00030024007000660067006100740065002e0063006f006e0074006f\
        0073006f002e0063006f006d00070008003e344e49f47cdd0109002e0048005400540050002f007000660067\
        006100740065002e0063006f006e0074006f0073006f002e0063006f006d0006000400020000000000000000\
        00000043004f004e0054004f0053004f007300760063002d006d0069006d0056004d008c46babc5e0bbf7521\
        4bd1819c33e4f1a31204100100000057e2048689c9add000000000";
    const NEG_FINAL: &str = "a11b3019a0030a0100a31204100100000038189f08fdb5cd2b00000000";

    fn replay_pyspnego(c1: &[u8], password: &str) -> NegotiateStep {
        let IncomingToken::Init(init) = parse_token(&unhex(NEG_C0)).unwrap() else {
            panic!("C0 is a NegTokenInit")
        };
        assert_eq!(init.mech_types, [Oid::NTLMSSP]);
        let s0 = resp(&unhex(NEG_S0));
        assert_eq!(s0.neg_state, Some(NegState::AcceptIncomplete));
        assert_eq!(s0.supported_mech, Some(Oid::NTLMSSP));
        let pending =
            PendingChallenge::for_tests(&init.mech_token.unwrap(), &s0.response_token.unwrap());
        let clock = pending.clock_for_tests();
        let state = NegotiateState {
            phase: Phase::Spnego {
                ntlm: NtlmState::ChallengeSent(pending),
                mech_types_der: init.mech_types_der,
                mic_required: false,
            },
        };
        let cfg = config();
        let mut acc = NtlmAccountMap::new();
        acc.insert_password("CONTOSO", "svc-mim", password);
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        state.step_at(&acceptor, c1, clock)
    }

    #[test]
    fn interop_pyspnego_negotiate_with_mech_list_mic() {
        let c1 = unhex(NEG_C1);
        assert!(resp(&c1).mech_list_mic.is_some());
        match replay_pyspnego(&c1, "S3cret!") {
            NegotiateStep::Authenticated { principal, token } => {
                assert_eq!(principal.to_string(), "CONTOSO\\svc-mim");
                assert_eq!(token, Some(unhex(NEG_FINAL)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            replay_pyspnego(&c1, "S3cret"),
            NegotiateStep::Rejected(NegotiateReject::Ntlm(RejectReason::WrongPassword))
        ));
        let mut tampered = resp(&c1);
        if let Some(mic) = tampered.mech_list_mic.as_mut() {
            mic[5] ^= 0x01;
        }
        assert!(matches!(
            replay_pyspnego(&tampered.encode(), "S3cret!"),
            NegotiateStep::Rejected(NegotiateReject::BadMechListMic)
        ));
    }

    /// Every prefix of valid tokens, single-bit corruptions and random bytes: no panic, and no
    /// `Authenticated` from anything but the genuine token.
    #[test]
    fn truncated_and_garbage_tokens_never_panic() {
        let cfg = config();
        let acc = accounts();
        let replay = ReplayCache::default();
        let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
        let t1 = test_client::negotiate(&opts());
        let mechs = [Oid::NEGOEX, Oid::KRB5, Oid::NTLMSSP];
        let tokens = [
            init_token(&mechs, Some(&t1), Some(&[7; 16])),
            init_token(&[Oid::NTLMSSP], Some(&t1), None),
            NegTokenResp {
                neg_state: Some(NegState::AcceptIncomplete),
                supported_mech: Some(Oid::NTLMSSP),
                response_token: Some(t1.clone()),
                mech_list_mic: Some(vec![1; 16]),
            }
            .encode(),
        ];
        let spnego_state = || {
            let NegotiateStep::Continue { state, .. } = NegotiateState::default()
                .step(&acceptor, &init_token(&[Oid::NTLMSSP], Some(&t1), None))
            else {
                panic!()
            };
            state
        };
        for tok in &tokens {
            for cut in 0..tok.len() {
                let _ = parse_token(&tok[..cut]);
                let _ = NegotiateState::default().step(&acceptor, &tok[..cut]);
                let step = spnego_state().step(&acceptor, &tok[..cut]);
                assert!(!matches!(step, NegotiateStep::Authenticated { .. }));
            }
            for i in 0..tok.len() * 8 {
                let mut bad = tok.clone();
                bad[i / 8] ^= 1 << (i % 8);
                let _ = NegotiateState::default().step(&acceptor, &bad);
                let step = spnego_state().step(&acceptor, &bad);
                assert!(!matches!(step, NegotiateStep::Authenticated { .. }));
            }
        }
        for i in 0..3000usize {
            let len = i % 200;
            let mut bytes: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if let Some(b) = bytes.first_mut() {
                *b = [0x60, 0xa1, 0xa0, 0x30, *b][i % 5];
            }
            let _ = parse_token(&bytes);
            let step = spnego_state().step(&acceptor, &bytes);
            assert!(!matches!(step, NegotiateStep::Authenticated { .. }));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_state() -> impl Strategy<Value = Option<NegState>> {
            prop_oneof![
                Just(None),
                Just(Some(NegState::AcceptCompleted)),
                Just(Some(NegState::AcceptIncomplete)),
                Just(Some(NegState::Reject)),
                Just(Some(NegState::RequestMic)),
            ]
        }

        proptest! {
            #[test]
            fn neg_token_resp_encodes_and_parses_back(
                neg_state in any_state(),
                mech in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                token in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..70_000)),
                mic in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            ) {
                let r = NegTokenResp {
                    neg_state,
                    supported_mech: mech.map(|m| Oid::from_der_content(&m)),
                    response_token: token,
                    mech_list_mic: mic,
                };
                prop_assert_eq!(resp(&r.encode()), r);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_token(&bytes);
                let cfg = config();
                let acc = accounts();
                let replay = ReplayCache::default();
                let acceptor = NtlmAcceptor::new(&cfg, &acc, &replay);
                let step = NegotiateState::default().step(&acceptor, &bytes);
                let authenticated = matches!(step, NegotiateStep::Authenticated { .. });
                prop_assert!(!authenticated);
            }
        }
    }
}
