//! The ASMX front: SOAP 1.1 and 1.2 envelopes in, typed requests out; typed responses and faults
//! back in the version the caller used.
//!
//! Everything is keyed on namespace URIs and local names (see [`xml`]); dispatch is on SOAPAction
//! (header for 1.1, `action=` parameter for 1.2) and, when the caller sent none, on the body
//! element. When both are present they must agree, otherwise the request is refused with a
//! `soap:Client` fault: acting on one while logging the other would be a gift to an attacker.

pub mod envelope;
pub mod fault;
pub mod xml;

pub use envelope::{
    decode_envelope, decode_request, encode_response, parse_envelope, DecodedCall, SoapVersion,
};
pub use fault::Fault;
