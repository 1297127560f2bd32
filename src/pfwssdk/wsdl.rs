//! The documents an ASMX service publishes besides SOAP: the WSDL (`?WSDL`) and the DISCO document
//! (`?disco`). The HTML help pages (plain `GET`, `?op=`) are in [`super::help`].
//!
//! The WSDL is written from the Rust operation table in the shape ASP.NET's generator uses, so that
//! `wsdl.exe`, PowerShell `New-WebServiceProxy` and zeep produce the same proxy they produced from the
//! MFA Server: document/literal/wrapped, one portType `PfWsSdkSoap` shared by the SOAP 1.1 binding
//! `PfWsSdkSoap` and the SOAP 1.2 binding `PfWsSdkSoap12`, `MessageName` overloads as one
//! `wsdl:operation` per C# method name whose input/output carry the wire name, strings `minOccurs="0"`,
//! value types and enums `minOccurs="1"`, arrays as `ArrayOfX` with nillable items.
//!
//! The committed `wsdl/PfWsSdk.wsdl` is [`render`] with [`PLACEHOLDER_LOCATION`]; at run time the
//! address is rewritten to the URL the caller used.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::OnceLock;

use super::{complex_type_specs, enum_specs, Operation, NAMESPACE};
use crate::pfwssdk::soap::xml::escape;

/// The `soap:address` written into the committed WSDL file.
pub const PLACEHOLDER_LOCATION: &str =
    "https://localhost/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx";

