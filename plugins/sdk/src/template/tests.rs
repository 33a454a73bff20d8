//! Tests of the placeholder templates (`{host}`, `{http_host}`, ...).

use super::*;
use crate::testing::{narrowed_request, request_head as request};
use crate::{Header, HeaderFilter};

fn render(source: &str) -> String {
    let template = Template::parse(source, CaptureRefs::Literal).expect("template parses");
    let req = request("GET", "/a/b", Some("x=1"));
    String::from_utf8(template.render(&req)).expect("utf-8")
}

#[test]
fn renders_every_request_field() {
    assert_eq!(
        render("{scheme}://{host}{uri} {method} {path} {query} {route} {request_id} {client_ip}"),
        "https://example.com/a/b?x=1 GET /a/b x=1 site 01HZX 203.0.113.7"
    );
}

#[test]
fn uri_and_query_without_a_query() {
    let template = Template::parse("[{uri}][{query}]", CaptureRefs::Literal).expect("parses");
    assert_eq!(template.render(&request("GET", "/p", None)), b"[/p][]");
}

#[test]
fn http_placeholders_read_request_headers_nginx_style() {
    assert_eq!(render("{http_user_agent}"), "curl/8.5");
    assert_eq!(render("{http_User_Agent}"), "curl/8.5");
    assert_eq!(render("{http_x-forwarded-for}"), "10.0.0.1, 10.0.0.2");
    assert_eq!(render("{http_cookie}"), "a=1; b=2");
    assert_eq!(render("<{http_x_missing}>"), "<>");
}

#[test]
fn http_host_is_the_host_header_with_its_port_else_the_routed_host() {
    let template =
        Template::parse("{scheme}://{http_host}/$1", CaptureRefs::Allowed).expect("parses");
    let mut req = request("GET", "/old/a", None);
    assert_eq!(template.render(&req), b"https://example.com/");
    req.headers.push(Header::new("Host", "example.com:8443"));
    req.headers.push(Header::new("host", "other.test"));
    assert_eq!(
        template.render_with_captures(&req, |_| Some("a")),
        b"https://example.com:8443/a"
    );
    assert_eq!(template.header_names().collect::<Vec<_>>(), ["host"]);
    // `{host}` stays nginx's `$host`: no port.
    assert_eq!(render_head("{host}", &req), "example.com");
}

fn render_head(source: &str, req: &RequestHead) -> String {
    let template = Template::parse(source, CaptureRefs::Literal).expect("parses");
    String::from_utf8(template.render(req)).expect("utf-8")
}

#[test]
fn doubled_braces_are_literal() {
    assert_eq!(render("{{host}} {{{host}}} }}"), "{host} {example.com} }");
}

#[test]
fn text_without_placeholders_is_kept_byte_for_byte() {
    assert_eq!(render("DENY"), "DENY");
    assert_eq!(render("caf\u{e9} $1 50%"), "caf\u{e9} $1 50%");
    assert_eq!(render(""), "");
}

#[test]
fn captures_fill_dollar_references() {
    let template =
        Template::parse("{scheme}://{host}/new/$1/$2$3$", CaptureRefs::Allowed).expect("parses");
    assert_eq!(template.max_capture(), 3);
    let groups = ["", "x", "y/z"];
    let req = request("GET", "/old/x/y/z", None);
    assert_eq!(
        template.render_with_captures(&req, |n| groups.get(n).copied()),
        b"https://example.com/new/x/y/z$"
    );
}

#[test]
fn dollar_zero_and_letters_stay_literal() {
    let template = Template::parse("$0$a$", CaptureRefs::Allowed).expect("parses");
    assert_eq!(template.max_capture(), 0);
    assert_eq!(template.render(&request("GET", "/", None)), b"$0$a$");
}

#[test]
fn render_into_reports_whether_every_field_was_empty() {
    let template = Template::parse("key:{http_x_api_key}", CaptureRefs::Literal).expect("parses");
    let mut out = Vec::new();
    assert!(template.render_into(&request("GET", "/", None), |_| None, &mut out));
    assert_eq!(out, b"key:");
    let template =
        Template::parse("{http_x_api_key}|{client_ip}", CaptureRefs::Literal).expect("parses");
    out.clear();
    assert!(!template.render_into(&request("GET", "/", None), |_| None, &mut out));
    let fields: Vec<&Field> = template.fields().collect();
    assert_eq!(
        fields,
        [&Field::Header("x-api-key".into()), &Field::ClientIp]
    );
}

