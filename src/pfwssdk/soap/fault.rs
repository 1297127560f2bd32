//! SOAP faults as ASMX writes them: HTTP 500, `soap:Client` (1.2: `soap:Sender`) for requests the
//! caller must fix, `soap:Server` (`soap:Receiver`) for our own failures, and a `faultstring` a person
//! can act on. Business failures are never faults: they are `false` plus an `Error` (see `pfwssdk`).

use super::envelope::SoapVersion;
use super::xml::escape_into;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// The request is wrong (1.1 `Client`, 1.2 `Sender`).
    Client,
    /// pfgate failed (1.1 `Server`, 1.2 `Receiver`).
    Server,
    /// The envelope namespace is not the SOAP version the request announced.
    VersionMismatch,
    /// A header marked `mustUnderstand` that pfgate does not understand.
    MustUnderstand,
}

/// A SOAP fault ready to be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} fault: {message}")]
pub struct Fault {
    /// Fault code.
    pub code: FaultCode,
    /// The `faultstring` / `Reason` text.
    pub message: String,
}

impl Fault {
    /// A `soap:Client` fault.
    pub fn client(message: impl Into<String>) -> Self {
        Self {
            code: FaultCode::Client,
            message: message.into(),
        }
    }

    /// A `soap:Server` fault.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            code: FaultCode::Server,
            message: message.into(),
        }
    }

    /// Writes the complete envelope for `version`.
    pub fn to_envelope(&self, version: SoapVersion) -> String {
        let mut body = String::with_capacity(256 + self.message.len());
        match version {
            SoapVersion::V11 => {
                let code = match self.code {
                    FaultCode::Client => "soap:Client",
                    FaultCode::Server => "soap:Server",
                    FaultCode::VersionMismatch => "soap:VersionMismatch",
                    FaultCode::MustUnderstand => "soap:MustUnderstand",
                };
                body.push_str("<soap:Fault><faultcode>");
                body.push_str(code);
                body.push_str("</faultcode><faultstring>");
                escape_into(&mut body, &self.message);
                body.push_str("</faultstring><detail /></soap:Fault>");
            }
            SoapVersion::V12 => {
                let code = match self.code {
                    FaultCode::Client => "soap:Sender",
                    FaultCode::Server => "soap:Receiver",
                    FaultCode::VersionMismatch => "soap:VersionMismatch",
                    FaultCode::MustUnderstand => "soap:MustUnderstand",
                };
                body.push_str("<soap:Fault><soap:Code><soap:Value>");
                body.push_str(code);
                body.push_str("</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">");
                escape_into(&mut body, &self.message);
                body.push_str("</soap:Text></soap:Reason><soap:Detail /></soap:Fault>");
            }
        }
        super::envelope::wrap_body(version, &body)
    }
}
