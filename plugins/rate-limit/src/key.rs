//! What a limit counts requests by (nginx `limit_req_zone <key>`): the
//! client IP (after the host's trusted-proxy resolution), a request header,
//! a template of request fields, or one global bucket. Parsed at configure
//! time into [`KeySource`]; rendered per request in `on-request`. An empty
//! key means the request is not limited (nginx).

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use tailgate_plugin_sdk::RequestHead;

/// Longest key sent to the host as is. The host refuses keys above 512
/// bytes; longer ones are replaced by `sha256:<hex>` so they stay exact
/// (no two keys share a bucket) and cannot be used to dodge the limit.
pub const MAX_PLAIN_KEY_BYTES: usize = 256;

/// Where a limit's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `"client_ip"`: the request's client IP.
    ClientIp,
    /// `"header:<name>"`: every value of that header, joined with `, `.
    Header(Box<str>),
    /// `"{http_x_api_key}:{host}"`: request fields between literal text.
    Template(KeyTemplate),
    /// `"global"`: one bucket for every request.
    Global,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "`{0}` is not a key: use \"client_ip\", \"global\", \"header:<name>\" or a template \
         with placeholders such as \"{{http_x_api_key}}\""
    )]
    Unknown(String),
    #[error("`{0}` is not a valid header name")]
    BadHeaderName(String),
    #[error("`{{` at byte {at} has no closing `}}`")]
    UnclosedBrace { at: usize },
    #[error("`}}` at byte {at} has no opening `{{`")]
    StrayClosingBrace { at: usize },
    #[error(
        "unknown placeholder `{{{0}}}`; known: {{client_ip}}, {{host}}, {{scheme}}, {{method}}, \
         {{path}}, {{query}}, {{uri}}, {{route}}, {{http_<header>}}"
    )]
    UnknownPlaceholder(String),
    #[error("a template key needs at least one placeholder; for one bucket use \"global\"")]
    NoPlaceholder,
}

impl KeySource {
    pub fn parse(text: &str) -> Result<KeySource, KeyError> {
        match text {
            "client_ip" => return Ok(KeySource::ClientIp),
            "global" => return Ok(KeySource::Global),
            _ => {}
        }
        if let Some(name) = text.strip_prefix("header:") {
            return Ok(KeySource::Header(header_name(name)?.into_boxed_str()));
        }
        if text.contains('{') || text.contains('}') {
            return KeyTemplate::parse(text).map(KeySource::Template);
        }
        Err(KeyError::Unknown(text.to_owned()))
    }

    /// The key for this request, `None` when it is empty (not limited).
    pub fn key<'r>(&self, req: &'r RequestHead) -> Option<Cow<'r, str>> {
        let key: Cow<'r, str> = match self {
            KeySource::ClientIp => Cow::Borrowed(req.client_ip.as_str()),
            KeySource::Global => Cow::Borrowed("global"),
            KeySource::Header(name) => {
                let mut out = Vec::new();
                push_header(req, name, &mut out);
                Cow::Owned(bytes_to_key(out))
            }
            KeySource::Template(template) => {
                let rendered = template.render(req);
                if rendered.fields_empty {
                    // nginx: a key whose variables are all empty is empty.
                    return None;
                }
                Cow::Owned(bytes_to_key(rendered.bytes))
            }
        };
        if key.is_empty() {
            return None;
        }
        if key.len() > MAX_PLAIN_KEY_BYTES {
            return Some(Cow::Owned(hashed(&key)));
        }
        Some(key)
    }
}

/// A key template: literal text and request fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Field(Field),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    ClientIp,
    Host,
    Scheme,
    Method,
    Path,
    Query,
    Uri,
    Route,
    /// Lower case, dashes.
    Header(Box<str>),
}

/// A rendered template: the bytes, and whether every field in it was empty.
struct Rendered {
    bytes: Vec<u8>,
    fields_empty: bool,
}

