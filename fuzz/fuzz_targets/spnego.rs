//! The SPNEGO/DER parser (`src/auth/spnego.rs`) on its own, as `Authorization: Negotiate` delivers
//! tokens (after base64), and its encoder against it. The first byte picks the path:
//!   0: the rest as a token: `parse_token` and `mechanism_of` must agree on whether it is one,
//!      an `Init` keeps within its limits, and a `Resp` re-encoded parses back to itself;
//!   other: the rest as the fields of a `NegTokenResp` pfgate builds (state, an OID's content, a
//!      response token, a MIC, split by the next three bytes as lengths): encoded, it must parse
//!      back to the same fields (the DER lengths of every size pfgate writes).
//! No input may panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfgate::auth::spnego::{self, IncomingToken, NegState, NegTokenResp, Oid};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => parsed(rest),
        _ => built(rest),
    }
});

fn parsed(token: &[u8]) {
    let parsed = spnego::parse_token(token);
    let mechanism = spnego::mechanism_of(token);
    assert_eq!(
        parsed.is_ok(),
        mechanism.is_ok(),
        "parse_token and mechanism_of disagree"
    );
    match parsed {
        Ok(IncomingToken::Init(init)) => {
            assert!(init.mech_types.len() <= 32, "more mechTypes than the limit");
            assert!(init.mech_types_der.len() <= token.len());
        }
        Ok(IncomingToken::Resp(resp)) => {
            let again = spnego::parse_token(&resp.encode());
            assert_eq!(
                again,
                Ok(IncomingToken::Resp(resp)),
                "re-encoded NegTokenResp differs"
            );
        }
        Ok(IncomingToken::RawNtlm(_) | IncomingToken::RawKerberos) | Err(_) => {}
    }
}

fn built(rest: &[u8]) {
    let [state, a, b, c, fields @ ..] = rest else {
        return;
    };
    let (mech, fields) = fields.split_at(usize::from(*a).min(fields.len()));
    let split = (usize::from(*b) << 8 | usize::from(*c)).min(fields.len());
    let (token, mic) = fields.split_at(split);
    let neg_state = match state % 5 {
        0 => Some(NegState::AcceptCompleted),
        1 => Some(NegState::AcceptIncomplete),
        2 => Some(NegState::Reject),
        3 => Some(NegState::RequestMic),
        _ => None,
    };
    let resp = NegTokenResp {
        neg_state,
        supported_mech: (!mech.is_empty()).then(|| Oid::from_der_content(mech)),
        response_token: (state & 0x10 == 0).then(|| token.to_vec()),
        mech_list_mic: (state & 0x20 == 0).then(|| mic.to_vec()),
    };
    let again = spnego::parse_token(&resp.encode());
    assert_eq!(
        again,
        Ok(IncomingToken::Resp(resp)),
        "an encoded NegTokenResp does not parse back"
    );
}
