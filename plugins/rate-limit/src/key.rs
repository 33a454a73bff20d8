//! What a limit counts requests by (nginx `limit_req_zone <key>`): the
//! client IP (after the host's trusted-proxy resolution), a request header,
//! a template of request fields, or one global bucket. Parsed at configure
//! time into [`KeySource`]; rendered per request in `on-request`. An empty
//! key means the request is not limited (nginx).

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use tailgate_plugin_sdk::template::{
    push_ip, push_joined_header, CaptureRefs, Field, Template, TemplateError,
};
use tailgate_plugin_sdk::{RequestFieldSet, RequestHead};

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
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error(
        "`{{request_id}}` differs on every request: a key using it would never limit anything"
    )]
    RequestId,
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

    /// The request headers the key reads.
    pub fn header_names(&self) -> Vec<&str> {
        match self {
            KeySource::ClientIp | KeySource::Global => Vec::new(),
            KeySource::Header(name) => vec![&**name],
            KeySource::Template(template) => template.0.header_names().collect(),
        }
    }

    /// The request fields the key reads (headers aside).
    pub fn request_fields(&self) -> RequestFieldSet {
        match self {
            // The client address always comes (a number, not text).
            KeySource::ClientIp | KeySource::Header(_) | KeySource::Global => {
                RequestFieldSet::empty()
            }
            KeySource::Template(template) => template.0.request_fields(),
        }
    }

    /// The key for this request, `None` when it is empty (not limited).
    pub fn key<'r>(&self, req: &'r RequestHead) -> Option<Cow<'r, str>> {
        let key: Cow<'r, str> = match self {
            KeySource::ClientIp => {
                let mut out = Vec::with_capacity(15);
                push_ip(req.client_ip, &mut out);
                Cow::Owned(bytes_to_key(out))
            }
            KeySource::Global => Cow::Borrowed("global"),
            KeySource::Header(name) => {
                let mut out = Vec::new();
                push_joined_header(req, name, &mut out);
                Cow::Owned(bytes_to_key(out))
            }
            KeySource::Template(template) => {
                let mut bytes = Vec::with_capacity(64);
                if template.0.render_into(req, |_| None, &mut bytes) {
                    // nginx: a key whose variables are all empty is empty.
                    return None;
                }
                Cow::Owned(bytes_to_key(bytes))
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

/// A key template: literal text and request fields (the SDK's [`Template`],
/// without `$n` captures and without `{request_id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate(Template);

impl KeyTemplate {
    /// Parse `source`; `{{` and `}}` stand for literal braces.
    pub fn parse(source: &str) -> Result<KeyTemplate, KeyError> {
        let template = Template::parse(source, CaptureRefs::Literal)?;
        if template.fields().any(|field| *field == Field::RequestId) {
            return Err(KeyError::RequestId);
        }
        if template.fields().next().is_none() {
            return Err(KeyError::NoPlaceholder);
        }
        Ok(KeyTemplate(template))
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
    use std::net::IpAddr;

    use tailgate_plugin_sdk::{Header, Method, Scheme};

    use super::*;

    pub(crate) fn request(path: &str, headers: &[(&str, &[u8])]) -> RequestHead {
        RequestHead {
            method: Method::Get,
            scheme: Scheme::Https,
            host: "api.example.com".into(),
            path: path.into(),
            query: Some("page=2".to_owned()).into(),
            headers: headers
                .iter()
                .map(|(name, value)| Header::new(*name, *value))
                .collect(),
            client_ip: IpAddr::from([203, 0, 113, 7]),
            route: "api".into(),
            request_id: "r-1".into(),
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
            Err(KeyError::Template(TemplateError::UnknownPlaceholder {
                name: "hots".to_owned()
            }))
        );
        assert_eq!(
            KeySource::parse("{http_a.b c}"),
            Err(KeyError::Template(TemplateError::BadHeaderPlaceholder {
                name: "http_a.b c".to_owned()
            }))
        );
        assert_eq!(
            KeySource::parse("a{host"),
            Err(KeyError::Template(TemplateError::UnclosedBrace { at: 1 }))
        );
        assert_eq!(
            KeySource::parse("é}"),
            Err(KeyError::Template(TemplateError::StrayClosingBrace {
                at: 2
            }))
        );
        assert_eq!(KeySource::parse("{{x}}"), Err(KeyError::NoPlaceholder));
        assert_eq!(
            KeySource::parse("{client_ip}:{request_id}"),
            Err(KeyError::RequestId)
        );
    }
}
