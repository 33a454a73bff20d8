//! What a jail counts failures and keeps bans by: the client IP (after the
//! host's trusted-proxy resolution, the default), a request header, or a
//! template of request fields, written as rate-limit's keys are
//! (docs/rate-limit.md#keys) minus `"global"` (one ban for everybody is
//! not a jail). An empty key is neither counted nor checked.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use tailgate_plugin_sdk::template::{push_ip, push_joined_header, CaptureRefs, Field, Template};
use tailgate_plugin_sdk::validate::is_token;
use tailgate_plugin_sdk::{RequestFieldSet, RequestHead};

/// Longest key sent to the host as is; longer ones (and header values that
/// are not UTF-8) go as `sha256:<hex>`: still one entry per distinct value,
/// and a long header cannot slip past its jail.
pub const MAX_PLAIN_KEY_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    ClientIp,
    /// `"header:<name>"`: every field of that name, joined with `, `.
    Header(Box<str>),
    /// `"{http_x_api_key}"`, `"{client_ip}:{host}"`.
    Template(Template),
}

impl KeySource {
    pub fn parse(text: &str) -> Result<KeySource, String> {
        if text == "client_ip" {
            return Ok(KeySource::ClientIp);
        }
        if let Some(name) = text.strip_prefix("header:") {
            if !is_token(name) {
                return Err(format!("`{name}` is not a valid header name"));
            }
            return Ok(KeySource::Header(name.to_ascii_lowercase().into()));
        }
        if text == "global" {
            return Err(
                "\"global\" would ban every client at once: a jail's key is \"client_ip\", \
                 \"header:<name>\" or a template"
                    .to_owned(),
            );
        }
        if !text.contains('{') && !text.contains('}') {
            return Err(format!(
                "`{text}` is not a key: use \"client_ip\", \"header:<name>\" or a template \
                 with placeholders such as \"{{http_x_api_key}}\""
            ));
        }
        let template =
            Template::parse(text, CaptureRefs::Literal).map_err(|err| err.to_string())?;
        if template.fields().any(|field| *field == Field::RequestId) {
            return Err(
                "`{request_id}` differs on every request: a key using it would never ban anyone"
                    .to_owned(),
            );
        }
        if template.fields().next().is_none() {
            return Err("a template key needs at least one placeholder".to_owned());
        }
        Ok(KeySource::Template(template))
    }

    /// The request headers the key reads.
    pub fn header_names(&self) -> Vec<&str> {
        match self {
            KeySource::ClientIp => Vec::new(),
            KeySource::Header(name) => vec![&**name],
            KeySource::Template(template) => template.header_names().collect(),
        }
    }

    /// The request fields the key reads (headers aside).
    pub fn request_fields(&self) -> RequestFieldSet {
        match self {
            KeySource::ClientIp | KeySource::Header(_) => RequestFieldSet::empty(),
            KeySource::Template(template) => template.request_fields(),
        }
    }

    /// The request's key; `None` when it is empty.
    pub fn key(&self, req: &RequestHead) -> Option<String> {
        let mut bytes = Vec::with_capacity(64);
        match self {
            KeySource::ClientIp => push_ip(req.client_ip, &mut bytes),
            KeySource::Header(name) => push_joined_header(req, name, &mut bytes),
            KeySource::Template(template) => {
                if template.render_into(req, |_| None, &mut bytes) {
                    return None;
                }
            }
        }
        if bytes.is_empty() {
            return None;
        }
        match String::from_utf8(bytes) {
            Ok(key) if key.len() <= MAX_PLAIN_KEY_BYTES => Some(key),
            Ok(key) => Some(hashed(key.as_bytes())),
            Err(err) => Some(hashed(err.as_bytes())),
        }
    }
}

fn hashed(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in Sha256::digest(bytes) {
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
            method: Method::Post,
            scheme: Scheme::Https,
            host: "git.example.com".into(),
            path: path.into(),
            query: None.into(),
            headers: headers
                .iter()
                .map(|(name, value)| Header::new(*name, *value))
                .collect(),
            client_ip: IpAddr::from([203, 0, 113, 7]),
            route: "git".into(),
            request_id: "r-1".into(),
        }
    }

    fn key(source: &str, req: &RequestHead) -> Option<String> {
        KeySource::parse(source)
            .unwrap_or_else(|err| panic!("{source}: {err}"))
            .key(req)
    }

    #[test]
    fn client_ip_headers_and_templates() {
        let req = request("/user/login", &[("x-user", b"alice"), ("X-User", b"bob")]);
        assert_eq!(key("client_ip", &req).as_deref(), Some("203.0.113.7"));
        assert_eq!(key("header:X-User", &req).as_deref(), Some("alice, bob"));
        assert_eq!(key("header:x-other", &req), None, "absent: not counted");
        assert_eq!(
            key("{client_ip}|{host}", &req).as_deref(),
            Some("203.0.113.7|git.example.com")
        );
        assert_eq!(key("user:{http_x_missing}", &req), None);
    }

    #[test]
    fn long_and_binary_keys_are_hashed() {
        let long = "k".repeat(MAX_PLAIN_KEY_BYTES + 1);
        let req = request("/", &[("x-user", long.as_bytes())]);
        let hashed = key("header:x-user", &req).expect("key");
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 71,
            "{hashed}"
        );
        let binary = request("/", &[("x-user", b"caf\xe9")]);
        assert!(key("header:x-user", &binary)
            .expect("key")
            .starts_with("sha256:"));
    }

    #[test]
    fn bad_keys_are_refused_with_a_hint() {
        let err = |text: &str| KeySource::parse(text).expect_err(text);
        assert!(err("ip").starts_with("`ip` is not a key: use \"client_ip\""));
        assert!(err("global").starts_with("\"global\" would ban every client"));
        assert_eq!(err("header:x y"), "`x y` is not a valid header name");
        assert!(err("{client_ip}{request_id}").contains("never ban anyone"));
        assert!(err("{hots}").contains("hots"), "{}", err("{hots}"));
    }
}
