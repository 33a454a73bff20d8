//! Reading the contract's records on the host side: the pipeline fills
//! every field of a `request-head` or `log-record` (only a plugin call
//! narrows them, and puts them back), so host code reads them as plain
//! text and lists through these accessors; a field that is `none` reads
//! as empty.

use crate::bindings::types::{
    Header, IpAddress, LogRecord, Method, Protocol, RequestHead, ResponseHead, Scheme, Var,
};

macro_rules! text_accessors {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("`", stringify!($field), "`, empty when `none`.")]
                pub fn $field(&self) -> &str {
                    self.$field.as_deref().unwrap_or_default()
                }
            )*
        }
    };
}

macro_rules! list_accessors {
    ($ty:ty { $($field:ident: $item:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("`", stringify!($field), "`, empty when `none`.")]
                pub fn $field(&self) -> &[$item] {
                    self.$field.as_deref().unwrap_or_default()
                }
            )*
        }
    };
}

text_accessors!(RequestHead {
    host,
    path,
    route,
    request_id
});
list_accessors!(RequestHead { headers: Header });
list_accessors!(ResponseHead { headers: Header });
text_accessors!(LogRecord {
    host,
    uri,
    route,
    request_id,
    user_agent,
    referer,
    http_host,
    path,
});
list_accessors!(LogRecord {
    request_headers: Header,
    response_headers: Header,
    vars: Var,
});

impl Default for RequestHead {
    /// A GET over http from 0.0.0.0 with every text field `none` (tests,
    /// the harness's defaults).
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            scheme: Scheme::Http,
            client_ip: IpAddress::default(),
            host: None,
            path: None,
            query: None,
            headers: None,
            route: None,
            request_id: None,
        }
    }
}

impl Default for LogRecord {
    /// A 200 to a GET over HTTP/1.1 from 0.0.0.0 with every optional field
    /// `none` (tests, the harness's defaults).
    fn default() -> Self {
        LogRecord {
            time_unix_ms: 0,
            client_ip: IpAddress::default(),
            peer_ip: IpAddress::default(),
            peer_port: 0,
            method: Method::Get,
            scheme: Scheme::Http,
            protocol: Protocol::Http11,
            status: 200,
            bytes_sent: 0,
            bytes_received: 0,
            request_time: 0.0,
            upstream_response_time: None,
            cache_status: None,
            host: None,
            uri: None,
            upstream_addr: None,
            route: None,
            request_id: None,
            user_agent: None,
            referer: None,
            http_host: None,
            request_headers: None,
            response_headers: None,
            vars: None,
            path: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_reads_as_empty() {
        let head = RequestHead {
            path: Some("/a".into()),
            ..RequestHead::default()
        };
        assert_eq!(
            (head.method.as_str(), head.path(), head.host()),
            ("GET", "/a", "")
        );
        assert!(head.headers().is_empty());
    }
}
