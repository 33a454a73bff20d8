//! Hot reload: builds a complete new [`ActiveConfig`] from the config file
//! beside the running one and swaps it in atomically, or rejects it and
//! keeps serving the old one. Sits outside the request path: requests load
//! the active bundle once at their start (see `pipeline`), so a request in
//! flight finishes on the config it started with.
//!
//! Start-up is a reload from the empty state ([`ActiveConfig::empty`]: no
//! routes, no listeners, no access log): `server::run` puts the first
//! config into service through the same [`Reloader::prepare`] and
//! [`Reloader::commit`], so start-up and reload cannot build the running
//! state differently.
//!
//! Triggers ([`triggers`]): the config file or a plugin file changing on
//! disk, `SIGHUP`, and `POST /reload` on the admin listener ([`endpoint`]).
//! Everything that can fail is done before the swap: parse and validate,
//! load the plugins, set up the upstreams, load changed `[tls]`
//! certificates and bind new listen addresses, start pushers for changed
//! `[telemetry]` sections, open a changed `[access_log]` file. Then, past
//! the point of no return, it all goes into service together. What a
//! reload cannot apply (worker threads, the plugin runtime's settings, the
//! admin address, the metric prefix and constant labels) is reported as
//! `needs_restart`.
//! Reloads run one at a time. Plugins are loaded on the one long-lived
//! [`Runtime`], so state kept there (rate-limit zones keyed by their
//! definition, kv) survives, and a plugin file whose bytes did not change is
//! taken from the compile cache instead of being compiled again.

pub mod triggers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::StatusCode;
use serde::Serialize;
use tailgate_runtime::Runtime;

use crate::access_log::{AccessLog, LogWriters};
use crate::admin::{json_response, AdminHandler};
use crate::config::{self, model::Config, ConfigError};
use crate::pipeline::{ActiveConfig, Proxy};
use crate::plugin_chain::{ChainLoadError, PluginChains};
use crate::server::{ListenerSet, PreparedListeners, ServerError};
use crate::telemetry::{Telemetry, TelemetryError, TelemetryUpdate};
use crate::upstream::UpstreamSetupError;

/// What started a reload (a metric label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// The config file or a plugin file changed on disk.
    FileChange,
    /// `SIGHUP`.
    Signal,
    /// `POST /reload` on the admin listener.
    Admin,
}

impl ReloadTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::FileChange => "file",
            ReloadTrigger::Signal => "sighup",
            ReloadTrigger::Admin => "admin",
        }
    }
}

/// Why a new config was rejected; the running config stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Parse or validation error: names file, line, column and route.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin did not load or rejected (or trapped on) its route config.
    /// Same text as `tailgate check` prints.
    #[error("{path}: loading plugins: {source}")]
    Plugins {
        path: PathBuf,
        source: ChainLoadError,
    },
    #[error("{path}: {source}")]
    Upstream {
        path: PathBuf,
        source: UpstreamSetupError,
    },
    /// A new listen address could not be bound, or changed `[tls]`
    /// certificates did not load.
    #[error("{path}: {source}")]
    Listen { path: PathBuf, source: ServerError },
    #[error("{path}: [telemetry]: {source}")]
    Telemetry {
        path: PathBuf,
        source: TelemetryError,
    },
    #[error("{path}: [access_log]: opening {}: {source}", file.display())]
    AccessLog {
        path: PathBuf,
        file: PathBuf,
        source: std::io::Error,
    },
    /// The file read had no content: a save caught between its truncation
    /// and its write (or a mistake). An empty config would drop every
    /// route and listener, so it is never loaded by a reload.
    #[error("{}: the config file is empty (being written?): not reloading until it changes again", path.display())]
    EmptyFile { path: PathBuf },
    #[error("the reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A successful reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// Counts successful reloads since start (the startup config is 0).
    pub generation: u64,
    pub routes: usize,
    pub plugins: usize,
    pub listeners_added: Vec<SocketAddr>,
    pub listeners_removed: Vec<SocketAddr>,
    /// Kept listeners whose handshake changed (PROXY protocol, new certificates).
    pub listeners_reconfigured: Vec<SocketAddr>,
    /// Sections started anew with their new settings (`tls`, `access_log`,
    /// `telemetry.remote_write`, `telemetry.loki`).
    pub restarted: Vec<&'static str>,
    /// Settings that changed but only take effect on restart.
    pub needs_restart: Vec<&'static str>,
}