impl KeyTemplate {
    /// Parse `source`; `{{` and `}}` stand for literal braces.
    pub fn parse(source: &str) -> Result<KeyTemplate, KeyError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        let mut at = 0;
        while let Some(c) = rest.chars().next() {
            let step = if rest.starts_with("{{") {
                literal.push('{');
                2
            } else if rest.starts_with("}}") {
                literal.push('}');
                2
            } else if c == '{' {
                let len = rest[1..].find('}').ok_or(KeyError::UnclosedBrace { at })?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal).into_boxed_str()));
                }
                parts.push(Part::Field(Field::parse(&rest[1..1 + len])?));
                len + 2
            } else if c == '}' {
                return Err(KeyError::StrayClosingBrace { at });
            } else {
                literal.push(c);
                c.len_utf8()
            };
            rest = &rest[step..];
            at += step;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into_boxed_str()));
        }
        if !parts.iter().any(|part| matches!(part, Part::Field(_))) {
            return Err(KeyError::NoPlaceholder);
        }
        Ok(KeyTemplate { parts })
    }

    fn render(&self, req: &RequestHead) -> Rendered {
        let mut bytes = Vec::with_capacity(64);
        let mut fields_empty = true;
        for part in &self.parts {
            match part {
                Part::Literal(text) => bytes.extend_from_slice(text.as_bytes()),
                Part::Field(field) => {
                    let before = bytes.len();
                    field.render_into(req, &mut bytes);
                    fields_empty &= bytes.len() == before;
                }
            }
        }
        Rendered {
            bytes,
            fields_empty,
        }
    }
}

impl Field {
    fn parse(name: &str) -> Result<Field, KeyError> {
        Ok(match name {
            "client_ip" => Field::ClientIp,
            "host" => Field::Host,
            "scheme" => Field::Scheme,
            "method" => Field::Method,
            "path" => Field::Path,
            "query" => Field::Query,
            "uri" => Field::Uri,
            "route" => Field::Route,
            _ => match name.strip_prefix("http_") {
                Some(header) if !header.is_empty() => {
                    let dashed: String = header
                        .chars()
                        .map(|c| if c == '_' { '-' } else { c })
                        .collect();
                    Field::Header(
                        header_name(&dashed)
                            .map_err(|_| KeyError::UnknownPlaceholder(name.to_owned()))?
                            .into_boxed_str(),
                    )
                }
                _ => return Err(KeyError::UnknownPlaceholder(name.to_owned())),
            },
        })
    }

    fn render_into(&self, req: &RequestHead, out: &mut Vec<u8>) {
        let text: &str = match self {
            Field::ClientIp => &req.client_ip,
            Field::Host => &req.host,
            Field::Scheme => &req.scheme,
            Field::Method => &req.method,
            Field::Path => &req.path,
            Field::Query => req.query.as_deref().unwrap_or(""),
            Field::Route => &req.route,
            Field::Uri => {
                out.extend_from_slice(req.path.as_bytes());
                if let Some(query) = &req.query {
                    out.push(b'?');
                    out.extend_from_slice(query.as_bytes());
                }
                return;
            }
            Field::Header(name) => {
                push_header(req, name, out);
                return;
            }
        };
        out.extend_from_slice(text.as_bytes());
    }
}

/// Every value of header `name`, joined like nginx's `$http_<name>` (`; `
/// for cookies, `, ` otherwise).
fn push_header(req: &RequestHead, name: &str, out: &mut Vec<u8>) {
    let separator: &[u8] = if name == "cookie" { b"; " } else { b", " };
    for (i, value) in req.header_values(name).enumerate() {
        if i > 0 {
            out.extend_from_slice(separator);
        }
        out.extend_from_slice(value);
    }
}

/// A header name (RFC 9110 token), lower-cased.
fn header_name(name: &str) -> Result<String, KeyError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(KeyError::BadHeaderName(name.to_owned()))
    }
}

/// Header values are bytes; a key is text. Valid UTF-8 is kept; anything
/// else is hashed, so distinct byte strings never share a bucket.
fn bytes_to_key(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => hashed_bytes(err.as_bytes()),
    }
}

fn hashed(key: &str) -> String {
    hashed_bytes(key.as_bytes())
}

