//! The contract's well-known values (method, scheme, protocol, cache
//! status, IP address) to and from the host's own types: the pipeline
//! builds `request-head` and `log-record` with these, and host code reads
//! them back as text where a line or a key needs it. They cross into a
//! guest as numbers, not strings (no guest allocation per value). Also the
//! plain results the host makes without a call (go on, keep the line).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bindings::types::{
    CacheStatus, IpAddress, LogLine, LogVerdict, Method, Protocol, RequestAction, RequestEdits,
    Scheme, Var,
};

impl Method {
    /// The method's name, e.g. "GET".
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other(name) => name,
        }
    }
}

impl Method {
    /// The method named `name` (case-sensitive, as HTTP methods are).
    pub fn from_name(name: &str) -> Self {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl From<&http::Method> for Method {
    fn from(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Method::Get,
            http::Method::HEAD => Method::Head,
            http::Method::POST => Method::Post,
            http::Method::PUT => Method::Put,
            http::Method::DELETE => Method::Delete,
            http::Method::CONNECT => Method::Connect,
            http::Method::OPTIONS => Method::Options,
            http::Method::TRACE => Method::Trace,
            http::Method::PATCH => Method::Patch,
            ref other => Method::Other(other.as_str().to_owned()),
        }
    }
}

impl Scheme {
    /// "http" or "https".
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// `Https` for "https" (any case), `Http` otherwise.
    pub fn from_text(text: &str) -> Self {
        if text.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }
}

impl Protocol {
    /// As nginx's `$server_protocol`, e.g. "HTTP/1.1".
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2.0",
        }
    }
}

impl Protocol {
    /// "HTTP/1.0", "HTTP/1.1", "HTTP/2.0" (or "HTTP/2").
    pub fn from_text(text: &str) -> Option<Self> {
        match text {
            "HTTP/1.0" => Some(Protocol::Http10),
            "HTTP/1.1" => Some(Protocol::Http11),
            "HTTP/2.0" | "HTTP/2" => Some(Protocol::Http2),
            _ => None,
        }
    }
}

impl From<http::Version> for Protocol {
    fn from(version: http::Version) -> Self {
        match version {
            http::Version::HTTP_09 | http::Version::HTTP_10 => Protocol::Http10,
            http::Version::HTTP_2 | http::Version::HTTP_3 => Protocol::Http2,
            _ => Protocol::Http11,
        }
    }
}

impl CacheStatus {
    /// As nginx's `$upstream_cache_status`, e.g. "HIT".
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Updating => "UPDATING",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Hit => "HIT",
        }
    }
}

impl CacheStatus {
    /// The status named `text` as [`CacheStatus::as_str`] writes it (any
    /// case).
    pub fn from_text(text: &str) -> Option<Self> {
        [
            CacheStatus::Miss,
            CacheStatus::Bypass,
            CacheStatus::Expired,
            CacheStatus::Stale,
            CacheStatus::Updating,
            CacheStatus::Revalidated,
            CacheStatus::Hit,
        ]
        .into_iter()
        .find(|status| status.as_str().eq_ignore_ascii_case(text))
    }
}

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpAddress::V4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                IpAddress::V6(((bits >> 64) as u64, bits as u64))
            }
        }
    }
}

impl From<IpAddress> for IpAddr {
    fn from(ip: IpAddress) -> Self {
        match ip {
            IpAddress::V4(bits) => IpAddr::V4(Ipv4Addr::from(bits)),
            IpAddress::V6((high, low)) => {
                IpAddr::V6(Ipv6Addr::from((u128::from(high) << 64) | u128::from(low)))
            }
        }
    }
}

/// An address's text form, written into a buffer on the stack
/// ([`address_text::push_ip`](crate::address_text::push_ip)): the key of a
/// `rate-key.address` without an allocation.
pub(crate) struct KeyText {
    buf: [u8; 48],
    len: usize,
}

impl Default for KeyText {
    fn default() -> Self {
        KeyText {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl std::fmt::Write for KeyText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let room = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl KeyText {
    /// `ip` as `Display` writes it ("203.0.113.7", "2001:db8::1"; at most
    /// 45 bytes, an IPv4-mapped form: it fits).
    pub(crate) fn of(&mut self, ip: IpAddress) -> &str {
        self.len = 0;
        crate::address_text::push_ip(self, IpAddr::from(ip));
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl RequestAction {
    /// Go on unchanged, carrying `vars` (a plugin without the hook: none;
    /// a request its request checks passed: theirs).
    pub(crate) fn go_on(vars: Vec<Var>) -> RequestAction {
        RequestAction::Continue(RequestEdits {
            headers: Vec::new(),
            path: None,
            delay_ms: 0,
            vars,
        })
    }
}

impl LogVerdict {
    /// The shaped line, if the hook shaped one.
    pub fn into_line(self) -> Option<LogLine> {
        match self {
            LogVerdict::Shape(line) => Some(line),
            LogVerdict::Keep | LogVerdict::Drop => None,
        }
    }
}

impl Default for IpAddress {
    /// 0.0.0.0, for records of requests with no peer (tests, the harness).
    fn default() -> Self {
        IpAddress::V4(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for text in ["203.0.113.7", "::1", "2001:db8::ff00:42:8329", "0.0.0.0"] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(IpAddr::from(IpAddress::from(ip)), ip, "{text}");
        }
        assert_eq!(
            IpAddress::from("1.2.3.4".parse::<IpAddr>().unwrap()),
            IpAddress::V4(0x0102_0304)
        );
    }

    #[test]
    fn key_text_writes_addresses_as_display_does() {
        for text in [
            "0.0.0.0",
            "9.10.99.100",
            "203.0.113.7",
            "255.255.255.255",
            "::1",
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(KeyText::default().of(IpAddress::from(ip)), ip.to_string());
        }
    }

    #[test]
    fn methods_map_both_ways() {
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "PURGE"] {
            let method = http::Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(Method::from(&method).as_str(), m);
        }
        assert_eq!(Method::from(&http::Method::GET), Method::Get);
    }
}
