//! What the hooks are handed, as plugin code reads it: [`RequestHead`],
//! [`ResponseHead`] and [`LogRecord`], built from the contract's records by
//! the export glue. Methods, schemes, protocols, cache statuses and
//! addresses come as values ([`Method`], [`std::net::IpAddr`]); the text
//! fields come as [`Field`]s: the value when the plugin asked for the field
//! (see [`Plugin::request_fields`](crate::Plugin::request_fields)), and a
//! loud panic naming the flag when a hook reads one it did not ask for.

use std::net::IpAddr;

use crate::bindings::tailgate::plugin::types as wit;
use crate::field::Field;
use crate::{CacheStatus, Header, LogFieldSet, Method, Protocol, RequestFieldSet, Scheme, Var};

/// What a plugin sees of a request, after trusted-proxy resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHead {
    pub method: Method,
    /// As the client used it (X-Forwarded-Proto from a trusted peer counts).
    pub scheme: Scheme,
    /// The client's address (the socket peer, or the client-IP header a
    /// trusted proxy sent).
    pub client_ip: IpAddr,
    /// Host without port, lower case.
    pub host: Field<String>,
    /// The normalised path, without the query.
    pub path: Field<String>,
    /// The query without the leading '?', if any.
    pub query: Field<Option<String>>,
    /// The request header fields the plugin asked for, in arrival order,
    /// names lower case.
    pub headers: Vec<Header>,
    /// Name of the route that matched.
    pub route: Field<String>,
    /// Unique id of this request (also sent upstream as x-request-id).
    pub request_id: Field<String>,
}

impl Default for RequestHead {
    /// `GET` over http from 0.0.0.0, every field asked for and empty.
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            scheme: Scheme::Http,
            client_ip: IpAddr::from([0, 0, 0, 0]),
            host: Field::default(),
            path: Field::default(),
            query: Field::default(),
            headers: Vec::new(),
            route: Field::default(),
            request_id: Field::default(),
        }
    }
}

/// What a plugin sees of a response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseHead {
    pub status: u16,
    /// The response header fields the plugin asked for, names lower case.
    pub headers: Vec<Header>,
    /// True when the host made this response itself (upstream failure,
    /// timeout, body too large, plugin failure): nginx's `always` case.
    pub host_generated: bool,
}

/// The finished exchange, handed to the log hook.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Request start, Unix epoch milliseconds ([`crate::time`] formats it).
    pub time_unix_ms: u64,
    pub client_ip: IpAddr,
    /// The socket peer.
    pub peer_ip: IpAddr,
    pub peer_port: u16,
    pub method: Method,
    pub scheme: Scheme,
    pub protocol: Protocol,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Seconds from the first byte read to the last byte sent.
    pub request_time: f64,
    /// Seconds the upstream took to answer (headers), if one was asked.
    pub upstream_response_time: Option<f64>,
    /// `None` when the route has no cache.
    pub cache_status: Option<CacheStatus>,
    pub host: Field<String>,
    /// Path and query as received.
    pub uri: Field<String>,
    pub upstream_addr: Field<Option<String>>,
    pub route: Field<String>,
    pub request_id: Field<String>,
    /// The User-Agent request header, empty when absent.
    pub user_agent: Field<String>,
    /// The Referer request header, empty when absent.
    pub referer: Field<String>,
    /// The Host request header as sent, port included (nginx `$http_host`;
    /// the authority for HTTP/2, the routed host when the request named
    /// none).
    pub http_host: Field<String>,
    pub request_headers: Vec<Header>,
    pub response_headers: Vec<Header>,
    /// Vars set by earlier hooks (e.g. the rate-limit outcome).
    pub vars: Field<Vec<Var>>,
    /// The normalised path, without the query, as [`RequestHead::path`]
    /// had it (the path as received when it could not be normalised and
    /// the request was refused).
    pub path: Field<String>,
}

