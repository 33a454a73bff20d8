//! Keys as rate-limit (`"global"` allowed) and ban (`"global"` refused)
//! use them.

use super::*;
use crate::testing::request_with_headers;

const LIMIT: KeyUse = KeyUse {
    global_refused: None,
    never: "limit anything",
};

const BAN: KeyUse = KeyUse {
    global_refused: Some("would ban every client at once: a jail's key is \"client_ip\", \"header:<name>\" or a template"),
    never: "ban anyone",
};

fn request(path: &str, headers: &[(&str, &[u8])]) -> RequestHead {
    let mut req = request_with_headers("GET", path, headers);
    req.query = Some("page=2".to_owned()).into();
    req.route = "api".to_owned().into();
    req
}

fn key(source: &str, req: &RequestHead) -> Option<String> {
    KeySource::parse(source, LIMIT)
        .unwrap_or_else(|err| panic!("{source}: {err}"))
        .key(req)
        .map(Cow::into_owned)
}

#[test]
fn client_ip_and_global() {
    let req = request("/", &[]);
    assert_eq!(key("client_ip", &req).as_deref(), Some("203.0.113.7"));
    assert_eq!(key("global", &req).as_deref(), Some("global"));
}

#[test]
fn a_request_key_keeps_the_client_ip_a_number_and_reads_as_the_text_key() {
    let req = request("/", &[("x-api-key", b"k1")]);
    for source in ["client_ip", "header:x-api-key", "{host}:{path}", "global"] {
        let parsed = KeySource::parse(source, LIMIT).expect(source);
        let request_key = parsed.request_key(&req).expect(source);
        assert_eq!(
            Some(request_key.text().into_owned()),
            key(source, &req),
            "{source}"
        );
        let is_address = matches!(request_key.as_rate_key(), RateKey::Address(_));
        assert_eq!(is_address, source == "client_ip", "{source}");
    }
    let ip = KeySource::ClientIp.request_key(&req).expect("client");
    assert_eq!(ip.as_rate_key(), RateKey::Address(wit_ip(req.client_ip)));
}

#[test]
fn header_keys_join_every_value_and_ignore_case() {
    let req = request(
        "/",
        &[
            ("x-api-key", b"k1"),
            ("x-api-key", b"k2"),
            ("cookie", b"a=1"),
        ],
    );
    assert_eq!(key("header:X-API-Key", &req).as_deref(), Some("k1, k2"));
    assert_eq!(key("header:x-other", &req), None, "absent header: no key");
    let empty = request("/", &[("x-api-key", b"")]);
    assert_eq!(key("header:x-api-key", &empty), None, "empty value: no key");
}

#[test]
fn templates_render_request_fields() {
    let req = request(
        "/v1/items",
        &[("x-api-key", b"k1"), ("cookie", b"a=1"), ("cookie", b"b=2")],
    );
    assert_eq!(
        key("{http_x_api_key}:{client_ip}", &req).as_deref(),
        Some("k1:203.0.113.7")
    );
    assert_eq!(
        key(
            "{scheme}://{host}{uri} {method} {route} {path} {query}",
            &req
        )
        .as_deref(),
        Some("https://example.com/v1/items?page=2 GET api /v1/items page=2")
    );
    assert_eq!(key("{http_cookie}", &req).as_deref(), Some("a=1; b=2"));
    assert_eq!(
        key("{{lit}}{host}", &req).as_deref(),
        Some("{lit}example.com")
    );
}

#[test]
fn a_template_whose_fields_are_all_empty_is_no_key() {
    let req = request("/", &[]);
    assert_eq!(key("key:{http_x_api_key}", &req), None);
    assert_eq!(
        key("{http_x_api_key}|{client_ip}", &req).as_deref(),
        Some("|203.0.113.7")
    );
}