/// Rebuilds and swaps the active config. One per server.
pub struct Reloader {
    path: PathBuf,
    proxy: Proxy,
    runtime: Arc<Runtime>,
    listeners: Arc<ListenerSet>,
    telemetry: Arc<Telemetry>,
    /// Writers of the access logs this reloader starts.
    log_writers: LogWriters,
    /// The config start-up put into service (compared to warn about
    /// restart-only keys); unset while the running state is the empty one.
    started_with: OnceLock<Arc<Config>>,
    /// Serialises reloads.
    serial: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Files whose change triggers a reload of `config`, read from `path`: the
/// config file and every plugin it loads.
pub fn watched_files_of(path: &Path, config: &Config) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf())
        .chain(config.plugins.values().cloned())
        .collect()
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        proxy: Proxy,
        runtime: Arc<Runtime>,
        listeners: Arc<ListenerSet>,
        telemetry: Arc<Telemetry>,
        log_writers: LogWriters,
    ) -> Self {
        Reloader {
            path,
            proxy,
            runtime,
            listeners,
            telemetry,
            log_writers,
            started_with: OnceLock::new(),
            serial: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The config file being served.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Files whose change triggers a reload: the config and every plugin.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        watched_files_of(&self.path, &self.proxy.active().config)
    }

    /// Rejected reloads since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Validate the config file and its plugins, then swap them in; on any
    /// error keep the running config. Logs and counts the outcome
    /// (`tailgate_config_reloads_total{trigger, outcome}`).
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<ReloadOutcome, ReloadError> {
        let _one_at_a_time = self.serial.lock().await;
        let result = self.build_and_swap().await;
        // The watcher sees saves mid-write; the write's own event reloads.
        let mid_save = trigger == ReloadTrigger::FileChange
            && matches!(result, Err(ReloadError::EmptyFile { .. }));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(_) if mid_save => "skipped",
            Err(_) => "error",
        };
        metrics::counter!(
            "tailgate_config_reloads_total",
            "trigger" => trigger.as_str(),
            "outcome" => outcome,
        )
        .increment(1);
        match &result {
            Ok(done) => {
                metrics::gauge!("tailgate_config_generation").set(done.generation as f64);
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation = done.generation,
                    routes = done.routes,
                    plugins = done.plugins,
                    "config reloaded"
                );
                for section in &done.restarted {
                    tracing::info!(section, "restarted with its new settings");
                }
                for key in &done.needs_restart {
                    tracing::warn!(key, "changed by the reload, but applies only on restart");
                }
            }
            Err(e) if mid_save => tracing::info!("{e}"),
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.to_string());
                }
                tracing::error!(
                    trigger = trigger.as_str(),
                    "config reload rejected, still serving the previous config: {e}"
                );
            }
        }
        result
    }

    async fn build_and_swap(&self) -> Result<ReloadOutcome, ReloadError> {
        let path = self.path.clone();
        let runtime = self.runtime.clone();
        // Parsing and compiling are blocking (and compiling is CPU-heavy).
        let (config, chains) = tokio::task::spawn_blocking(move || {
            // Checked on the text read, not beforehand: a save can truncate
            // the file between a check and the read.
            let text = config::read(&path)?;
            if text.trim().is_empty() {
                return Err(ReloadError::EmptyFile { path });
            }
            let config = config::parse(&text, &path)?;
            let chains = PluginChains::load(&config, &runtime)
                .map_err(|source| ReloadError::Plugins { path, source })?;
            Ok::<_, ReloadError>((config, chains))
        })
        .await??;
        let prepared = self.prepare(config, chains).await?;
        Ok(self.commit(prepared).await)
    }

    /// Build the running state for `config` and its `chains` beside the one
    /// in service: the active config (routes, chains, upstreams), the
    /// listeners to add or change, the telemetry pushers and the access log
    /// whose settings changed. Everything that can fail is done here;
    /// nothing is in service until [`commit`](Self::commit). Before
    /// start-up's commit the running state is the empty one
    /// ([`ActiveConfig::empty`]: no listeners, no access log), so start-up
    /// builds everything by these same steps.
    pub async fn prepare(
        &self,
        config: Config,
        chains: PluginChains,
    ) -> Result<PreparedState, ReloadError> {
        let path = || self.path.clone();
        let running = self.proxy.active();
        let started_with = self.started_with.get();
        let mut needs_restart = match started_with {
            Some(started_with) => restart_only_changes(started_with, &config),
            None => Vec::new(),
        };
        needs_restart.extend(self.telemetry.restart_only_changes(&config.telemetry));
        let routes = config.routes.len();
        let plugins = chains.loaded_plugins();
        let config = Arc::new(config);
        let mut next =
            ActiveConfig::new(config.clone(), Arc::new(chains), running.access_log.clone())
                .map_err(|source| ReloadError::Upstream {
                    path: path(),
                    source,
                })?;
        let listeners =
            self.listeners
                .prepare(&config)
                .await
                .map_err(|source| ReloadError::Listen {
                    path: path(),
                    source,
                })?;
        let mut restarted = Vec::new();
        if listeners.tls_reloaded() {
            restarted.push("tls");
        }
        let telemetry = self
            .telemetry
            .prepare(&config.telemetry)
            .map_err(|source| ReloadError::Telemetry {
                path: path(),
                source,
            })?;
        restarted.extend(telemetry.changed());
        let mut log_writer = None;
        // The empty state has no access log: start-up always starts one.
        if started_with.is_none()
            || !config.access_log.same_writer(&running.config.access_log)
            || telemetry.loki_changed()
        {
            let (log, writer) = AccessLog::start(&config.access_log, telemetry.loki_sink())
                .map_err(|source| ReloadError::AccessLog {
                    path: path(),
                    file: config.access_log.file.clone().unwrap_or_default(),
                    source,
                })?;
            next.access_log = log;
            log_writer = Some(writer);
            restarted.push("access_log");
        }
        Ok(PreparedState {
            next,
            listeners,
            telemetry,
            log_writer,
            routes,
            plugins,
            restarted,
            needs_restart,
        })
    }

    /// Put a [`prepare`](Self::prepare)d state into service: new requests
    /// use it from here on, new listeners accept, removed ones close. The
    /// first commit is start-up's (generation 0); each later one is a
    /// reload and counts.
    pub async fn commit(&self, prepared: PreparedState) -> ReloadOutcome {
        let PreparedState {
            next,
            listeners,
            telemetry,
            log_writer,
            routes,
            plugins,
            restarted,
            needs_restart,
        } = prepared;
        // The point of no return: new requests use `next` from here on.
        // The response cache is the process's: its entries stay, under the
        // new `[cache]` bounds (`Proxy::swap`).
        let first = self.started_with.get().is_none();
        self.started_with.get_or_init(|| next.config.clone());
        self.telemetry.commit(telemetry);
        if let Some(writer) = log_writer {
            self.log_writers.add(writer);
        }
        self.proxy.swap(next);
        let changes = self.listeners.commit(listeners).await;
        let generation = if first {
            self.generation.load(Ordering::Relaxed)
        } else {
            self.generation.fetch_add(1, Ordering::Relaxed) + 1
        };
        ReloadOutcome {
            generation,
            routes,
            plugins,
            listeners_added: changes.added,
            listeners_removed: changes.removed,
            listeners_reconfigured: changes.reconfigured,
            restarted,
            needs_restart,
        }
    }
}