fn hashed_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use tailgate_plugin_sdk::Header;

    use super::*;

    pub(crate) fn request(path: &str, headers: &[(&str, &[u8])]) -> RequestHead {
        RequestHead {
            method: "GET".to_owned(),
            scheme: "https".to_owned(),
            host: "api.example.com".to_owned(),
            path: path.to_owned(),
            query: Some("page=2".to_owned()),
            headers: headers
                .iter()
                .map(|(name, value)| Header::new(*name, *value))
                .collect(),
            client_ip: "203.0.113.7".to_owned(),
            route: "api".to_owned(),
            request_id: "r-1".to_owned(),
        }
    }

    fn key(source: &str, req: &RequestHead) -> Option<String> {
        KeySource::parse(source)
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
    fn header_keys_join_every_value_and_ignore_case() {
        let req = request(
            "/",
            &[
                ("x-api-key", b"k1"),
                ("X-Api-Key", b"k2"),
                ("cookie", b"a=1"),
            ],
        );
        assert_eq!(key("header:X-API-Key", &req).as_deref(), Some("k1, k2"));
        assert_eq!(
            key("header:x-other", &req),
            None,
            "absent header: not limited"
        );
        let empty = request("/", &[("x-api-key", b"")]);
        assert_eq!(
            key("header:x-api-key", &empty),
            None,
            "empty value: not limited"
        );
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
            Some("https://api.example.com/v1/items?page=2 GET api /v1/items page=2")
        );
        assert_eq!(key("{http_cookie}", &req).as_deref(), Some("a=1; b=2"));
        assert_eq!(
            key("{{lit}}{host}", &req).as_deref(),
            Some("{lit}api.example.com")
        );
    }

    #[test]
    fn a_template_whose_fields_are_all_empty_is_not_limited() {
        let req = request("/", &[]);
        assert_eq!(key("key:{http_x_api_key}", &req), None);
        assert_eq!(
            key("{http_x_api_key}|{client_ip}", &req).as_deref(),
            Some("|203.0.113.7")
        );
    }

    #[test]
    fn long_and_binary_keys_are_hashed_not_refused() {
        let long = "k".repeat(MAX_PLAIN_KEY_BYTES + 1);
        let req = request("/", &[("x-api-key", long.as_bytes())]);
        let hashed = key("header:x-api-key", &req).expect("limited");
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
        let binary_key = key("header:x-api-key", &binary).expect("limited");
        assert!(binary_key.starts_with("sha256:"));
        let other_binary = request("/", &[("x-api-key", b"caf\xe8")]);
        assert_ne!(key("header:x-api-key", &other_binary), Some(binary_key));
    }

    #[test]
    fn bad_keys_are_refused_with_a_hint() {
        assert_eq!(
            KeySource::parse("ip"),
            Err(KeyError::Unknown("ip".to_owned()))
        );
        assert_eq!(
            KeySource::parse("ip").expect_err("refused").to_string(),
            "`ip` is not a key: use \"client_ip\", \"global\", \"header:<name>\" or a template \
             with placeholders such as \"{http_x_api_key}\""
        );
        assert_eq!(
            KeySource::parse("header:"),
            Err(KeyError::BadHeaderName(String::new()))
        );
        assert_eq!(
            KeySource::parse("header:x api"),
            Err(KeyError::BadHeaderName("x api".to_owned()))
        );
        assert_eq!(
            KeySource::parse("{hots}"),
            Err(KeyError::UnknownPlaceholder("hots".to_owned()))
        );
        assert_eq!(
            KeySource::parse("{http_a.b c}"),
            Err(KeyError::UnknownPlaceholder("http_a.b c".to_owned()))
        );
        assert_eq!(
            KeySource::parse("a{host"),
            Err(KeyError::UnclosedBrace { at: 1 })
        );
        assert_eq!(
            KeySource::parse("é}"),
            Err(KeyError::StrayClosingBrace { at: 2 })
        );
        assert_eq!(KeySource::parse("{{x}}"), Err(KeyError::NoPlaceholder));
    }
}
