//! Each operation's request decoder: the first byte picks one of the 105 operations, the rest is
//! the content of its request element inside a well-formed SOAP 1.1 envelope with the matching
//! SOAPAction — so the fuzzer spends its time in the typed field decoders (integers, booleans,
//! enums, arrays, nested structures), not in getting past the envelope checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfgate::pfwssdk::soap::envelope::{decode_request, encode_response, read_head};
use pfgate::pfwssdk::soap::xml::XmlLimits;
use pfgate::pfwssdk::soap::SoapVersion;
use pfgate::pfwssdk::{Operation, Response};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, inner)) = data.split_first() else {
        return;
    };
    let op = Operation::ALL[usize::from(pick) % Operation::ALL.len()];
    let name = op.name();
    let action = format!("\"http://www.phonefactor.com/PfWsSdk/{name}\"");
    let Ok(head) = read_head(Some("text/xml; charset=utf-8"), Some(&action)) else {
        return;
    };
    let mut body = Vec::with_capacity(inner.len() + 400);
    body.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body><");
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(b" xmlns=\"http://www.phonefactor.com/PfWsSdk\">");
    body.extend_from_slice(inner);
    body.extend_from_slice(b"</");
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(b"></soap:Body></soap:Envelope>");
    match decode_request(&head, &body, XmlLimits::default()) {
        Ok(call) => {
            assert_eq!(call.request.operation(), op, "decoded as another operation");
            let response = Response::status(op, true, Default::default());
            let _ = encode_response(call.version, &response);
        }
        Err(fault) => {
            let _ = fault.to_envelope(SoapVersion::V11);
        }
    }
});
