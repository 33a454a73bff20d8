//! The validated `[upstreams.NAME]` tables: an HTTP(S) upstream (base URL,
//! addresses, timeouts, TLS, Host header, health) or a static folder. Built
//! by `config::upstream` at load; read by `crate::upstream`.

use std::path::PathBuf;
use std::time::Duration;

use super::UpstreamName;

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: UpstreamName,
    pub kind: UpstreamKind,
}

#[derive(Debug, Clone)]
pub enum UpstreamKind {
    /// Serve files from a folder (resolved relative to the config file).
    Static { root: PathBuf },
    /// Boxed: far larger than a static folder.
    Http(Box<HttpUpstream>),
}

#[derive(Debug, Clone)]
pub struct HttpUpstream {
    /// `http` or `https` base URL, e.g. `https://docs.tail8d86e.ts.net`.
    /// Its path (if not "/") is prefixed to every request path.
    pub url: http::Uri,
    pub tls: bool,
    /// host[:port] as in the URL; port defaulted from the scheme.
    pub host: String,
    pub port: u16,
    pub host_header: HostHeader,
    pub connect_timeout: Duration,
    /// Time to wait for the response head once the request is sent.
    pub response_timeout: Duration,
    /// Verify the upstream's certificate (web PKI roots). Opt out per upstream.
    pub tls_verify: bool,
    /// Trust these PEM roots instead of the web PKI ones.
    pub ca_file: Option<PathBuf>,
    /// Time for the TLS handshake once TCP is connected (the first handshake
    /// to a tailnet service can wait for its certificate to be issued).
    pub tls_handshake_timeout: Duration,
    /// Every address of the upstream, in failover order; the first is the
    /// URL's own (`host`, `port`). All share the scheme and path.
    pub endpoints: Vec<Endpoint>,
    pub health: HealthPolicy,
}

/// One address of an HTTP(S) upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Lower case; IPv6 in brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written in the URL.
    pub authority: http::uri::Authority,
}

/// When an upstream address is taken out of rotation, and how it comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failures that mark an address down (nginx `max_fails`).
    pub max_fails: u32,
    /// How long a down address is skipped (nginx `fail_timeout`).
    pub fail_timeout: Duration,
    pub active: Option<ActiveHealthCheck>,
}

/// A periodic `GET path` to every address; a 2xx/3xx marks it up, else down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Which Host header goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's Host (nginx `proxy_set_header Host $host`).
    Client,
    /// The upstream URL's host (nginx default `$proxy_host`).
    Upstream,
    /// A fixed name (nginx `proxy_set_header Host name`): a virtual host of
    /// the upstream that the client never names.
    Set(http::HeaderValue),
}
