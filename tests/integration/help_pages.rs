//! The ASMX help pages over a real socket: `?op=Name` shows that operation's SOAP 1.1 and 1.2
//! sample request and response, as the original service did. The samples are checked against
//! `wsdl/pfwssdk-contract.json`, read here on its own terms (not through pfgate's table), and
//! parsed with roxmltree, an XML parser pfgate does not use.

use serde_json::Value;

use crate::contract::{contract, params};
use crate::support::*;

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The `<pre>` blocks of a page, HTML-unescaped.
fn pre_blocks(html: &str) -> Vec<String> {
    html.split("<pre>")
        .skip(1)
        .map(|rest| {
            rest.split("</pre>")
                .next()
                .unwrap()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The element children's local names of `node`.
fn child_names(node: roxmltree::Node) -> Vec<String> {
    node.children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name().to_string())
        .collect()
}

/// Checks one sample (HTTP head, blank line, envelope): the head's first line, that the envelope
/// is well-formed XML of `envelope_ns`, that the body's element and its children are `element`
/// and `children` in the contract's namespace and order, and that a child of a complex type has
/// that type's fields in order.
fn check_sample(
    sample: &str,
    first_line: &str,
    envelope_ns: &str,
    element: &str,
    children: &[(String, String)],
    types: &Value,
) {
    let (head, body) = sample.split_once("\n\n").unwrap();
    assert!(head.starts_with(first_line), "{head}");
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let root = doc.root_element();
    assert!(root.has_tag_name((envelope_ns, "Envelope")), "{body}");
    let soap_body = root
        .children()
        .find(|n| n.has_tag_name((envelope_ns, "Body")))
        .unwrap();
    let op = soap_body.first_element_child().unwrap();
    assert!(op.has_tag_name((NS, element)), "{body}");
    let names: Vec<&str> = children.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(child_names(op), names, "{element}");
    for (child, (_, ty)) in op.children().filter(|c| c.is_element()).zip(children) {
        assert_eq!(child.tag_name().namespace(), Some(NS));
        if types[ty.as_str()]["fields"].is_array() {
            assert_eq!(child_names(child), fields_of(types, ty), "{element}/{ty}");
        }
    }
}

/// The envelope of a sample (after the HTTP head).
fn envelope_of(sample: &str) -> &str {
    sample.split_once("\n\n").unwrap().1
}

/// The field names of a complex contract type.
fn fields_of(types: &Value, name: &str) -> Vec<String> {
    params(&types[name]["fields"])
        .into_iter()
        .map(|(field, _)| field)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_pages_show_samples_matching_the_contract() {
    let s = TestServer::demo().await;
    let c = s.client();
    let contract = contract();
    let types = &contract["types"];
    for name in [
        "PfAuthUser_5",
        "TestSecurity",
        "FindUsers_4",
        "GetUserSettings_3",
        "AddUser_3",
    ] {
        let op = contract["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operation"] == name)
            .unwrap();
        let r = c.get(&format!("{SDK_PATH}?op={name}")).await;
        assert_eq!(r.status, 200, "{name}");
        assert!(r.header("content-type").starts_with("text/html"), "{name}");
        assert!(r.body.contains(&format!("<h2>{name}</h2>")), "{name}");
        let blocks = pre_blocks(&r.body);
        assert_eq!(
            blocks.len(),
            4,
            "{name}: SOAP 1.1 and 1.2, request and response"
        );

        let inputs = params(&op["inputs"]);
        let mut outputs = vec![(
            op["resultElement"].as_str().unwrap().to_string(),
            op["resultType"].as_str().unwrap().to_string(),
        )];
        outputs.extend(params(&op["outputs"]));
        let request_line = format!("POST {SDK_PATH} HTTP/1.1");
        let response = format!("{name}Response");
        check_sample(&blocks[0], &request_line, SOAP11, name, &inputs, types);
        check_sample(
            &blocks[1],
            "HTTP/1.1 200 OK",
            SOAP11,
            &response,
            &outputs,
            types,
        );
        check_sample(&blocks[2], &request_line, SOAP12, name, &inputs, types);
        check_sample(
            &blocks[3],
            "HTTP/1.1 200 OK",
            SOAP12,
            &response,
            &outputs,
            types,
        );
        assert!(
            blocks[0].contains(&format!(
                "SOAPAction: \"http://www.phonefactor.com/PfWsSdk/{name}\""
            )),
            "{}",
            blocks[0]
        );
        assert!(blocks[2].contains("Content-Type: application/soap+xml; charset=utf-8"));
    }
}

/// The page's four samples (SOAP 1.1 request, response, SOAP 1.2 request, response).
async fn samples(c: &Client, op: &str) -> Vec<String> {
    let r = c.get(&format!("{SDK_PATH}?op={op}")).await;
    assert_eq!(r.status, 200, "{op}");
    pre_blocks(&r.body)
}

/// The child names of the first element called `element` in a sample's envelope.
fn children_in(sample: &str, element: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(envelope_of(sample)).unwrap();
    let node = doc
        .descendants()
        .find(|n| n.has_tag_name((NS, element)))
        .unwrap_or_else(|| panic!("no {element} in {sample}"));
    child_names(node)
}

/// The text of the first element called `element` in a sample's envelope.
fn text_in(sample: &str, element: &str) -> String {
    text_of(envelope_of(sample), element).unwrap_or_else(|| panic!("no {element} in {sample}"))
}

/// Complex values show their fields in the contract's order; placeholders are the type names,
/// enums their literals joined by " or ", arrays two items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_use_asmx_placeholders() {
    let s = TestServer::demo().await;
    let c = s.client();
    let contract = contract();
    let types = &contract["types"];

    let pfauth = samples(&c, "PfAuthUser_5").await;
    assert_eq!(
        children_in(&pfauth[1], "callResult"),
        fields_of(types, "CallResult")
    );
    assert_eq!(text_in(&pfauth[1], "Code"), "int");
    assert_eq!(text_in(&pfauth[1], "PfAuthUser_5Result"), "boolean");
    assert_eq!(text_in(&pfauth[0], "username"), "string");
    let modes: Vec<&str> = types["Mode3"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(text_in(&pfauth[0], "mode"), modes.join(" or "));

    let settings = samples(&c, "GetUserSettings_3").await;
    assert_eq!(
        children_in(&settings[1], "userSettings"),
        fields_of(types, "UserSettings3")
    );

    let find = samples(&c, "FindUsers_4").await;
    assert_eq!(children_in(&find[1], "userRows"), ["UserRow", "UserRow"]);
    assert_eq!(
        children_in(&find[1], "UserRow"),
        fields_of(types, "UserRow")
    );
    assert_eq!(children_in(&find[0], "tagIds"), ["string", "string"]);
}

/// An unknown or wrongly cased name gets the list with a note naming it, HTML-escaped; the plain
/// page is still the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_operation_gets_the_list_with_a_note() {
    let s = TestServer::demo().await;
    let c = s.client();
    for (query, shown) in [
        ("NoSuchOperation", "NoSuchOperation"),
        ("pfauthuser_5", "pfauthuser_5"),
        (
            "%3Cscript%3Ealert(1)%3C/script%3E",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        ),
    ] {
        let r = c.get(&format!("{SDK_PATH}?op={query}")).await;
        assert_eq!(r.status, 200, "{query}");
        assert!(
            r.body
                .contains(&format!("There is no operation named <b>{shown}</b>")),
            "{query}: {}",
            r.body
        );
        assert!(!r.body.contains("<script>"), "{query}");
        assert!(r.body.contains(">PfAuthUser_5</a>"), "{query}");
        assert!(pre_blocks(&r.body).is_empty(), "{query}");
    }
    let r = c.get(SDK_PATH).await;
    assert!(!r.body.contains("There is no operation named"));
    assert!(r.body.contains(">PfAuthUser_5</a>"));
}