/// A running state built by [`Reloader::prepare`], not yet in service
/// (dropping it abandons it: its new listeners and pushers close).
pub struct PreparedState {
    next: ActiveConfig,
    listeners: PreparedListeners,
    telemetry: TelemetryUpdate,
    log_writer: Option<tokio::task::JoinHandle<()>>,
    routes: usize,
    plugins: usize,
    restarted: Vec<&'static str>,
    needs_restart: Vec<&'static str>,
}

/// Keys a reload cannot apply to the running process.
fn restart_only_changes(running: &Config, next: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if running.server.workers != next.server.workers {
        keys.push("server.workers");
    }
    if running.runtime.cache_dir != next.runtime.cache_dir {
        keys.push("plugin_runtime.cache_dir");
    }
    if running.runtime.max_instances != next.runtime.max_instances {
        keys.push("plugin_runtime.max_instances");
    }
    if running.runtime.max_calls_per_instance != next.runtime.max_calls_per_instance {
        keys.push("plugin_runtime.max_calls_per_instance");
    }
    if running.runtime.output_lines_per_second != next.runtime.output_lines_per_second {
        keys.push("plugin_runtime.output_lines_per_second");
    }
    if running.admin.listen != next.admin.listen {
        keys.push("admin.listen");
    }
    if running.state.dir != next.state.dir {
        keys.push("state.dir");
    }
    if running.state.redis != next.state.redis {
        keys.push("state.backend");
    }
    let (was, is) = (&running.state.limits, &next.state.limits);
    let caps = [
        ("state.max_bans", was.max_bans != is.max_bans),
        ("state.max_counters", was.max_counters != is.max_counters),
        (
            "state.max_kv_entries",
            was.max_kv_entries != is.max_kv_entries,
        ),
        (
            "state.max_kv_value_size",
            was.max_kv_value_bytes != is.max_kv_value_bytes,
        ),
        ("state.max_windows", was.max_windows != is.max_windows),
        (
            "state.max_keys_per_zone",
            was.max_keys_per_zone != is.max_keys_per_zone,
        ),
        ("state.max_key_size", was.max_key_bytes != is.max_key_bytes),
    ];
    keys.extend(
        caps.into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(key, _)| key),
    );
    keys
}

/// `POST /reload`: reload now. 200 with the outcome as JSON, or 422 with
/// `{"status":"error","error":...}` when the new config was rejected.
pub fn endpoint(reloader: Arc<Reloader>) -> AdminHandler {
    crate::admin::handler(move |_req| {
        let reloader = reloader.clone();
        async move {
            match reloader.reload(ReloadTrigger::Admin).await {
                Ok(outcome) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "status": "ok",
                        "outcome": outcome,
                        "failed_reloads": reloader.failures(),
                    }),
                ),
                Err(e) => json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({
                        "status": "error",
                        "error": e.to_string(),
                        "failed_reloads": reloader.failures(),
                    }),
                ),
            }
        }
    })
}
