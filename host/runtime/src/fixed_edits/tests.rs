use super::*;
use crate::bindings::types::{Header, IpAddress, Method, Scheme};

fn head() -> RequestHead {
    let text = |s: &str| Some(s.to_owned());
    RequestHead {
        method: Method::Patch,
        scheme: Scheme::Https,
        host: text("example.com"),
        path: text("/a/b"),
        query: text("q=1"),
        headers: Some(vec![
            header("host", "Example.com:8443"),
            header("cookie", "a=1"),
            header("x-tag", "one"),
            header("cookie", "b=2"),
            header("x-tag", "two"),
        ]),
        client_ip: IpAddress::V4(0xCB00_7107),
        route: text("site"),
        request_id: text("r-1"),
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

fn edit(op: HeaderOp, name: &str, value: Vec<ValuePart>) -> FixedEdit {
    FixedEdit {
        op,
        name: name.to_owned(),
        value,
    }
}

fn text(value: &str) -> ValuePart {
    ValuePart::Text(value.as_bytes().to_vec())
}

/// The (name, value) pairs `edits` render to for `head`.
fn rendered(edits: &[FixedEdit], head: &RequestHead) -> Vec<(String, String)> {
    let prepared = PreparedEdits::new(edits).expect("valid");
    prepared
        .for_request(head)
        .expect("renders")
        .iter()
        .map(|edit| {
            let value = edit.value().map_or("", |v| v.to_str().expect("ascii"));
            (edit.name().as_str().to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_phases_of_fixed_edits_follow_their_sides() {
    let both = FixedEdits {
        request: vec![FixedEdit::text(HeaderOp::Set, "X-Route", b"bench")],
        response: vec![FixedEdit::text(HeaderOp::Set, "X-Route", b"bench")],
        response_always: false,
    };
    assert_eq!(both.phases(), HookSet::REQUEST | HookSet::RESPONSE);
    let response = FixedEdits {
        request: Vec::new(),
        ..both
    };
    assert_eq!(response.phases(), HookSet::RESPONSE);
    assert!(!response.is_empty());
    assert_eq!(FixedEdits::none().phases(), HookSet::empty());
    assert!(FixedEdits::none().is_empty());
}

#[test]
fn text_values_are_parsed_once_and_go_out_as_they_are() {
    let edits = [
        FixedEdit::text(HeaderOp::Set, "X-Route", b"bench"),
        edit(HeaderOp::Append, "X-Two", vec![text("a"), text("b")]),
        edit(HeaderOp::Remove, "Server", vec![ValuePart::ClientIp]),
    ];
    let prepared = PreparedEdits::new(&edits).expect("valid");
    let for_request = prepared.for_request(&head()).expect("renders");
    assert!(matches!(for_request, Cow::Borrowed(_)), "nothing to render");
    assert_eq!(
        rendered(&edits, &head()),
        [("x-route", "bench"), ("x-two", "ab"), ("server", "")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
}

#[test]
fn request_values_render_as_the_sdk_templates_do() {
    let cases: Vec<(Vec<ValuePart>, &str)> = vec![
        (vec![ValuePart::Host], "example.com"),
        (vec![ValuePart::HttpHost], "Example.com:8443"),
        (vec![ValuePart::ClientIp], "203.0.113.7"),
        (vec![ValuePart::Scheme], "https"),
        (vec![ValuePart::RequestId], "r-1"),
        (vec![ValuePart::Method], "PATCH"),
        (vec![ValuePart::Path], "/a/b"),
        (vec![ValuePart::Query], "q=1"),
        (vec![ValuePart::Uri], "/a/b?q=1"),
        (vec![ValuePart::Route], "site"),
        (vec![ValuePart::Header("cookie".into())], "a=1; b=2"),
        (vec![ValuePart::Header("x-tag".into())], "one, two"),
        (vec![ValuePart::Header("x-absent".into())], ""),
        (
            vec![
                text("for="),
                ValuePart::ClientIp,
                text(";proto="),
                ValuePart::Scheme,
            ],
            "for=203.0.113.7;proto=https",
        ),
    ];
    for (parts, expected) in cases {
        let edits = [edit(HeaderOp::Set, "X-Out", parts.clone())];
        assert_eq!(
            rendered(&edits, &head()),
            [("x-out".to_owned(), expected.to_owned())],
            "{parts:?}"
        );
    }
}

#[test]
fn request_values_fall_back_as_the_sdk_templates_do() {
    let mut req = head();
    req.headers = None;
    req.query = None;
    req.client_ip = IpAddress::V6((0x2001_0db8_0000_0000, 1));
    let edits = [
        edit(HeaderOp::Set, "X-Host", vec![ValuePart::HttpHost]),
        edit(HeaderOp::Set, "X-Uri", vec![ValuePart::Uri]),
        edit(HeaderOp::Append, "X-Ip", vec![ValuePart::ClientIp]),
        edit(HeaderOp::Set, "X-Query", vec![ValuePart::Query]),
    ];
    assert_eq!(
        rendered(&edits, &req),
        [
            ("x-host", "example.com"),
            ("x-uri", "/a/b"),
            ("x-ip", "2001:db8::1"),
            ("x-query", ""),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    // An append stays an append once rendered.
    let prepared = PreparedEdits::new(&edits).expect("valid");
    let out = prepared.for_request(&req).expect("renders");
    assert!(matches!(out[2], WireEdit::Append(..)));
}

#[test]
fn what_cannot_go_on_the_wire_is_refused_at_load() {
    let cases = [
        (
            edit(HeaderOp::Set, "X-Bad", vec![text("a\r\nb")]),
            InvalidOutput::HeaderValue("X-Bad".to_owned()),
        ),
        (
            edit(HeaderOp::Set, "X-Bad", vec![ValuePart::Host, text("\n")]),
            InvalidOutput::HeaderValue("X-Bad".to_owned()),
        ),
        (
            edit(HeaderOp::Set, "bad name", vec![ValuePart::Host]),
            InvalidOutput::HeaderName("bad name".to_owned()),
        ),
        (
            edit(
                HeaderOp::Set,
                "X-Ok",
                vec![ValuePart::Header("no such".into())],
            ),
            InvalidOutput::HeaderName("no such".to_owned()),
        ),
    ];
    for (edit, expected) in cases {
        let err = PreparedEdits::new(std::slice::from_ref(&edit)).expect_err("refused");
        assert_eq!(err, expected, "{edit:?}");
    }
}