/// What a contract type string names (shared with the help pages' samples).
pub(super) enum Kind<'a> {
    Primitive(&'a str),
    Enum(&'a str),
    Complex(&'a str),
    Array { name: String, item: &'a str },
}

/// Classifies a contract type string (`string`, `Mode3`, `UserRow`, `ArrayOfUserRow (items <UserRow>)`).
pub(super) fn classify(contract_type: &str) -> Kind<'_> {
    if let Some(rest) = contract_type.strip_prefix("ArrayOf") {
        let name_end = rest.find(' ').unwrap_or(rest.len());
        let item = contract_type
            .split('<')
            .nth(1)
            .and_then(|s| s.split('>').next())
            .unwrap_or("string");
        return Kind::Array {
            name: format!("ArrayOf{}", &rest[..name_end]),
            item,
        };
    }
    match contract_type {
        "string" | "boolean" | "int" | "long" | "unsignedInt" | "double" => {
            Kind::Primitive(contract_type)
        }
        t if enum_specs().iter().any(|(n, _)| *n == t) => Kind::Enum(t),
        t => Kind::Complex(t),
    }
}

fn element_decl(out: &mut String, name: &str, contract_type: &str) {
    let (min, ty) = match classify(contract_type) {
        Kind::Primitive("string") => ("0", "s:string".to_string()),
        Kind::Primitive(p) => ("1", format!("s:{p}")),
        Kind::Enum(e) => ("1", format!("tns:{e}")),
        Kind::Complex(c) => ("0", format!("tns:{c}")),
        Kind::Array { name, .. } => ("0", format!("tns:{name}")),
    };
    let _ = write!(
        out,
        r#"<s:element minOccurs="{min}" maxOccurs="1" name="{name}" type="{ty}" />"#
    );
}

fn sequence(out: &mut String, fields: &[(&str, String)]) {
    if fields.is_empty() {
        out.push_str("<s:complexType />");
        return;
    }
    out.push_str("<s:complexType><s:sequence>");
    for (name, ty) in fields {
        element_decl(out, name, ty);
    }
    out.push_str("</s:sequence></s:complexType>");
}

/// Renders the WSDL with `location` as the address of both ports.
pub fn render(location: &str) -> String {
    let loc = escape(location);
    let mut o = String::with_capacity(160 * 1024);
    o.push_str(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    o.push('\n');
    let _ = write!(
        o,
        r#"<wsdl:definitions xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:tm="http://microsoft.com/wsdl/mime/textMatching/" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:mime="http://schemas.xmlsoap.org/wsdl/mime/" xmlns:tns="{NAMESPACE}" xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/" xmlns:http="http://schemas.xmlsoap.org/wsdl/http/" targetNamespace="{NAMESPACE}" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/">"#
    );
    o.push_str("\n  <wsdl:types>\n");
    let _ = writeln!(
        o,
        r#"    <s:schema elementFormDefault="qualified" targetNamespace="{NAMESPACE}">"#
    );

    let mut arrays: BTreeSet<(String, String)> = BTreeSet::new();
    let mut note_arrays = |fields: &[(&str, String)]| {
        for (_, ty) in fields {
            if let Kind::Array { name, item } = classify(ty) {
                arrays.insert((name, item.to_string()));
            }
        }
    };

    for op in Operation::ALL {
        let spec = op.spec();
        note_arrays(&spec.inputs);
        note_arrays(&spec.outputs);
        let _ = write!(o, r#"      <s:element name="{}">"#, spec.name);
        sequence(&mut o, &spec.inputs);
        o.push_str("</s:element>\n");
        let mut outputs = vec![(format!("{}Result", spec.name), spec.result_type.clone())];
        outputs.extend(spec.outputs.iter().map(|(n, t)| (n.to_string(), t.clone())));
        let borrowed: Vec<(&str, String)> = outputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let _ = write!(o, r#"      <s:element name="{}Response">"#, spec.name);
        sequence(&mut o, &borrowed);
        o.push_str("</s:element>\n");
    }
    for (name, fields) in complex_type_specs() {
        let _ = write!(o, r#"      <s:complexType name="{name}">"#);
        if fields.is_empty() {
            o.push_str("</s:complexType>\n");
            continue;
        }
        o.push_str("<s:sequence>");
        for (field, ty) in &fields {
            element_decl(&mut o, field, ty);
        }
        o.push_str("</s:sequence></s:complexType>\n");
    }
    for (name, literals) in enum_specs() {
        let _ = write!(
            o,
            r#"      <s:simpleType name="{name}"><s:restriction base="s:string">"#
        );
        for lit in literals {
            let _ = write!(o, r#"<s:enumeration value="{lit}" />"#);
        }
        o.push_str("</s:restriction></s:simpleType>\n");
    }
    for (name, item) in &arrays {
        let item_type = if item == "string" {
            "s:string".to_string()
        } else {
            format!("tns:{item}")
        };
        let _ = writeln!(
            o,
            r#"      <s:complexType name="{name}"><s:sequence><s:element minOccurs="0" maxOccurs="unbounded" name="{item}" nillable="true" type="{item_type}" /></s:sequence></s:complexType>"#
        );
    }
    o.push_str("    </s:schema>\n  </wsdl:types>\n");

    for op in Operation::ALL {
        let n = op.name();
        let _ = writeln!(
            o,
            r#"  <wsdl:message name="{n}SoapIn"><wsdl:part name="parameters" element="tns:{n}" /></wsdl:message>"#
        );
        let _ = writeln!(
            o,
            r#"  <wsdl:message name="{n}SoapOut"><wsdl:part name="parameters" element="tns:{n}Response" /></wsdl:message>"#
        );
    }

    o.push_str("  <wsdl:portType name=\"PfWsSdkSoap\">\n");
    for op in Operation::ALL {
        let spec = op.spec();
        let name_attr = message_name_attr(&spec);
        let _ = writeln!(
            o,
            r#"    <wsdl:operation name="{m}"><wsdl:input{na} message="tns:{n}SoapIn" /><wsdl:output{na} message="tns:{n}SoapOut" /></wsdl:operation>"#,
            m = spec.method,
            n = spec.name,
            na = name_attr
        );
    }
    o.push_str("  </wsdl:portType>\n");

    for (binding, prefix, transport_ns) in [
        ("PfWsSdkSoap", "soap", "soap"),
        ("PfWsSdkSoap12", "soap12", "soap12"),
    ] {
        let _ = writeln!(
            o,
            r#"  <wsdl:binding name="{binding}" type="tns:PfWsSdkSoap">"#
        );
        let _ = writeln!(
            o,
            r#"    <{transport_ns}:binding transport="http://schemas.xmlsoap.org/soap/http" />"#
        );
        for op in Operation::ALL {
            let spec = op.spec();
            let name_attr = message_name_attr(&spec);
            let _ = writeln!(
                o,
                r#"    <wsdl:operation name="{m}"><{p}:operation soapAction="{action}" style="document" /><wsdl:input{na}><{p}:body use="literal" /></wsdl:input><wsdl:output{na}><{p}:body use="literal" /></wsdl:output></wsdl:operation>"#,
                m = spec.method,
                p = prefix,
                action = op.soap_action(),
                na = name_attr
            );
        }
        o.push_str("  </wsdl:binding>\n");
    }

    let _ = write!(
        o,
        r#"  <wsdl:service name="PfWsSdk">
    <wsdl:port name="PfWsSdkSoap" binding="tns:PfWsSdkSoap"><soap:address location="{loc}" /></wsdl:port>
    <wsdl:port name="PfWsSdkSoap12" binding="tns:PfWsSdkSoap12"><soap12:address location="{loc}" /></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#
    );
    o
}

fn message_name_attr(spec: &super::OperationSpec) -> String {
    if spec.is_overload() {
        format!(r#" name="{}""#, spec.name)
    } else {
        String::new()
    }
}

/// The WSDL split around its two addresses, rendered once.
fn wsdl_parts() -> &'static Vec<String> {
    static PARTS: OnceLock<Vec<String>> = OnceLock::new();
    PARTS.get_or_init(|| {
        render(PLACEHOLDER_LOCATION)
            .split(PLACEHOLDER_LOCATION)
            .map(str::to_string)
            .collect()
    })
}

/// The WSDL with `location` as the service address (cheap: the document is rendered once).
pub fn wsdl_for(location: &str) -> String {
    let loc = escape(location);
    wsdl_parts().join(&loc)
}

/// The DISCO document ASMX serves for `?disco`.
pub fn disco_for(location: &str) -> String {
    let loc = escape(location);
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<discovery xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.xmlsoap.org/disco/">
  <contractRef ref="{loc}?wsdl" docRef="{loc}" xmlns="http://schemas.xmlsoap.org/disco/scl/" />
  <soap address="{loc}" xmlns:q1="{NAMESPACE}" binding="q1:PfWsSdkSoap" xmlns="http://schemas.xmlsoap.org/disco/soap/" />
  <soap address="{loc}" xmlns:q2="{NAMESPACE}" binding="q2:PfWsSdkSoap12" xmlns="http://schemas.xmlsoap.org/disco/soap/" />
</discovery>
"#
    )
}
