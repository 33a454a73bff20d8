//! Reading the contract's records on the host side: the pipeline fills
//! every field of a `request-head` or `log-record` (only a plugin call
//! narrows them, and puts them back), so host code reads them as plain
//! text and lists through these accessors; a field that is `none` reads
//! as empty.

use crate::bindings::types::{Header, LogRecord, RequestHead, ResponseHead, Var};

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
    method,
    scheme,
    host,
    path,
    client_ip,
    route,
    request_id
});
list_accessors!(RequestHead { headers: Header });
list_accessors!(ResponseHead { headers: Header });
text_accessors!(LogRecord {
    time,
    client_ip,
    peer_addr,
    method,
    scheme,
    host,
    uri,
    protocol,
    cache_status,
    route,
    request_id,
    user_agent,
    referer,
    http_host,
});
list_accessors!(LogRecord {
    request_headers: Header,
    response_headers: Header,
    vars: Var,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_reads_as_empty() {
        let head = RequestHead {
            method: Some("GET".into()),
            scheme: None,
            host: None,
            path: Some("/a".into()),
            query: None,
            headers: None,
            client_ip: None,
            route: None,
            request_id: None,
        };
        assert_eq!((head.method(), head.path(), head.host()), ("GET", "/a", ""));
        assert!(head.headers().is_empty());
    }
}
