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
