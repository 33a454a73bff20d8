//! Builds the validated `[server]` (listeners, client-IP trust, unknown-host
//! answer), `[plugin_runtime]` and `[plugins]` sections from the raw file
//! structs. Part of config loading, before any request is served.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Context, Source};
use super::model::{ConnectionLimits, PluginName, PluginRuntimeConfig, ServerConfig, UnknownHost};
use super::raw::{RawSize, SpannedKey};
use super::resolve_path;
use super::values::{self, parse_cidr, parse_duration};

pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
/// Fly's `kill_timeout` (fly/fly.toml) must stay longer than this.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// nginx `client_header_timeout`.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx `keepalive_timeout`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// nginx closes idle HTTP/2 connections after `keepalive_timeout` too.
pub const DEFAULT_HTTP2_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
pub const DEFAULT_HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// hyper's default PING acknowledgement timeout.
pub const DEFAULT_HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// nginx `send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_CACHE_DIR: &str = ".tailgate/cache";
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(50);
pub const DEFAULT_MEMORY_LIMIT: usize = 16 << 20;
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
pub const DEFAULT_MAX_CALLS_PER_INSTANCE: u32 = tailgate_runtime::DEFAULT_MAX_CALLS_PER_INSTANCE;
/// Consecutive faults that trip a plugin (Envoy's outlier detection ejects
/// a host after 5 consecutive 5xx).
pub const DEFAULT_TRIP_AFTER_FAULTS: u32 = 5;
pub const DEFAULT_TRIP_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_TRIP_COOLDOWN: Duration = Duration::from_secs(10);

// === raw ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub workers: Option<Spanned<usize>>,
    pub client_ip_header: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub unknown_host: Option<RawUnknownHost>,
    pub drain_timeout: Option<Spanned<String>>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub client_header_timeout: Option<Spanned<String>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    pub http2_idle_timeout: Option<Spanned<String>>,
    pub http2_ping_interval: Option<Spanned<String>>,
    pub http2_ping_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnknownHost {
    pub action: Spanned<RawUnknownHostAction>,
    pub status: Option<Spanned<u16>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawUnknownHostAction {
    Status,
    Close,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginRuntime {
    pub cache_dir: Option<Spanned<String>>,
    pub hook_timeout: Option<Spanned<String>>,
    pub memory_limit: Option<Spanned<RawSize>>,
    pub max_instances: Option<Spanned<u32>>,
    pub max_calls_per_instance: Option<Spanned<u32>>,
    pub trip_after_faults: Option<Spanned<u32>>,
    pub trip_window: Option<Spanned<String>>,
    pub trip_cooldown: Option<Spanned<String>>,
    pub max_concurrent_calls: Option<Spanned<u32>>,
    pub output_lines_per_second: Option<Spanned<u32>>,
}

/// A `[plugins]` entry: `name = "file.wasm"`, or a table
/// `[plugins.name]` with `path` and the plugin-level `config`. Not spanned
/// (it may be a table made by dotted keys): errors about it are placed at
/// the plugin's name.
#[derive(Debug)]
pub enum RawPlugin {
    File(String),
    Table {
        path: String,
        config: Option<toml::Table>,
    },
}

impl<'de> Deserialize<'de> for RawPlugin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de;

        struct PluginVisitor;

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PluginTable {
            path: String,
            config: Option<toml::Table>,
        }

        impl<'de> de::Visitor<'de> for PluginVisitor {
            type Value = RawPlugin;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a plugin's wasm file, or a table with `path` and `config`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPlugin, E> {
                Ok(RawPlugin::File(v.to_owned()))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawPlugin, A::Error> {
                let table = PluginTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawPlugin::Table {
                    path: table.path,
                    config: table.config,
                })
            }
        }

        deserializer.deserialize_any(PluginVisitor)
    }
}

// === build ===

