//! The NTLM message parser, raw and wrapped in SPNEGO, as the `Authorization: NTLM` and
//! `Authorization: Negotiate` headers deliver it (after base64). The first byte picks the path:
//!   0: one raw message on a fresh connection (NEGOTIATE expected);
//!   1: the rest as the AUTHENTICATE answer to a challenge pfgate issued for a fixed NEGOTIATE;
//!   2: SPNEGO: `len_hi len_lo token1 token2` — token1 on a fresh Negotiate exchange, token2 on the
//!      state it left (NegTokenInit, then NegTokenResp);
//!   other: the bare SPNEGO token parser and mechanism sniffer.
//! No input may panic, hang or allocate without bound; only the configured account may pass.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfgate::auth::ntlm::{
    NtlmAcceptor, NtlmAccountMap, NtlmServerConfig, NtlmState, NtlmStep, ReplayCache,
};
use pfgate::auth::spnego::{self, NegotiateState, NegotiateStep};

/// A NEGOTIATE_MESSAGE as pyspnego sends it (flags for NTLMv2, 128-bit, key exchange, signing).
const NEGOTIATE: &[u8] = &[
    0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, 0x01, 0x00, 0x00, 0x00, 0x37, 0x82, 0x08, 0xe2,
    0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00,
    0x0a, 0x00, 0x63, 0x45, 0x00, 0x00, 0x00, 0x0f,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let config = NtlmServerConfig::new("CONTOSO", "PFGATE", "contoso.com", "pfgate.contoso.com");
    let mut accounts = NtlmAccountMap::new();
    accounts.insert_password("CONTOSO", "svc-mim", "Passw0rd!");
    let replay = ReplayCache::for_config(&config);
    let acceptor = NtlmAcceptor::new(&config, &accounts, &replay);
    match mode {
        0 => {
            let _ = acceptor.step(NtlmState::Initial, rest);
        }
        1 => {
            let NtlmStep::Challenge { state, .. } = acceptor.step(NtlmState::Initial, NEGOTIATE)
            else {
                panic!("pfgate refused a well-formed NEGOTIATE");
            };
            if let NtlmStep::Authenticated { principal, .. } = acceptor.step(state, rest) {
                // Without the password nobody can answer a random challenge: a pass is a bug.
                panic!("authenticated {principal} without the password");
            }
        }
        2 => {
            if rest.len() < 2 {
                return;
            }
            let split = (usize::from(rest[0]) << 8 | usize::from(rest[1])).min(rest.len() - 2);
            let (first, second) = rest[2..].split_at(split);
            match NegotiateState::default().step(&acceptor, first) {
                NegotiateStep::Continue { state, .. } => {
                    if let NegotiateStep::Authenticated { principal, .. } =
                        state.step(&acceptor, second)
                    {
                        panic!("authenticated {principal} without the password");
                    }
                }
                NegotiateStep::Authenticated { principal, .. } => {
                    panic!("authenticated {principal} in one step")
                }
                NegotiateStep::Rejected(r) => {
                    let _ = r.to_string();
                }
            }
        }
        _ => {
            let _ = spnego::parse_token(rest);
            let _ = spnego::mechanism_of(rest);
        }
    }
});