impl Default for LogRecord {
    /// A 200 to a `GET` over HTTP/1.1 from 0.0.0.0, every field asked for
    /// and empty.
    fn default() -> Self {
        let nobody = IpAddr::from([0, 0, 0, 0]);
        LogRecord {
            time_unix_ms: 0,
            client_ip: nobody,
            peer_ip: nobody,
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
            host: Field::default(),
            uri: Field::default(),
            upstream_addr: Field::default(),
            route: Field::default(),
            request_id: Field::default(),
            user_agent: Field::default(),
            referer: Field::default(),
            http_host: Field::default(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            vars: Field::default(),
            path: Field::default(),
        }
    }
}

/// A text field as the plugin reads it: the value (empty when `none`) if
/// the plugin asked for it, a [`Field::not_asked`] naming `flag` if not.
pub(crate) fn field<T: Default>(value: Option<T>, asked: bool, flag: &'static str) -> Field<T> {
    if asked {
        Field::new(value.unwrap_or_default())
    } else {
        Field::not_asked(flag)
    }
}

/// The query: `None` stays `None` when asked for.
pub(crate) fn optional(
    value: Option<String>,
    asked: bool,
    flag: &'static str,
) -> Field<Option<String>> {
    if asked {
        Field::new(value)
    } else {
        Field::not_asked(flag)
    }
}

impl RequestHead {
    /// The contract's record as a plugin that asked for `fields` reads it.
    pub fn from_wit(head: wit::RequestHead, fields: RequestFieldSet) -> Self {
        let asked = |flag| fields.contains(flag);
        RequestHead {
            method: head.method,
            scheme: head.scheme,
            client_ip: ip(head.client_ip),
            host: field(
                head.host,
                asked(RequestFieldSet::HOST),
                "RequestFieldSet::HOST",
            ),
            path: field(
                head.path,
                asked(RequestFieldSet::PATH),
                "RequestFieldSet::PATH",
            ),
            query: optional(
                head.query,
                asked(RequestFieldSet::QUERY),
                "RequestFieldSet::QUERY",
            ),
            headers: head.headers.unwrap_or_default(),
            route: field(
                head.route,
                asked(RequestFieldSet::ROUTE),
                "RequestFieldSet::ROUTE",
            ),
            request_id: field(
                head.request_id,
                asked(RequestFieldSet::REQUEST_ID),
                "RequestFieldSet::REQUEST_ID",
            ),
        }
    }
}

impl From<wit::ResponseHead> for ResponseHead {
    fn from(head: wit::ResponseHead) -> Self {
        ResponseHead {
            status: head.status,
            headers: head.headers.unwrap_or_default(),
            host_generated: head.host_generated,
        }
    }
}

impl LogRecord {
    /// The contract's record as a plugin that asked for `fields` reads it.
    pub fn from_wit(rec: wit::LogRecord, fields: LogFieldSet) -> Self {
        let asked = |flag| fields.contains(flag);
        LogRecord {
            time_unix_ms: rec.time_unix_ms,
            client_ip: ip(rec.client_ip),
            peer_ip: ip(rec.peer_ip),
            peer_port: rec.peer_port,
            method: rec.method,
            scheme: rec.scheme,
            protocol: rec.protocol,
            status: rec.status,
            bytes_sent: rec.bytes_sent,
            bytes_received: rec.bytes_received,
            request_time: rec.request_time,
            upstream_response_time: rec.upstream_response_time,
            cache_status: rec.cache_status,
            host: field(rec.host, asked(LogFieldSet::HOST), "LogFieldSet::HOST"),
            uri: field(rec.uri, asked(LogFieldSet::URI), "LogFieldSet::URI"),
            upstream_addr: optional(
                rec.upstream_addr,
                asked(LogFieldSet::UPSTREAM_ADDR),
                "LogFieldSet::UPSTREAM_ADDR",
            ),
            route: field(rec.route, asked(LogFieldSet::ROUTE), "LogFieldSet::ROUTE"),
            request_id: field(
                rec.request_id,
                asked(LogFieldSet::REQUEST_ID),
                "LogFieldSet::REQUEST_ID",
            ),
            user_agent: field(
                rec.user_agent,
                asked(LogFieldSet::USER_AGENT),
                "LogFieldSet::USER_AGENT",
            ),
            referer: field(
                rec.referer,
                asked(LogFieldSet::REFERER),
                "LogFieldSet::REFERER",
            ),
            http_host: field(
                rec.http_host,
                asked(LogFieldSet::HTTP_HOST),
                "LogFieldSet::HTTP_HOST",
            ),
            request_headers: rec.request_headers.unwrap_or_default(),
            response_headers: rec.response_headers.unwrap_or_default(),
            vars: field(rec.vars, asked(LogFieldSet::VARS), "LogFieldSet::VARS"),
            path: field(rec.path, asked(LogFieldSet::PATH), "LogFieldSet::PATH"),
        }
    }
}

/// The contract's address as `std`'s.
pub fn ip(address: wit::IpAddress) -> IpAddr {
    match address {
        wit::IpAddress::V4(bits) => IpAddr::from(bits.to_be_bytes()),
        wit::IpAddress::V6((high, low)) => {
            IpAddr::from(((u128::from(high) << 64) | u128::from(low)).to_be_bytes())
        }
    }
}

/// `std`'s address as the contract's.
pub fn wit_ip(address: IpAddr) -> wit::IpAddress {
    match address {
        IpAddr::V4(v4) => wit::IpAddress::V4(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            wit::IpAddress::V6(((bits >> 64) as u64, bits as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_left_out_by_the_host_read_as_empty_when_asked_and_panic_when_not() {
        let head = RequestHead::from_wit(
            wit::RequestHead {
                method: Method::Post,
                scheme: Scheme::Https,
                client_ip: wit::IpAddress::V4(0xCB00_7107),
                host: None,
                path: Some("/a".to_owned()),
                query: None,
                headers: None,
                route: None,
                request_id: None,
            },
            RequestFieldSet::PATH | RequestFieldSet::HOST,
        );
        assert_eq!(head.path, "/a");
        assert_eq!(head.host, "");
        assert_eq!(head.client_ip.to_string(), "203.0.113.7");
        assert_eq!(head.method, Method::Post);
        assert!(!head.route.is_asked());
        assert!(std::panic::catch_unwind(|| head.route.len()).is_err());
        let resp = ResponseHead::from(wit::ResponseHead {
            status: 204,
            headers: None,
            host_generated: true,
        });
        assert_eq!((resp.status, resp.headers.len()), (204, 0));
    }

    #[test]
    fn addresses_cross_both_ways() {
        for text in ["203.0.113.7", "::1", "2001:db8::42"] {
            let address: IpAddr = text.parse().expect("ip");
            assert_eq!(ip(wit_ip(address)), address);
        }
    }
}
