//! The validated configuration: what `config.toml` means once parsed and
//! checked. Built by `config::load` from the raw file structs; read by the
//! router, the pipeline and the upstream layer. Every field here is valid.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

pub mod telemetry;
pub use self::telemetry::TelemetryConfig;
pub use super::cache::{CacheCondition, CacheConfig, IgnoredHeaders, RouteCache, UseStale};

pub mod tailnet;
pub mod tls;

pub use self::tailnet::TailnetConfig;
pub use self::tls::TlsConfig;
pub use super::access_log::AccessLogConfig;
pub use super::admin::AdminConfig;

/// The whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// File it was read from.
    pub source: PathBuf,
    pub server: ServerConfig,
    pub runtime: PluginRuntimeConfig,
    /// Plugin name -> wasm file (resolved relative to the config file's folder).
    pub plugins: BTreeMap<PluginName, PathBuf>,
    pub upstreams: BTreeMap<UpstreamName, Arc<Upstream>>,
    /// Routes in config order.
    pub routes: Vec<Arc<Route>>,
    /// `[cache]`: the shared response cache (`crate::cache`).
    pub cache: CacheConfig,
    /// Metrics naming, remote_write and Loki pushers (`crate::telemetry`).
    pub telemetry: TelemetryConfig,
    /// `[tailnet]`: how upstreams are dialled, and which may be.
    pub tailnet: TailnetConfig,
    /// `[tls]`: TLS listeners, when Tailgate terminates TLS itself.
    pub tls: Option<TlsConfig>,
    /// `[admin]`: the admin listener (`crate::admin`).
    pub admin: AdminConfig,
    /// `[access_log]`: STDOUT and/or a file.
    pub access_log: AccessLogConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// Tokio worker threads; 0 = one per core.
    pub workers: usize,
    /// Header holding the real client IP when the peer is trusted (lower case).
    pub client_ip_header: Option<http::HeaderName>,
    pub trusted_proxies: Vec<IpNet>,
    pub unknown_host: UnknownHost,
    /// How long in-flight requests and WebSockets get after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    /// Connections to `listen` open with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
}

/// What to do with a request whose Host no route names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownHost {
    Status(http::StatusCode),
    /// Close the connection without a response (nginx 444).
    Close,
}

#[derive(Debug, Clone)]
pub struct PluginRuntimeConfig {
    pub cache_dir: PathBuf,
    pub hook_timeout: Duration,
    pub memory_limit: usize,
    /// Upper bound of plugin instances alive at once (the runtime's pool size).
    pub max_instances: u32,
    /// Hook calls an instance serves before a fresh one replaces it (1 = a
    /// fresh instance per call).
    pub max_calls_per_instance: u32,
}

/// Validated identifiers: non-empty, `[A-Za-z0-9_.-]+`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginName(pub String);
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamName(pub String);
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteName(pub String);

macro_rules! identifier_impls {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

identifier_impls!(PluginName, UpstreamName, RouteName);

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

#[derive(Debug, Clone)]
pub struct Route {
    pub name: RouteName,
    pub hosts: Vec<HostPattern>,
    pub path: PathMatch,
    pub upstream: Arc<Upstream>,
    pub max_body_size: u64,
    pub plugin_failure: FailurePolicy,
    /// Upstream failure status -> page file (read at load; served with that status).
    pub error_pages: BTreeMap<u16, Arc<ErrorPage>>,
    /// Which answers besides the upstream's the error pages dress.
    pub error_pages_for: ErrorPagesFor,
    /// Paths a client may not request on this route (nginx `internal`):
    /// answered 404, never sent upstream. Exact paths.
    pub internal: Vec<String>,
    pub plugins: Vec<RoutePlugin>,
    pub hook_timeout: Duration,
    pub memory_limit: usize,
    /// The route's response cache settings; `None`: the route does not cache.
    pub cache: Option<Arc<RouteCache>>,
    /// Plain-HTTP requests are redirected to `https://` (301, or 308 for
    /// methods other than GET and HEAD).
    pub https_redirect: bool,
}

/// The answers a route's `error_pages` dress (`error_pages_for`). Each
/// level dresses what the one before does, and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPagesFor {
    /// The upstream's failures (502, 504) and its answers with a page's
    /// status (nginx `proxy_intercept_errors`). Plugin answers and the
    /// proxy's own refusals keep their bodies.
    #[default]
    Upstream,
    /// Also answers without a body of their own, as nginx's `error_page`
    /// dresses its own: plugin answers with an empty body and the proxy's
    /// refusals (413, 404 of an internal path, 500 of a failed plugin).
    Bodiless,
    /// Also every plugin answer, its body replaced.
    All,
}

impl ErrorPagesFor {
    /// Whether host-made errors that are not the upstream's get the page.
    pub fn dresses_refusals(self) -> bool {
        self != ErrorPagesFor::Upstream
    }

    /// Whether a plugin's answer (with or without a body) gets the page.
    pub fn dresses_plugin_answer(self, has_body: bool) -> bool {
        match self {
            ErrorPagesFor::Upstream => false,
            ErrorPagesFor::Bodiless => !has_body,
            ErrorPagesFor::All => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub path: PathBuf,
    pub body: bytes::Bytes,
    pub content_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `example.com` (lower case, no port).
    Exact(String),
    /// `*.example.com`: stored as the suffix `.example.com`.
    WildcardSuffix(String),
    /// `*`: any host.
    Any,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// A faulting plugin fails the request (500 for request hooks).
    Closed,
    /// A faulting plugin is skipped, as if absent.
    Open,
}

/// One entry of a route's plugin chain (or of `[access_log] plugins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlugin {
    pub plugin: PluginName,
    /// The plugin's config table as JSON, handed to its `configure`.
    pub config_json: String,
    /// Overrides the route's policy for this plugin.
    pub on_failure: FailurePolicy,
}
