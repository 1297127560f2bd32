//! The PfWsSdk contract: every operation, type and enum of the MFA Server Web Service SDK, the
//! result and error codes, and the WSDL that publishes them.
//!
//! The source of truth is `wsdl/pfwssdk-contract.json` (names, order and types of all 105 operations
//! and 46 types). `generated.rs` is written from it by `tools/gen_contract_rs.py`; the WSDL is written
//! from the Rust table by [`wsdl::render`]; `tests/integration/contract.rs` fails when any two of
//! contract, Rust table and committed WSDL disagree.

#[macro_use]
mod macros;
pub mod codes;
pub mod help;
pub mod soap;
pub mod wire;
pub mod wsdl;

/// Target and XML namespace of requests, responses and all types.
pub const NAMESPACE: &str = "http://www.phonefactor.com/PfWsSdk";

/// The SOAPAction of an operation is this prefix followed by the operation's wire name.
pub const SOAP_ACTION_PREFIX: &str = "http://www.phonefactor.com/PfWsSdk/";

/// Names and contract types of one operation's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationSpec {
    /// Wire name.
    pub name: &'static str,
    /// Proxy method name (shared by overloads).
    pub method: &'static str,
    /// Contract type of `{Op}Result`.
    pub result_type: String,
    /// Input parameters (element, contract type), in order.
    pub inputs: Vec<(&'static str, String)>,
    /// Output parameters after the result (element, contract type), in order.
    pub outputs: Vec<(&'static str, String)>,
}

impl OperationSpec {
    /// True when the C# method name is shared with other operations (`MessageName` overloads).
    pub fn is_overload(&self) -> bool {
        self.method != self.name
    }
}

include!("generated.rs");

impl Operation {
    /// The SOAPAction of this operation.
    pub fn soap_action(self) -> String {
        format!("{SOAP_ACTION_PREFIX}{}", self.name())
    }

    /// Up to eight operation names close to `name`, for a "did you mean" after an unknown name
    /// (names are case-sensitive and come in near-identical generations: `PfAuthUser_4`,
    /// `PfAuthUser4`): the same name but for letter case first, then names sharing its first six
    /// letters.
    pub fn similar(name: &str) -> Vec<&'static str> {
        let prefix: String = name.to_ascii_lowercase().chars().take(6).collect();
        let names = || Operation::ALL.iter().map(|o| o.name());
        let same = names().filter(|n| n.eq_ignore_ascii_case(name));
        let near = names().filter(|n| {
            !n.eq_ignore_ascii_case(name) && n.to_ascii_lowercase().starts_with(&prefix)
        });
        same.chain(near).take(8).collect()
    }
}