#[test]
fn unknown_placeholder_is_rejected_with_the_known_list() {
    let err = Template::parse("{hots}", CaptureRefs::Literal).expect_err("rejected");
    assert_eq!(
        err.to_string(),
        "unknown placeholder `{hots}`; known: {host}, {http_host}, {client_ip}, {scheme}, \
         {request_id}, {method}, {path}, {query}, {uri}, {route}, {http_<header>}"
    );
    assert_eq!(
        Template::parse("{}", CaptureRefs::Literal),
        Err(TemplateError::UnknownPlaceholder {
            name: String::new()
        })
    );
}

#[test]
fn malformed_braces_are_rejected_with_their_position() {
    assert_eq!(
        Template::parse("ab{host", CaptureRefs::Literal),
        Err(TemplateError::UnclosedBrace { at: 2 })
    );
    assert_eq!(
        Template::parse("a}b", CaptureRefs::Literal)
            .expect_err("rejected")
            .to_string(),
        "`}` at byte 1 has no opening `{` (write `}}` for a literal `}`)"
    );
}

#[test]
fn bad_header_placeholders_are_rejected() {
    for source in ["{http_}", "{http_a.b}", "{http_a b}"] {
        assert!(
            matches!(
                Template::parse(source, CaptureRefs::Literal),
                Err(TemplateError::BadHeaderPlaceholder { .. })
            ),
            "{source} accepted"
        );
    }
}

#[test]
fn only_plain_text_has_a_literal_value() {
    let literal =
        |source: &str, captures| Template::parse(source, captures).expect("parses").literal();
    assert_eq!(
        literal("DENY {{x}} $1", CaptureRefs::Literal),
        Some(b"DENY {x} $1".to_vec())
    );
    assert_eq!(literal("", CaptureRefs::Literal), Some(Vec::new()));
    assert_eq!(literal("a{host}", CaptureRefs::Literal), None);
    assert_eq!(literal("{http_x_a}", CaptureRefs::Literal), None);
    assert_eq!(literal("/new/$1", CaptureRefs::Allowed), None);
}

#[test]
fn request_fields_are_the_fields_the_placeholders_read() {
    let fields = |source: &str| {
        Template::parse(source, CaptureRefs::Allowed)
            .expect("parses")
            .request_fields()
    };
    let cases = [
        ("{host}", RequestFieldSet::HOST),
        ("{http_host}", RequestFieldSet::HOST),
        // The client address, the scheme and the method always come.
        ("{client_ip}", RequestFieldSet::empty()),
        ("{scheme}", RequestFieldSet::empty()),
        ("{request_id}", RequestFieldSet::REQUEST_ID),
        ("{method}", RequestFieldSet::empty()),
        ("{path}", RequestFieldSet::PATH),
        ("{query}", RequestFieldSet::QUERY),
        ("{uri}", RequestFieldSet::PATH | RequestFieldSet::QUERY),
        ("{route}", RequestFieldSet::ROUTE),
        ("{http_user_agent}{http_cookie}", RequestFieldSet::empty()),
        ("DENY $1 {{host}}", RequestFieldSet::empty()),
        (
            "{scheme}://{host}/new/$1{query}",
            RequestFieldSet::HOST | RequestFieldSet::QUERY,
        ),
    ];
    for (source, expected) in cases {
        assert_eq!(fields(source), expected, "{source}");
    }
}

#[test]
fn a_template_renders_the_same_from_only_what_it_declares() {
    let sources = [
        "{host}",
        "{http_host}",
        "{http_host}|{http_HOST}",
        "{client_ip}",
        "{scheme}",
        "{request_id}",
        "{method}",
        "{path}",
        "{query}",
        "{uri}",
        "{route}",
        "{http_user_agent}|{http_cookie}",
        "{scheme}://{host}{uri} {method} {route} {request_id} {client_ip}",
    ];
    let mut with_port = request("GET", "/", None);
    with_port
        .headers
        .push(Header::new("host", "example.com:8080"));
    let requests = [
        request("GET", "/a/b", Some("x=1")),
        request("POST", "/", None),
        with_port,
    ];
    for source in sources {
        let template = Template::parse(source, CaptureRefs::Literal).expect("parses");
        let headers = HeaderFilter::only(template.header_names());
        for req in &requests {
            let narrowed = narrowed_request(req, template.request_fields(), &headers);
            assert_eq!(template.render(&narrowed), template.render(req), "{source}");
        }
    }
    // Reading what is left out panics: declaring too little shows.
    let host = Template::parse("<{host}{uri}>", CaptureRefs::Literal).expect("parses");
    let bare = narrowed_request(
        &requests[0],
        RequestFieldSet::PATH | RequestFieldSet::QUERY,
        &HeaderFilter::none(),
    );
    let panic = std::panic::catch_unwind(|| host.render(&bare)).expect_err("reads `host`");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("RequestFieldSet::HOST"), "{message}");
}
