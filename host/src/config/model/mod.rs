//! The validated configuration: what `config.toml` means once parsed and
//! checked. Built by `config::load` from the raw file structs; read by the
//! router, the pipeline and the upstream layer. Every field here is valid.
//! [`Config`] and the ids are here; each section's types are in
//! `model/<section>.rs`, re-exported here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod route;
pub mod server;
pub mod state;
pub mod tailnet;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use self::access_log::AccessLogConfig;
pub use self::admin::AdminConfig;
pub use self::cache::{CacheCondition, CacheConfig, IgnoredHeaders, RouteCache, UseStale};
pub use self::route::{
    ErrorPage, ErrorPagesFor, FailurePolicy, HostPattern, PathMatch, Route, RoutePlugin,
};
pub use self::server::{ConnectionLimits, PluginRuntimeConfig, ServerConfig, UnknownHost};
pub use self::state::StateConfig;
pub use self::tailnet::TailnetConfig;
pub use self::telemetry::TelemetryConfig;
pub use self::tls::TlsConfig;
pub use self::upstream::{
    ActiveHealthCheck, Endpoint, HealthPolicy, HostHeader, HttpUpstream, Upstream, UpstreamKind,
};

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
    /// `[state]`: the state directory and the caps on plugin host state.
    pub state: StateConfig,
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