/// Every contract enum: (name, literals in order).
pub fn enum_specs() -> Vec<(&'static str, &'static [&'static str])> {
    use wire::WireEnum;
    fn spec<T: WireEnum>() -> (&'static str, &'static [&'static str]) {
        (T::NAME, T::LITERALS)
    }
    vec![
        spec::<Mode3>(),
        spec::<PinMode2>(),
        spec::<SmsDirection>(),
        spec::<SmsMode>(),
        spec::<PhoneAppMode>(),
        spec::<AuthResult>(),
        spec::<Mode2>(),
        spec::<Mode>(),
        spec::<AuthenticationType>(),
        spec::<TagMatchType>(),
    ]
}

impl Error {
    /// `Code` 0 with an empty `Description`: what ASMX sends on success.
    pub fn ok() -> Self {
        Self {
            code: 0,
            description: Some(String::new()),
        }
    }

    /// An error with this code and description.
    pub fn new(code: i32, description: impl Into<String>) -> Self {
        Self {
            code,
            description: Some(description.into()),
        }
    }
}

impl CallResult {
    /// A call result with this code and description.
    pub fn new(code: i32, description: impl Into<String>) -> Self {
        Self {
            code,
            description: Some(description.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfwssdk::soap::xml::{parse, XmlLimits};

    #[test]
    fn table_has_every_operation_once() {
        assert_eq!(Operation::ALL.len(), 105);
        let mut names: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 105);
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(*op));
        }
    }

    #[test]
    fn decodes_order_tolerant_with_defaults() {
        let xml = format!(
            r#"<PfAuthUser_5 xmlns="{NAMESPACE}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
            <phoneNumber>4255550100</phoneNumber><mode>smsText</mode><username>a@b</username>
            <extension /><applicationName i:nil="true"/></PfAuthUser_5>"#
        );
        let el = parse(xml.as_bytes(), XmlLimits::default()).unwrap();
        let Request::PfAuthUser_5(r) = Request::decode(Operation::PfAuthUser_5, &el).unwrap()
        else {
            panic!("wrong variant")
        };
        assert_eq!(r.username.as_deref(), Some("a@b"));
        assert_eq!(r.mode, Some(Mode3::SmsText));
        assert_eq!(r.phone_number.as_deref(), Some("4255550100"));
        assert_eq!(r.extension.as_deref(), Some(""));
        assert_eq!(r.application_name, None);
        assert_eq!(r.country_code, None);
        assert!(!r.require_user_match);
        assert_eq!(r.initiating_authentication_type, AuthenticationType::Adfs);
    }

    /// `mode` of `PfAuthUser_5`/`PfAuthUserMaster_4` says whether it was sent: omitted or nil is
    /// `None`, an explicit `oathToken` (the first value, which .NET would fill in) is itself.
    #[test]
    fn an_omitted_mode_is_not_an_explicit_oath_token() {
        let decode = |op: Operation, inner: &str| {
            let xml = format!(
                r#"<{op} xmlns="{NAMESPACE}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{inner}</{op}>"#,
                op = op.name()
            );
            let el = parse(xml.as_bytes(), XmlLimits::default()).unwrap();
            match Request::decode(op, &el).unwrap() {
                Request::PfAuthUser_5(r) => r.mode,
                Request::PfAuthUserMaster_4(r) => r.mode,
                other => panic!("wrong variant {other:?}"),
            }
        };
        for op in [Operation::PfAuthUser_5, Operation::PfAuthUserMaster_4] {
            assert_eq!(decode(op, "<username>a</username>"), None, "{op:?}");
            assert_eq!(decode(op, r#"<mode i:nil="true"/>"#), None, "{op:?}");
            assert_eq!(
                decode(op, "<mode>oathToken</mode>"),
                Some(Mode3::OathToken),
                "{op:?}"
            );
            assert_eq!(
                decode(op, "<mode> voiceCall </mode>"),
                Some(Mode3::VoiceCall),
                "{op:?}"
            );
        }
        // The contract type is still the enumeration (what the WSDL and the contract test say).
        let spec = Operation::PfAuthUser_5.spec();
        assert!(spec.inputs.contains(&("mode", "Mode3".to_string())));
    }

    #[test]
    fn refuses_bad_enum_and_duplicates() {
        let bad = format!(r#"<PfAuthUser_5 xmlns="{NAMESPACE}"><mode>fax</mode></PfAuthUser_5>"#);
        let el = parse(bad.as_bytes(), XmlLimits::default()).unwrap();
        let err = Request::decode(Operation::PfAuthUser_5, &el).unwrap_err();
        assert_eq!(err.path, "mode");
        assert!(err.reason.contains("Mode3"), "{}", err.reason);

        let dup = format!(
            r#"<UserExists xmlns="{NAMESPACE}"><username>a</username><username>b</username></UserExists>"#
        );
        let el = parse(dup.as_bytes(), XmlLimits::default()).unwrap();
        assert!(Request::decode(Operation::UserExists, &el).is_err());
    }

    #[test]
    fn ignores_elements_in_other_namespaces() {
        let xml = format!(
            r#"<UserExists xmlns="{NAMESPACE}"><username xmlns="urn:other">x</username></UserExists>"#
        );
        let el = parse(xml.as_bytes(), XmlLimits::default()).unwrap();
        assert_eq!(
            Request::decode(Operation::UserExists, &el).unwrap(),
            Request::UserExists(request::UserExists { username: None })
        );
    }

    #[test]
    fn encodes_like_asmx() {
        let mut out = String::new();
        Response::PfAuthUser_4(response::PfAuthUser_4 {
            result: true,
            call_result: CallResult::new(2, "No PIN Entered"),
            authentication_request_id: Some("AB".into()),
            error: Error::ok(),
        })
        .encode(&mut out);
        assert_eq!(
            out,
            format!(
                "<PfAuthUser_4Response xmlns=\"{NAMESPACE}\"><PfAuthUser_4Result>true</PfAuthUser_4Result>\
                 <callResult><Code>2</Code><Description>No PIN Entered</Description></callResult>\
                 <authenticationRequestId>AB</authenticationRequestId>\
                 <error><Code>0</Code><Description /></error></PfAuthUser_4Response>"
            )
        );
    }

    #[test]
    fn failure_sets_error_and_false() {
        let Response::GetTags(r) = Response::failure(Operation::GetTags, Error::new(501, "no"))
        else {
            panic!("wrong variant")
        };
        assert!(!r.result);
        assert_eq!(r.error.code, 501);
        assert_eq!(r.tags, None);
    }

    #[test]
    fn arrays_round_trip() {
        let xml = format!(
            r#"<FindUsers_4 xmlns="{NAMESPACE}"><tagIds><string>a</string><string /></tagIds></FindUsers_4>"#
        );
        let el = parse(xml.as_bytes(), XmlLimits::default()).unwrap();
        let Request::FindUsers_4(r) = Request::decode(Operation::FindUsers_4, &el).unwrap() else {
            panic!("wrong variant")
        };
        assert_eq!(r.tag_ids, Some(vec!["a".to_string(), String::new()]));
    }
}
