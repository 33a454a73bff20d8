//! Redaction applied while a line is rendered in `on-log`: query parameters
//! by name (the value becomes `REDACTED` in `request_uri`, `request`, `args`
//! and `http_referer`), header values by name, and client addresses cut to
//! their network (IPv4 /24 and IPv6 /48 by default). Built at configure time
//! from `redact.*`.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tailgate_plugin_sdk::template::push_ip;
use tailgate_plugin_sdk::ConfigError;

use crate::config::RawRedact;

/// What a redacted value becomes.
pub const REDACTED: &str = "REDACTED";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    /// Lower case, as decoded names.
    query_params: Vec<String>,
    /// Lower case.
    headers: Vec<String>,
    ip: Option<IpPrefixes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpPrefixes {
    v4: u8,
    v6: u8,
}

impl Redaction {
    pub fn build(raw: &RawRedact) -> Result<Redaction, ConfigError> {
        let mut query_params = Vec::with_capacity(raw.query_params.len());
        for (i, name) in raw.query_params.iter().enumerate() {
            if name.is_empty() {
                return Err(ConfigError::new(
                    format!("redact.query_params[{i}]"),
                    "must not be empty",
                ));
            }
            query_params.push(name.to_lowercase());
        }
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (i, name) in raw.headers.iter().enumerate() {
            if !is_token(name) {
                return Err(ConfigError::new(
                    format!("redact.headers[{i}]"),
                    format!("`{name}` is not a valid header name"),
                ));
            }
            headers.push(name.to_ascii_lowercase());
        }
        let v4 = raw.ipv4_prefix.unwrap_or(24);
        let v6 = raw.ipv6_prefix.unwrap_or(48);
        if v4 > 32 {
            return Err(ConfigError::new(
                "redact.ipv4_prefix",
                format!("{v4} is not an IPv4 prefix length (0-32)"),
            ));
        }
        if v6 > 128 {
            return Err(ConfigError::new(
                "redact.ipv6_prefix",
                format!("{v6} is not an IPv6 prefix length (0-128)"),
            ));
        }
        if !raw.ip_truncate && (raw.ipv4_prefix.is_some() || raw.ipv6_prefix.is_some()) {
            return Err(ConfigError::new(
                "redact",
                "`ipv4_prefix` / `ipv6_prefix` need `ip_truncate = true`",
            ));
        }
        Ok(Redaction {
            query_params,
            headers,
            ip: raw.ip_truncate.then_some(IpPrefixes { v4, v6 }),
        })
    }

    /// `path?query` with the listed parameters' values replaced.
    #[inline(always)]
    pub fn uri<'a>(&self, uri: &'a str) -> Cow<'a, str> {
        if self.query_params.is_empty() {
            Cow::Borrowed(uri)
        } else {
            self.uri_with_params(uri)
        }
    }

    fn uri_with_params<'a>(&self, uri: &'a str) -> Cow<'a, str> {
        match uri.split_once('?') {
            Some((path, query)) => match self.query(query) {
                Cow::Borrowed(_) => Cow::Borrowed(uri),
                Cow::Owned(query) => {
                    let mut out = String::with_capacity(path.len() + 1 + query.len());
                    out.push_str(path);
                    out.push('?');
                    out.push_str(&query);
                    Cow::Owned(out)
                }
            },
            None => Cow::Borrowed(uri),
        }
    }

    /// A query string (no `?`) with the listed parameters' values replaced.
    pub fn query<'a>(&self, query: &'a str) -> Cow<'a, str> {
        if self.query_params.is_empty() {
            return Cow::Borrowed(query);
        }
        let mut out = String::new();
        let mut changed = false;
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if self.is_secret_param(name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                    changed = true;
                }
                _ => out.push_str(pair),
            }
        }
        if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(query)
        }
    }

    fn is_secret_param(&self, raw_name: &str) -> bool {
        let name = percent_decode(raw_name).to_lowercase();
        self.query_params.contains(&name)
    }

    /// Whether header `name` (lower case) is to be redacted.
    #[inline(always)]
    pub fn hides_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h == name)
    }

    /// A client or peer address, cut to its network when `ip_truncate`
    /// is on.
    #[inline(always)]
    pub fn mask(&self, ip: IpAddr) -> IpAddr {
        match self.ip {
            Some(prefixes) => truncate(ip, prefixes),
            None => ip,
        }
    }

    /// [`Redaction::mask`] as text.
    pub fn ip(&self, ip: IpAddr) -> String {
        let ip = self.mask(ip);
        let mut out = Vec::with_capacity(15);
        push_ip(ip, &mut out);
        // `push_ip` writes ASCII only.
        String::from_utf8(out).unwrap_or_default()
    }
}