pub(super) fn build_server(src: &Source<'_>, raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let listen = match raw.listen {
        None => vec![DEFAULT_LISTEN],
        Some(list) => build_listen(src, list)?,
    };
    let workers = match raw.workers {
        None => 0,
        Some(w) if *w.get_ref() > values::MAX_WORKERS => {
            return Err(src.error(w.span(), None, ConfigErrorKind::Workers(*w.get_ref())));
        }
        Some(w) => w.into_inner(),
    };
    let client_ip_header = raw
        .client_ip_header
        .map(|h| {
            http::HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
                src.error(
                    h.span(),
                    None,
                    ConfigErrorKind::HeaderName(h.get_ref().clone()),
                )
            })
        })
        .transpose()?;
    let trusted_proxies = raw
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .map(|cidr| src.at(cidr.span(), None, parse_cidr(cidr.get_ref())))
        .collect::<Result<Vec<_>, _>>()?;
    let unknown_host = match raw.unknown_host {
        None => UnknownHost::Status(http::StatusCode::NOT_FOUND),
        Some(spec) => build_unknown_host(src, spec)?,
    };
    let drain_timeout = duration_or(src, raw.drain_timeout.as_ref(), DEFAULT_DRAIN_TIMEOUT)?;
    let connections = ConnectionLimits {
        client_header_timeout: duration_or(
            src,
            raw.client_header_timeout.as_ref(),
            DEFAULT_CLIENT_HEADER_TIMEOUT,
        )?,
        keepalive_timeout: duration_or(
            src,
            raw.keepalive_timeout.as_ref(),
            DEFAULT_KEEPALIVE_TIMEOUT,
        )?,
        http2_idle_timeout: duration_or(
            src,
            raw.http2_idle_timeout.as_ref(),
            DEFAULT_HTTP2_IDLE_TIMEOUT,
        )?,
        http2_ping_interval: duration_or(
            src,
            raw.http2_ping_interval.as_ref(),
            DEFAULT_HTTP2_PING_INTERVAL,
        )?,
        http2_ping_timeout: duration_or(
            src,
            raw.http2_ping_timeout.as_ref(),
            DEFAULT_HTTP2_PING_TIMEOUT,
        )?,
        send_timeout: duration_or(src, raw.send_timeout.as_ref(), DEFAULT_SEND_TIMEOUT)?,
        max_connections: match raw.max_connections {
            None => None,
            Some(n) if *n.get_ref() >= 1 => Some(n.into_inner()),
            Some(n) => return Err(src.error(n.span(), None, ConfigErrorKind::MaxConnections)),
        },
    };
    Ok(ServerConfig {
        listen,
        drain_timeout,
        workers,
        client_ip_header,
        trusted_proxies,
        unknown_host,
        proxy_protocol: raw.proxy_protocol.is_some_and(Spanned::into_inner),
        connections,
    })
}

/// A duration key's value, or `default` when the key is absent.
fn duration_or(
    src: &Source<'_>,
    raw: Option<&Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(t) => src.at(t.span(), None, parse_duration(t.get_ref())),
    }
}