#[test]
fn what_a_key_reads() {
    let source = KeySource::parse("{http_x_user}|{host}", LIMIT).expect("valid");
    assert_eq!(source.header_names(), vec!["x-user"]);
    assert!(source.request_fields().contains(RequestFieldSet::HOST));
    let header = KeySource::parse("header:X-User", BAN).expect("valid");
    assert_eq!(header, KeySource::Header("x-user".into()));
    assert_eq!(header.header_names(), vec!["x-user"]);
    assert_eq!(header.request_fields(), RequestFieldSet::empty());
    assert!(KeySource::ClientIp.header_names().is_empty());
}

#[test]
fn long_and_binary_keys_are_hashed_not_refused() {
    let long = "k".repeat(MAX_PLAIN_KEY_BYTES + 1);
    let req = request("/", &[("x-api-key", long.as_bytes())]);
    let hashed = key("header:x-api-key", &req).expect("key");
    assert!(hashed.starts_with("sha256:"), "{hashed}");
    assert_eq!(hashed.len(), 7 + 64);
    let other = "k".repeat(MAX_PLAIN_KEY_BYTES + 2);
    let req2 = request("/", &[("x-api-key", other.as_bytes())]);
    assert_ne!(key("header:x-api-key", &req2), Some(hashed.clone()));
    // Exactly at the limit: kept as is.
    let edge = "k".repeat(MAX_PLAIN_KEY_BYTES);
    let req3 = request("/", &[("x-api-key", edge.as_bytes())]);
    assert_eq!(key("header:x-api-key", &req3), Some(edge));

    let binary = request("/", &[("x-api-key", b"caf\xe9")]);
    let binary_key = key("header:x-api-key", &binary).expect("key");
    assert!(binary_key.starts_with("sha256:"));
    let other_binary = request("/", &[("x-api-key", b"caf\xe8")]);
    assert_ne!(key("header:x-api-key", &other_binary), Some(binary_key));
}

#[test]
fn bad_keys_are_refused_with_a_hint() {
    let parse = |text: &str| KeySource::parse(text, LIMIT);
    assert_eq!(
        parse("ip"),
        Err(KeyError::Unknown {
            text: "ip".to_owned(),
            global: true
        })
    );
    assert_eq!(
        parse("ip").expect_err("refused").to_string(),
        "`ip` is not a key: use \"client_ip\", \"global\", \"header:<name>\" or a template \
         with placeholders such as \"{http_x_api_key}\""
    );
    assert_eq!(
        parse("header:"),
        Err(KeyError::BadHeaderName(String::new()))
    );
    assert_eq!(
        parse("header:x api").expect_err("refused").to_string(),
        "`x api` is not a valid header name"
    );
    assert_eq!(
        parse("{hots}"),
        Err(KeyError::Template(TemplateError::UnknownPlaceholder {
            name: "hots".to_owned()
        }))
    );
    assert_eq!(
        parse("{http_a.b c}"),
        Err(KeyError::Template(TemplateError::BadHeaderPlaceholder {
            name: "http_a.b c".to_owned()
        }))
    );
    assert_eq!(
        parse("a{host"),
        Err(KeyError::Template(TemplateError::UnclosedBrace { at: 1 }))
    );
    assert_eq!(
        parse("é}"),
        Err(KeyError::Template(TemplateError::StrayClosingBrace {
            at: 2
        }))
    );
    assert_eq!(
        parse("{{x}}").expect_err("refused").to_string(),
        "a template key needs at least one placeholder; for one key for every request use \
         \"global\""
    );
    assert_eq!(
        parse("{client_ip}:{request_id}")
            .expect_err("refused")
            .to_string(),
        "`{request_id}` differs on every request: a key using it would never limit anything"
    );
}

#[test]
fn where_global_is_refused_the_errors_say_so() {
    let err = |text: &str| KeySource::parse(text, BAN).expect_err(text).to_string();
    assert!(err("ip").starts_with("`ip` is not a key: use \"client_ip\", \"header:<name>\""));
    assert!(err("global").starts_with("\"global\" would ban every client"));
    assert!(err("{client_ip}{request_id}").ends_with("would never ban anyone"));
    assert_eq!(
        err("{{x}}"),
        "a template key needs at least one placeholder"
    );
}
