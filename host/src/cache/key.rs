//! Cache keys: a route's `cache.key` template (nginx `proxy_cache_key`),
//! parsed once at config load and filled in per request by the cache step of
//! the upstream phase, from the request head as the request hooks left it.
//!
//! Variables: `{scheme}`, `{host}`, `{path}`, `{query}` (without `?`),
//! `{uri}` (path, and `?query` when there is one), `{method}`,
//! `{header.NAME}` and `{cookie.NAME}` (empty when absent). `{{` and `}}`
//! are literal braces. The default, `{scheme}://{host}{uri}`, is nginx's
//! `$scheme$proxy_host$request_uri`; `{scheme}://{host}{path}` ignores the
//! query string, so `?v=123` cannot bust the cache.

use std::fmt;

use http::HeaderName;
use tailgate_runtime::{Method, RequestHead};

/// The default key template.
pub const DEFAULT_KEY_TEMPLATE: &str = "{scheme}://{host}{uri}";

/// A parsed key template.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheKeyTemplate {
    text: String,
    parts: Vec<KeyPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Literal(String),
    Scheme,
    Host,
    Path,
    Query,
    Uri,
    Method,
    Header(HeaderName),
    Cookie(String),
}

/// Why a key template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTemplateError {
    #[error("unclosed \"{{\" at character {0}")]
    Unclosed(usize),
    #[error("unmatched \"}}\" at character {0} (write \"}}}}\" for a literal brace)")]
    Unmatched(usize),
    #[error("unknown variable {{{0}}}: use {{scheme}}, {{host}}, {{path}}, {{query}}, {{uri}}, {{method}}, {{header.NAME}} or {{cookie.NAME}}")]
    UnknownVariable(String),
    #[error("{{header.{0}}}: not a valid header name")]
    HeaderName(String),
    #[error("{{cookie.}} needs a cookie name")]
    CookieName,
    #[error("the key template must use at least one variable")]
    NoVariable,
}

impl CacheKeyTemplate {
    pub fn parse(text: &str) -> Result<Self, KeyTemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(KeyTemplateError::Unmatched(at)),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, c)) => name.push(c),
                            None => return Err(KeyTemplateError::Unclosed(at)),
                        }
                    }
                    if !literal.is_empty() {
                        parts.push(KeyPart::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(variable(&name)?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(KeyPart::Literal(literal));
        }
        if !parts.iter().any(|p| !matches!(p, KeyPart::Literal(_))) {
            return Err(KeyTemplateError::NoVariable);
        }
        Ok(CacheKeyTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key of a request. `HEAD` is keyed as `GET` (`{method}`), since a
    /// HEAD is answered from the GET entry.
    pub fn render(&self, head: &RequestHead) -> String {
        let mut key = String::with_capacity(64);
        for part in &self.parts {
            match part {
                KeyPart::Literal(text) => key.push_str(text),
                KeyPart::Scheme => key.push_str(head.scheme.as_str()),
                KeyPart::Host => key.push_str(head.host()),
                KeyPart::Path => key.push_str(head.path()),
                KeyPart::Query => key.push_str(head.query.as_deref().unwrap_or("")),
                KeyPart::Uri => {
                    key.push_str(head.path());
                    if let Some(query) = &head.query {
                        key.push('?');
                        key.push_str(query);
                    }
                }
                KeyPart::Method => match &head.method {
                    Method::Head => key.push_str("GET"),
                    other => key.push_str(other.as_str()),
                },
                KeyPart::Header(name) => {
                    let values = head
                        .headers()
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
                        .collect::<Vec<_>>();
                    key.push_str(&values.join(", "));
                }
                KeyPart::Cookie(name) => {
                    key.push_str(cookie_value(head, name).as_deref().unwrap_or(""));
                }
            }
        }
        key
    }
}

impl fmt::Debug for CacheKeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

fn variable(name: &str) -> Result<KeyPart, KeyTemplateError> {
    Ok(match name {
        "scheme" => KeyPart::Scheme,
        "host" => KeyPart::Host,
        "path" => KeyPart::Path,
        "query" => KeyPart::Query,
        "uri" => KeyPart::Uri,
        "method" => KeyPart::Method,
        other => {
            if let Some(header) = other.strip_prefix("header.") {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| KeyTemplateError::HeaderName(header.to_owned()))?;
                KeyPart::Header(name)
            } else if let Some(cookie) = other.strip_prefix("cookie.") {
                if cookie.is_empty() {
                    return Err(KeyTemplateError::CookieName);
                }
                KeyPart::Cookie(cookie.to_owned())
            } else {
                return Err(KeyTemplateError::UnknownVariable(other.to_owned()));
            }
        }
    })
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(head: &RequestHead, name: &str) -> Option<String> {
    head.headers()
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .flat_map(|h| {
            String::from_utf8_lossy(&h.value)
                .split(';')
                .map(|pair| pair.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tailgate_runtime::Header;

    /// A request head with `headers`, for tests of the cache.
    pub(crate) fn head(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
    ) -> RequestHead {
        RequestHead {
            method: Method::from_name(method),
            scheme: tailgate_runtime::Scheme::Https,
            host: Some("docs.example.com".into()),
            path: Some(path.into()),
            query: query.map(Into::into),
            headers: Some(
                headers
                    .iter()
                    .map(|(n, v)| Header {
                        name: (*n).into(),
                        value: v.as_bytes().to_vec(),
                    })
                    .collect(),
            ),
            client_ip: tailgate_runtime::IpAddress::V4(0xC000_0201),
            route: Some("docs".into()),
            request_id: Some("id".into()),
        }
    }

    #[test]
    fn default_template_keeps_the_query() {
        let t = CacheKeyTemplate::parse(DEFAULT_KEY_TEMPLATE).unwrap();
        assert_eq!(
            t.render(&head("GET", "/a", Some("v=1"), &[])),
            "https://docs.example.com/a?v=1"
        );
        assert_eq!(
            t.render(&head("GET", "/a", None, &[])),
            "https://docs.example.com/a"
        );
    }

    #[test]
    fn path_template_ignores_the_query_and_head_keys_as_get() {
        let t = CacheKeyTemplate::parse("{method} {host}{path}").unwrap();
        assert_eq!(
            t.render(&head("HEAD", "/a", Some("v=1"), &[])),
            "GET docs.example.com/a"
        );
    }

    #[test]
    fn headers_and_cookies() {
        let t =
            CacheKeyTemplate::parse("{path}|{header.Accept-Language}|{cookie.lang}|{{x}}").unwrap();
        let h = head(
            "GET",
            "/",
            None,
            &[("accept-language", "fr"), ("cookie", "a=1; lang=de")],
        );
        assert_eq!(t.render(&h), "/|fr|de|{x}");
        assert_eq!(t.render(&head("GET", "/", None, &[])), "/|||{x}");
    }

    #[test]
    fn bad_templates_say_why() {
        assert_eq!(
            CacheKeyTemplate::parse("{host").unwrap_err(),
            KeyTemplateError::Unclosed(0)
        );
        assert_eq!(
            CacheKeyTemplate::parse("{hots}").unwrap_err().to_string(),
            "unknown variable {hots}: use {scheme}, {host}, {path}, {query}, {uri}, {method}, {header.NAME} or {cookie.NAME}"
        );
        assert_eq!(
            CacheKeyTemplate::parse("static").unwrap_err(),
            KeyTemplateError::NoVariable
        );
        assert_eq!(
            CacheKeyTemplate::parse("a}").unwrap_err(),
            KeyTemplateError::Unmatched(1)
        );
        assert!(CacheKeyTemplate::parse("{header.bad name}").is_err());
    }
}
