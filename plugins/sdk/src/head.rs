//! Reading what the host hands the hooks: header lookup on [`RequestHead`],
//! [`ResponseHead`] and [`LogRecord`] (names compared case-insensitively,
//! values as bytes or as `&str` when they are UTF-8), and the request's URI.

use crate::{Header, LogRecord, RequestHead, ResponseHead};

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// Every value of header `name` (any case), in arrival order.
pub fn header_values<'h, 'n>(
    headers: &'h [Header],
    name: &'n str,
) -> impl Iterator<Item = &'h [u8]> + use<'h, 'n> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// Header lookups shared by every record that carries a header list.
macro_rules! header_lookups {
    ($ty:ty, $field:ident) => {
        impl $ty {
            /// The first value of header `name` (any case).
            pub fn header(&self, name: &str) -> Option<&[u8]> {
                header_values(&self.$field, name).next()
            }

            /// The first value of header `name` (any case), if it is UTF-8.
            pub fn header_str(&self, name: &str) -> Option<&str> {
                self.header(name)
                    .and_then(|value| std::str::from_utf8(value).ok())
            }

            /// Every value of header `name` (any case), in order.
            pub fn header_values<'a>(
                &'a self,
                name: &'a str,
            ) -> impl Iterator<Item = &'a [u8]> + 'a {
                header_values(&self.$field, name)
            }

            /// Whether header `name` (any case) is present.
            pub fn has_header(&self, name: &str) -> bool {
                self.header(name).is_some()
            }
        }
    };
}

header_lookups!(RequestHead, headers);
header_lookups!(ResponseHead, headers);

impl RequestHead {
    /// Path and query as received: `/a/b?x=1`, or just the path.
    pub fn uri(&self) -> String {
        match &*self.query {
            Some(query) => format!("{}?{}", *self.path, query),
            None => (*self.path).clone(),
        }
    }
}

impl LogRecord {
    /// The first value of request header `name` (any case).
    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        header_values(&self.request_headers, name).next()
    }

    /// The first value of response header `name` (any case).
    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        header_values(&self.response_headers, name).next()
    }

    /// The value of var `name` set by an earlier hook, if any (the last one
    /// set wins).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|var| var.name == name)
            .map(|var| var.value.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request as the host would send it, with these headers.
    pub(crate) fn request(headers: &[(&str, &[u8])]) -> RequestHead {
        RequestHead {
            host: "example.com".into(),
            path: "/a/b".into(),
            headers: headers
                .iter()
                .map(|(name, value)| Header::new(*name, *value))
                .collect(),
            route: "site".into(),
            request_id: "r-1".into(),
            ..RequestHead::default()
        }
    }

    #[test]
    fn header_lookup_ignores_case_and_takes_the_first() {
        let req = request(&[
            ("user-agent", b"curl/8"),
            ("x-tag", b"one"),
            ("X-Tag", b"two"),
        ]);
        assert_eq!(req.header("User-Agent"), Some(&b"curl/8"[..]));
        assert_eq!(req.header_str("X-TAG"), Some("one"));
        assert_eq!(
            req.header_values("x-tag").collect::<Vec<_>>(),
            vec![&b"one"[..], &b"two"[..]]
        );
        assert!(req.has_header("x-tag"));
        assert!(!req.has_header("x-ta"));
        assert_eq!(req.header("cookie"), None);
    }

    #[test]
    fn header_str_refuses_non_utf8() {
        let req = request(&[("x-raw", b"caf\xe9")]);
        assert_eq!(req.header("x-raw"), Some(&b"caf\xe9"[..]));
        assert_eq!(req.header_str("x-raw"), None);
    }

    #[test]
    fn uri_joins_path_and_query() {
        let mut req = request(&[]);
        assert_eq!(req.uri(), "/a/b");
        req.query = Some("x=1&y".to_owned()).into();
        assert_eq!(req.uri(), "/a/b?x=1&y");
    }

    #[test]
    fn response_lookup_ignores_case() {
        let resp = ResponseHead {
            status: 200,
            headers: vec![Header::new("content-type", "text/html")],
            host_generated: false,
        };
        assert_eq!(resp.header_str("Content-Type"), Some("text/html"));
    }
}