pub(super) fn build_listen(
    src: &Source<'_>,
    list: Spanned<Vec<Spanned<String>>>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    if list.get_ref().is_empty() {
        return Err(src.error(list.span(), None, ConfigErrorKind::ListenEmpty));
    }
    let mut seen = BTreeSet::new();
    let mut addrs = Vec::new();
    for item in list.get_ref() {
        let addr: SocketAddr = item.get_ref().parse().map_err(|_| {
            src.error(
                item.span(),
                None,
                ConfigErrorKind::ListenAddress(item.get_ref().clone()),
            )
        })?;
        // Port 0 (pick a free port) may repeat; a fixed address may not.
        if addr.port() != 0 && !seen.insert(addr) {
            return Err(src.error(
                item.span(),
                None,
                ConfigErrorKind::ListenDuplicate(addr.to_string()),
            ));
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

fn build_unknown_host(src: &Source<'_>, spec: RawUnknownHost) -> Result<UnknownHost, ConfigError> {
    let span = spec.action.span();
    match (*spec.action.get_ref(), spec.status) {
        (RawUnknownHostAction::Close, None) => Ok(UnknownHost::Close),
        (RawUnknownHostAction::Close, Some(status)) => Err(src.error(
            status.span(),
            None,
            ConfigErrorKind::UnknownHost("`status` applies only to action = \"status\""),
        )),
        (RawUnknownHostAction::Status, None) => Err(src.error(
            span,
            None,
            ConfigErrorKind::UnknownHost("action = \"status\" needs a `status`"),
        )),
        (RawUnknownHostAction::Status, Some(status)) => {
            let code = *status.get_ref();
            match http::StatusCode::from_u16(code) {
                Ok(code) if (400..=599).contains(&code.as_u16()) => Ok(UnknownHost::Status(code)),
                _ => Err(src.error(
                    status.span(),
                    None,
                    ConfigErrorKind::UnknownHostStatus(code),
                )),
            }
        }
    }
}

pub(super) fn build_plugin_runtime(
    src: &Source<'_>,
    base_dir: &Path,
    raw: RawPluginRuntime,
) -> Result<PluginRuntimeConfig, ConfigError> {
    let cache_dir =
        super::folder_key(src, base_dir, raw.cache_dir, "cache_dir", DEFAULT_CACHE_DIR)?;
    let hook_timeout = match raw.hook_timeout {
        None => DEFAULT_HOOK_TIMEOUT,
        Some(t) => src.at(t.span(), None, values::hook_timeout(t.get_ref()))?,
    };
    let memory_limit = match raw.memory_limit {
        None => DEFAULT_MEMORY_LIMIT,
        Some(m) => memory_limit(src, &m, None)?,
    };
    let max_instances = match raw.max_instances {
        None => DEFAULT_MAX_INSTANCES,
        Some(n) if (1..=values::MAX_INSTANCES).contains(n.get_ref()) => n.into_inner(),
        Some(n) => return Err(src.error(n.span(), None, ConfigErrorKind::MaxInstances)),
    };
    let max_calls_per_instance = match raw.max_calls_per_instance {
        None => DEFAULT_MAX_CALLS_PER_INSTANCE,
        Some(n) if *n.get_ref() >= 1 => n.into_inner(),
        Some(n) => return Err(src.error(n.span(), None, ConfigErrorKind::MaxCallsPerInstance)),
    };
    let duration = |raw: Option<Spanned<String>>, default| match raw {
        None => Ok(default),
        Some(t) => src.at(t.span(), None, parse_duration(t.get_ref())),
    };
    let call_guard = tailgate_runtime::CallGuard {
        trip_after_faults: raw
            .trip_after_faults
            .map_or(DEFAULT_TRIP_AFTER_FAULTS, Spanned::into_inner),
        fault_window: duration(raw.trip_window, DEFAULT_TRIP_WINDOW)?,
        cooldown: duration(raw.trip_cooldown, DEFAULT_TRIP_COOLDOWN)?,
        max_concurrent_calls: raw.max_concurrent_calls.map_or(0, Spanned::into_inner),
    };
    let output_lines_per_second = match raw.output_lines_per_second {
        None => tailgate_runtime::DEFAULT_OUTPUT_LINES_PER_SECOND,
        Some(n) if *n.get_ref() >= 1 => n.into_inner(),
        Some(n) => {
            return Err(src.error(
                n.span(),
                None,
                ConfigErrorKind::AtLeastOne("output_lines_per_second"),
            ))
        }
    };
    Ok(PluginRuntimeConfig {
        cache_dir,
        hook_timeout,
        memory_limit,
        max_instances,
        max_calls_per_instance,
        call_guard,
        output_lines_per_second,
    })
}

/// A plugin instance's memory cap: a size between 64 KiB and the runtime's ceiling.
pub(super) fn memory_limit(
    src: &Source<'_>,
    raw: &Spanned<RawSize>,
    context: Option<&Context>,
) -> Result<usize, ConfigError> {
    let bytes = src.at(raw.span(), context, raw.get_ref().bytes())?;
    if !(values::MIN_MEMORY_LIMIT..=values::MAX_MEMORY_LIMIT).contains(&bytes) {
        return Err(src.error(
            raw.span(),
            context,
            ConfigErrorKind::MemoryLimit {
                value: raw.get_ref().to_string(),
            },
        ));
    }
    usize::try_from(bytes).map_err(|_| {
        src.error(
            raw.span(),
            context,
            ConfigErrorKind::MemoryLimit {
                value: raw.get_ref().to_string(),
            },
        )
    })
}

pub(super) fn build_plugins(
    src: &Source<'_>,
    base_dir: &Path,
    raw: BTreeMap<SpannedKey, RawPlugin>,
) -> Result<Plugins, ConfigError> {
    let mut plugins = Plugins::default();
    for (name, entry) in raw {
        let span = name.span();
        let name = PluginName(src.at(
            span.clone(),
            None,
            values::check_identifier("plugin name", name.get_ref()),
        )?);
        let (file, config) = match entry {
            RawPlugin::File(file) => (file, None),
            RawPlugin::Table { path, config } => (path, config),
        };
        if file.is_empty() {
            return Err(src.error(span, None, ConfigErrorKind::EmptyPath("a plugin's file")));
        }
        if let Some(config) = config {
            plugins.configs.insert(name.clone(), config);
        }
        plugins.files.insert(name, resolve_path(base_dir, &file));
    }
    Ok(plugins)
}

/// `[plugins]`, built: each plugin's wasm file and, for a plugin given as a
/// table, the plugin-level `config` every route's (and `[access_log]`'s)
/// config for it is laid over.
#[derive(Debug, Default)]
pub(super) struct Plugins {
    pub files: BTreeMap<PluginName, PathBuf>,
    pub configs: BTreeMap<PluginName, toml::Table>,
}
