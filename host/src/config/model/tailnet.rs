//! The validated `[tailnet]` section: how upstreams are reached (the system
//! resolver and sockets, or tailscaled's SOCKS5 server), which targets may be
//! dialled at all (the allowlist), and the optional tailnet identity check.
//! Built by `config::tailnet` at load; read by the upstream connector.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[tailnet]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailnetConfig {
    pub dial: DialMode,
    /// How long a resolved upstream address is reused (system mode).
    pub dns_ttl: Duration,
    /// The targets upstreams may name; `None` when the config has no `allow`
    /// list (every configured upstream may be dialled, warned at startup).
    pub allow: Option<Vec<AllowedTarget>>,
    pub identity: Option<IdentityCheck>,
}

impl Default for TailnetConfig {
    fn default() -> Self {
        TailnetConfig {
            dial: DialMode::System,
            dns_ttl: DEFAULT_DNS_TTL,
            allow: None,
            identity: None,
        }
    }
}

pub const DEFAULT_DNS_TTL: Duration = Duration::from_secs(30);

/// How upstream connections are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialMode {
    /// tailscaled has a TUN device: resolve with the system resolver
    /// (MagicDNS) and connect directly.
    System,
    /// tailscaled runs in userspace networking: connect through its SOCKS5
    /// server, sending the hostname (never a locally resolved address).
    Socks5(SocketAddr),
}

/// One `allow` entry: `host:port`, where host may be `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTarget {
    pub host: AllowedHost,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// A host name or IP literal, lower case (IPv6 in brackets).
    Exact(String),
    /// `*.tail8d86e.ts.net`: stored as `.tail8d86e.ts.net`; matches any
    /// name below it (not the bare suffix).
    Suffix(String),
}

impl AllowedTarget {
    /// Whether this entry admits `host` (lower case, IPv6 in brackets) on `port`.
    pub fn permits(&self, host: &str, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        match &self.host {
            AllowedHost::Exact(name) => name.eq_ignore_ascii_case(host),
            AllowedHost::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

impl fmt::Display for AllowedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            AllowedHost::Exact(name) => write!(f, "{name}:{}", self.port),
            AllowedHost::Suffix(suffix) => write!(f, "*{suffix}:{}", self.port),
        }
    }
}

/// Whether `allow` (if any) admits `host:port`.
pub fn allowlist_permits(allow: Option<&[AllowedTarget]>, host: &str, port: u16) -> bool {
    allow.is_none_or(|list| list.iter().any(|t| t.permits(host, port)))
}

/// Check each new upstream connection's peer with tailscaled's LocalAPI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCheck {
    /// The tag the peer node must carry, e.g. `tag:flyio-target`.
    pub require_tag: String,
    /// tailscaled's LocalAPI unix socket.
    pub localapi_socket: PathBuf,
    /// How long a peer's answer is reused.
    pub cache_ttl: Duration,
}

pub const DEFAULT_LOCALAPI_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";
pub const DEFAULT_WHOIS_CACHE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: AllowedHost, port: u16) -> AllowedTarget {
        AllowedTarget { host, port }
    }

    #[test]
    fn exact_entries_match_host_and_port_only() {
        let t = target(AllowedHost::Exact("docs.tail8d86e.ts.net".into()), 443);
        assert!(t.permits("docs.tail8d86e.ts.net", 443));
        assert!(t.permits("DOCS.tail8d86e.ts.net", 443));
        assert!(!t.permits("docs.tail8d86e.ts.net", 80));
        assert!(!t.permits("evil.tail8d86e.ts.net", 443));
        assert!(!t.permits("docs.tail8d86e.ts.net.evil.com", 443));
    }

    #[test]
    fn suffix_entries_match_names_below_the_suffix() {
        let t = target(AllowedHost::Suffix(".tail8d86e.ts.net".into()), 443);
        assert!(t.permits("docs.tail8d86e.ts.net", 443));
        assert!(t.permits("a.b.tail8d86e.ts.net", 443));
        assert!(!t.permits("tail8d86e.ts.net", 443));
        assert!(!t.permits(".tail8d86e.ts.net", 443));
        assert!(!t.permits("docs.tail8d86e.ts.net", 8443));
        assert!(!t.permits("xtail8d86e.ts.net", 443));
        assert_eq!(t.to_string(), "*.tail8d86e.ts.net:443");
    }

    #[test]
    fn no_list_admits_everything_an_empty_list_nothing() {
        assert!(allowlist_permits(None, "anything", 1));
        assert!(!allowlist_permits(Some(&[]), "anything", 1));
    }
}
