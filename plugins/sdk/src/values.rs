//! The contract's well-known values as text: [`Method`], [`Scheme`],
//! [`Protocol`] and [`CacheStatus`] cross as numbers (no allocation in the
//! guest); a plugin that writes or matches their names reads them here, as
//! nginx writes them (`$request_method`, `$scheme`, `$server_protocol`,
//! `$upstream_cache_status`).

use std::fmt;

use crate::{CacheStatus, Method, Protocol, Scheme};

impl Method {
    /// e.g. "GET".
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

impl Scheme {
    /// "http" or "https".
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl Protocol {
    /// e.g. "HTTP/1.1", as nginx's `$server_protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2.0",
        }
    }
}

impl CacheStatus {
    /// e.g. "HIT", as nginx's `$upstream_cache_status`.
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

macro_rules! display_as_str {
    ($($ty:ty),*) => {
        $(impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        })*
    };
}
display_as_str!(Method, Scheme, Protocol, CacheStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["GET", "HEAD", "PATCH", "PURGE"] {
            assert_eq!(Method::from_name(name).as_str(), name);
        }
        assert_eq!(Method::from_name("GET"), Method::Get);
        assert_eq!(Protocol::Http2.to_string(), "HTTP/2.0");
        assert_eq!(CacheStatus::Hit.to_string(), "HIT");
        assert_eq!(Scheme::Https.as_str(), "https");
    }
}
