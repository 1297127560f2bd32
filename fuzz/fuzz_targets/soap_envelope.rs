//! The SOAP layer as a request reaches it: `Content-Type` and `SOAPAction` headers, then the body.
//! Input: `content-type \n soapaction \n body` (a missing line means a missing header).
//! Whatever the bytes, decoding must end in a typed request or a SOAP fault, and both must encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfgate::pfwssdk::soap::envelope::{decode_request, encode_response, read_head};
use pfgate::pfwssdk::soap::xml::XmlLimits;
use pfgate::pfwssdk::soap::SoapVersion;
use pfgate::pfwssdk::Response;

fn line(data: &[u8]) -> (Option<&str>, &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        // Headers reach pfgate as `str` only when they are visible ASCII (hyper's `to_str`).
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    }
}

fuzz_target!(|data: &[u8]| {
    let (content_type, rest) = line(data);
    let (soap_action, body) = line(rest);
    let head = match read_head(content_type, soap_action.filter(|a| !a.is_empty())) {
        Ok(head) => head,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    match decode_request(&head, body, XmlLimits::default()) {
        Ok(call) => {
            let response = Response::status(call.request.operation(), true, Default::default());
            let _ = encode_response(call.version, &response);
        }
        Err(fault) => {
            let _ = fault.to_envelope(SoapVersion::V11);
            let _ = fault.to_envelope(SoapVersion::V12);
        }
    }
});