fn truncate(addr: IpAddr, prefixes: IpPrefixes) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(truncate_v4(v4, prefixes.v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(truncate_v4(v4, prefixes.v4)),
            None => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefixes.v6))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        },
    }
}

fn truncate_v4(v4: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(v4) & mask)
}

/// `%XX` decoded and `+` as space, for comparing parameter names; invalid
/// escapes and bytes are kept as they are.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

pub use tailgate_plugin_sdk::validate::is_token;

#[cfg(test)]
mod tests {
    use super::*;

    fn redaction(params: &[&str], headers: &[&str], ip: bool) -> Redaction {
        Redaction::build(&RawRedact {
            query_params: params.iter().map(|p| (*p).to_owned()).collect(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            ip_truncate: ip,
            ipv4_prefix: None,
            ipv6_prefix: None,
        })
        .expect("valid")
    }

    #[test]
    fn listed_query_parameters_lose_their_values() {
        let r = redaction(&["token", "Password"], &[], false);
        assert_eq!(
            r.uri("/login?user=ann&password=hunter2&token=abc&tokens=keep"),
            "/login?user=ann&password=REDACTED&token=REDACTED&tokens=keep"
        );
        // Names compare decoded and in any case; bare names stay.
        assert_eq!(
            r.uri("/a?TOKEN=1&to%6Ben=2&token&x=%20"),
            "/a?TOKEN=REDACTED&to%6Ben=REDACTED&token&x=%20"
        );
        assert_eq!(r.query("a=1&token=2"), "a=1&token=REDACTED");
        // Untouched text is borrowed, not copied.
        assert!(matches!(r.uri("/a?x=1"), Cow::Borrowed(_)));
        assert!(matches!(r.uri("/a"), Cow::Borrowed(_)));
        assert_eq!(redaction(&[], &[], false).uri("/a?token=1"), "/a?token=1");
    }

    /// An address the host hands over (always parsed: no text to guard).
    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn ips_are_cut_to_their_network() {
        let r = redaction(&[], &[], true);
        assert_eq!(r.ip(ip("203.0.113.77")), "203.0.113.0");
        assert_eq!(r.ip(ip("2001:db8:1234:5678::1")), "2001:db8:1234::");
        assert_eq!(r.ip(ip("::ffff:198.51.100.9")), "198.51.100.0");
        assert_eq!(r.ip(ip("2001:db8:1:2::9")), "2001:db8:1::");
        let off = redaction(&[], &[], false);
        assert_eq!(off.ip(ip("203.0.113.77")), "203.0.113.77");
        assert_eq!(off.ip(ip("2001:db8::9")), "2001:db8::9");
    }

    #[test]
    fn prefixes_are_configurable() {
        let r = Redaction::build(&RawRedact {
            ip_truncate: true,
            ipv4_prefix: Some(16),
            ipv6_prefix: Some(32),
            ..RawRedact::default()
        })
        .expect("valid");
        assert_eq!(r.ip(ip("203.0.113.77")), "203.0.0.0");
        assert_eq!(r.ip(ip("2001:db8:1234::1")), "2001:db8::");
        let zero = Redaction::build(&RawRedact {
            ip_truncate: true,
            ipv4_prefix: Some(0),
            ipv6_prefix: Some(128),
            ..RawRedact::default()
        })
        .expect("valid");
        assert_eq!(zero.ip(ip("203.0.113.77")), "0.0.0.0");
        assert_eq!(zero.ip(ip("2001:db8::1")), "2001:db8::1");
    }

    #[test]
    fn headers_are_matched_in_lower_case() {
        let r = redaction(&[], &["Authorization", "cookie"], false);
        assert!(r.hides_header("authorization"));
        assert!(r.hides_header("cookie"));
        assert!(!r.hides_header("user-agent"));
    }

    #[test]
    fn bad_redaction_config_names_the_key() {
        let err = |raw: RawRedact| Redaction::build(&raw).expect_err("refused").to_string();
        assert_eq!(
            err(RawRedact {
                headers: vec!["x ok".into()],
                ..RawRedact::default()
            }),
            "redact.headers[0]: `x ok` is not a valid header name"
        );
        assert_eq!(
            err(RawRedact {
                query_params: vec!["a".into(), String::new()],
                ..RawRedact::default()
            }),
            "redact.query_params[1]: must not be empty"
        );
        assert_eq!(
            err(RawRedact {
                ip_truncate: true,
                ipv4_prefix: Some(33),
                ..RawRedact::default()
            }),
            "redact.ipv4_prefix: 33 is not an IPv4 prefix length (0-32)"
        );
        assert_eq!(
            err(RawRedact {
                ipv6_prefix: Some(48),
                ..RawRedact::default()
            }),
            "redact: `ipv4_prefix` / `ipv6_prefix` need `ip_truncate = true`"
        );
    }
}
