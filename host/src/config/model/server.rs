//! The validated `[server]` (listeners, client-IP trust, the unknown-host
//! answer, the drain) and `[plugin_runtime]` sections. Built by
//! `config::server` at load; read by the server, the forwarding rules and
//! the plugin runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

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
    /// Timeouts of every connection state and the process's connection limit.
    pub connections: ConnectionLimits,
}

/// How long a client connection may stay in each state, and how many may
/// be open at once (nginx's `client_header_timeout`, `keepalive_timeout`,
/// `send_timeout` and `worker_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From accept to the first request, and from a request head's first
    /// byte to its end: a silent client, a partial HTTP/2 preface or a
    /// partial request head is closed after this.
    pub client_header_timeout: Duration,
    /// An HTTP/1 connection with no request in flight is closed after this.
    pub keepalive_timeout: Duration,
    /// An HTTP/2 connection with no stream open is closed after this.
    pub http2_idle_timeout: Duration,
    /// HTTP/2 PING interval while streams are open or the connection idles.
    pub http2_ping_interval: Duration,
    /// An unanswered HTTP/2 PING closes the connection after this.
    pub http2_ping_timeout: Duration,
    /// A client that takes nothing of what is written to it for this long
    /// is closed.
    pub send_timeout: Duration,
    /// Open client connections at most; `None`: derived from the file
    /// descriptor limit at start (`server::connection_table`).
    pub max_connections: Option<usize>,
}

impl Default for ConnectionLimits {
    /// nginx's defaults; the limit derived from the file descriptor limit.
    fn default() -> Self {
        use crate::config::server as defaults;
        ConnectionLimits {
            client_header_timeout: defaults::DEFAULT_CLIENT_HEADER_TIMEOUT,
            keepalive_timeout: defaults::DEFAULT_KEEPALIVE_TIMEOUT,
            http2_idle_timeout: defaults::DEFAULT_HTTP2_IDLE_TIMEOUT,
            http2_ping_interval: defaults::DEFAULT_HTTP2_PING_INTERVAL,
            http2_ping_timeout: defaults::DEFAULT_HTTP2_PING_TIMEOUT,
            send_timeout: defaults::DEFAULT_SEND_TIMEOUT,
            max_connections: None,
        }
    }
}

impl ServerConfig {
    /// The tokio worker threads `workers` stands for: `0` is one per core
    /// the process may use (cgroup quotas count).
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
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
    /// The breaker and the bound of slow calls at once of every configured
    /// plugin; `max_concurrent_calls` 0 is "auto" ([`PluginRuntimeConfig::call_guard`]).
    pub call_guard: tailgate_runtime::CallGuard,
    /// Guest stdout/stderr lines logged per (plugin, route) and second.
    pub output_lines_per_second: u32,
}

impl PluginRuntimeConfig {
    /// The call guard of each configured plugin on a proxy with `workers`
    /// worker threads: the configured one, its "auto" bound of slow calls
    /// at once resolved to two per worker plus two, which a plugin whose
    /// calls return within a tick never reaches.
    pub fn call_guard(&self, workers: usize) -> tailgate_runtime::CallGuard {
        let mut guard = self.call_guard;
        if guard.max_concurrent_calls == 0 {
            let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX / 4);
            guard.max_concurrent_calls = workers.saturating_mul(2).saturating_add(2);
        }
        guard
    }
}
