//! The contract test: `wsdl/pfwssdk-contract.json` (source of truth), the Rust operation table and
//! the committed `wsdl/PfWsSdk.wsdl` must agree in every name, order and type. Each side is read on
//! its own terms (JSON with serde_json, the WSDL with roxmltree), so a drift in any one fails here.

use std::collections::BTreeMap;
use std::path::Path;

use pfgate::pfwssdk::wsdl::{render, PLACEHOLDER_LOCATION};
use pfgate::pfwssdk::{complex_type_specs, enum_specs, Operation};
use serde_json::Value;

const XS: &str = "http://www.w3.org/2001/XMLSchema";
const WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
const SOAP: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const SOAP12: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";

pub(crate) fn contract() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("wsdl/pfwssdk-contract.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn committed_wsdl() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("wsdl/PfWsSdk.wsdl")).unwrap()
}

/// (element, contract type) of each parameter of a contract operation, in order.
pub(crate) fn params(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["element"].as_str().unwrap().to_string(),
                p["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The contract's type string as a WSDL `type` attribute value.
fn wsdl_type(contract_type: &str) -> String {
    match contract_type {
        "string" | "boolean" | "int" | "long" | "unsignedInt" | "double" => {
            format!("s:{contract_type}")
        }
        t if t.starts_with("ArrayOf") => format!("tns:{}", t.split(' ').next().unwrap()),
        t => format!("tns:{t}"),
    }
}

#[test]
fn rust_table_matches_contract() {
    let c = contract();
    let ops = c["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 105);
    assert_eq!(Operation::ALL.len(), ops.len());
    for (op, json) in Operation::ALL.iter().zip(ops) {
        let spec = op.spec();
        assert_eq!(
            spec.name,
            json["operation"].as_str().unwrap(),
            "operation order/name"
        );
        assert_eq!(op.soap_action(), json["soapAction"].as_str().unwrap());
        assert_eq!(
            spec.result_type,
            json["resultType"].as_str().unwrap(),
            "{}: result",
            spec.name
        );
        let method = json["clientProxyMethod"]
            .as_str()
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(spec.method, method, "{}: proxy method", spec.name);
        let ins: Vec<(String, String)> = spec
            .inputs
            .iter()
            .map(|(e, t)| (e.to_string(), t.clone()))
            .collect();
        assert_eq!(ins, params(&json["inputs"]), "{}: inputs", spec.name);
        let outs: Vec<(String, String)> = spec
            .outputs
            .iter()
            .map(|(e, t)| (e.to_string(), t.clone()))
            .collect();
        assert_eq!(outs, params(&json["outputs"]), "{}: outputs", spec.name);
    }

    let types = c["types"].as_object().unwrap();
    assert_eq!(types.len(), 46);
    let complex: BTreeMap<_, _> = complex_type_specs().into_iter().collect();
    let enums: BTreeMap<_, _> = enum_specs().into_iter().collect();
    assert_eq!(complex.len() + enums.len(), types.len());
    for (name, t) in types {
        if t["kind"].as_str().unwrap().starts_with("enum") {
            let values: Vec<&str> = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(enums[name.as_str()], values.as_slice(), "enum {name}");
        } else {
            let fields: Vec<(String, String)> = complex[name.as_str()]
                .iter()
                .map(|(e, t)| (e.to_string(), t.clone()))
                .collect();
            assert_eq!(fields, params(&t["fields"]), "type {name}");
        }
    }
}

#[test]
fn committed_wsdl_is_current() {
    assert!(
        committed_wsdl() == render(PLACEHOLDER_LOCATION),
        "wsdl/PfWsSdk.wsdl is stale: regenerate with `cargo run -- wsdl > wsdl/PfWsSdk.wsdl`"
    );
}

fn sequence_of(node: roxmltree::Node<'_, '_>) -> Vec<(String, String, String)> {
    node.descendants()
        .skip(1)
        .filter(|n| n.has_tag_name((XS, "element")))
        .map(|n| {
            (
                n.attribute("name").unwrap().to_string(),
                n.attribute("type").unwrap().to_string(),
                n.attribute("minOccurs").unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn committed_wsdl_matches_contract() {
    let c = contract();
    let text = committed_wsdl();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let defs = doc.root_element();
    assert!(defs.has_tag_name((WSDL, "definitions")));
    assert_eq!(
        defs.attribute("targetNamespace"),
        Some("http://www.phonefactor.com/PfWsSdk")
    );
    let schema = defs
        .descendants()
        .find(|n| n.has_tag_name((XS, "schema")))
        .unwrap();
    assert_eq!(schema.attribute("elementFormDefault"), Some("qualified"));
    let top = |kind: &str, name: &str| {
        schema
            .children()
            .find(|n| n.has_tag_name((XS, kind)) && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no {kind} {name} in the WSDL schema"))
    };
    let value_type = |t: &str| {
        !(t == "string" || t.starts_with("ArrayOf")) && {
            let kind = c["types"]
                .get(t)
                .map(|x| x["kind"].as_str().unwrap().to_string());
            match kind {
                None => true, // xsd primitives other than string
                Some(k) => k.starts_with("enum"),
            }
        }
    };
    let expect = |list: Vec<(String, String)>| -> Vec<(String, String, String)> {
        list.into_iter()
            .map(|(e, t)| {
                let min = if value_type(&t) { "1" } else { "0" };
                (e, wsdl_type(&t), min.to_string())
            })
            .collect()
    };

    let ops = c["operations"].as_array().unwrap();
    for op in ops {
        let name = op["operation"].as_str().unwrap();
        assert_eq!(
            sequence_of(top("element", name)),
            expect(params(&op["inputs"])),
            "request element {name}"
        );
        let mut outs = vec![(
            format!("{name}Result"),
            op["resultType"].as_str().unwrap().to_string(),
        )];
        outs.extend(params(&op["outputs"]));
        assert_eq!(
            sequence_of(top("element", &format!("{name}Response"))),
            expect(outs),
            "response element {name}"
        );
        for suffix in ["SoapIn", "SoapOut"] {
            let msg = format!("{name}{suffix}");
            let m = defs
                .children()
                .find(|n| n.has_tag_name((WSDL, "message")) && n.attribute("name") == Some(&msg))
                .unwrap_or_else(|| panic!("no message {msg}"));
            let part = m.first_element_child().unwrap();
            let element = if suffix == "SoapIn" {
                format!("tns:{name}")
            } else {
                format!("tns:{name}Response")
            };
            assert_eq!(part.attribute("element"), Some(element.as_str()));
        }
    }

    for (name, t) in c["types"].as_object().unwrap() {
        if t["kind"].as_str().unwrap().starts_with("enum") {
            let st = top("simpleType", name);
            let values: Vec<&str> = st
                .descendants()
                .filter(|n| n.has_tag_name((XS, "enumeration")))
                .map(|n| n.attribute("value").unwrap())
                .collect();
            let expected: Vec<&str> = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(values, expected, "enum {name}");
        } else {
            assert_eq!(
                sequence_of(top("complexType", name)),
                expect(params(&t["fields"])),
                "complex type {name}"
            );
        }
    }

    // Arrays: ArrayOfX with nillable, unbounded items named as the contract says.
    for op in ops {
        for (_, t) in params(&op["inputs"])
            .into_iter()
            .chain(params(&op["outputs"]))
        {
            if let Some(rest) = t.strip_prefix("ArrayOf") {
                let array = format!("ArrayOf{}", rest.split(' ').next().unwrap());
                let item = t
                    .split('<')
                    .nth(1)
                    .unwrap()
                    .trim_end_matches(")")
                    .trim_end_matches('>');
                let el = top("complexType", &array)
                    .descendants()
                    .find(|n| n.has_tag_name((XS, "element")))
                    .unwrap();
                assert_eq!(el.attribute("name"), Some(item), "{array} item");
                assert_eq!(el.attribute("maxOccurs"), Some("unbounded"));
                assert_eq!(el.attribute("nillable"), Some("true"));
            }
        }
    }

    // portType and both bindings: one entry per wire operation, overloads named by MessageName.
    let port_type = defs
        .children()
        .find(|n| n.has_tag_name((WSDL, "portType")))
        .unwrap();
    assert_eq!(port_type.attribute("name"), Some("PfWsSdkSoap"));
    let pt_ops: Vec<_> = port_type.children().filter(|n| n.is_element()).collect();
    assert_eq!(pt_ops.len(), ops.len());
    for (node, op) in pt_ops.iter().zip(ops) {
        let name = op["operation"].as_str().unwrap();
        let method = op["clientProxyMethod"]
            .as_str()
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(node.attribute("name"), Some(method));
        let input = node.first_element_child().unwrap();
        assert_eq!(
            input.attribute("message"),
            Some(format!("tns:{name}SoapIn").as_str())
        );
        let expected_name = (method != name).then_some(name);
        assert_eq!(input.attribute("name"), expected_name, "{name}: input name");
    }
    for (binding, ns) in [("PfWsSdkSoap", SOAP), ("PfWsSdkSoap12", SOAP12)] {
        let b = defs
            .children()
            .find(|n| n.has_tag_name((WSDL, "binding")) && n.attribute("name") == Some(binding))
            .unwrap_or_else(|| panic!("no binding {binding}"));
        assert_eq!(b.attribute("type"), Some("tns:PfWsSdkSoap"));
        let bops: Vec<_> = b
            .children()
            .filter(|n| n.has_tag_name((WSDL, "operation")))
            .collect();
        assert_eq!(bops.len(), ops.len(), "{binding}");
        for (node, op) in bops.iter().zip(ops) {
            let so = node
                .children()
                .find(|n| n.has_tag_name((ns, "operation")))
                .unwrap();
            assert_eq!(so.attribute("soapAction"), op["soapAction"].as_str());
            assert_eq!(so.attribute("style"), Some("document"));
            let body = node
                .descendants()
                .find(|n| n.has_tag_name((ns, "body")))
                .unwrap();
            assert_eq!(body.attribute("use"), Some("literal"));
        }
    }
    let service = defs
        .children()
        .find(|n| n.has_tag_name((WSDL, "service")))
        .unwrap();
    assert_eq!(service.attribute("name"), Some("PfWsSdk"));
    let ports: Vec<_> = service
        .children()
        .filter(|n| n.is_element())
        .map(|p| p.attribute("binding").unwrap())
        .collect();
    assert_eq!(ports, vec!["tns:PfWsSdkSoap", "tns:PfWsSdkSoap12"]);
}
