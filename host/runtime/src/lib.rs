//! Tailgate's plugin runtime: loads WebAssembly plugin components and runs
//! their hooks under a time budget and a memory cap. Sits between the proxy
//! pipeline (`tailgate::pipeline`) and the guests; knows nothing of HTTP I/O.
//!
//! Flow: [`Runtime::load`] compiles (or loads from the on-disk cache) a plugin
//! once; [`Runtime::configure`] validates one route's config for it and gives
//! a [`ConfiguredPlugin`], whose hook methods the pipeline calls per request.
//!
//! Hook calls are async: the guest runs on a fiber that yields its worker
//! thread to other tasks at every epoch tick, so a hook that runs long does
//! not stall other requests. A hook that runs past [`Limits::hook_timeout`]
//! is stopped at the next tick, one that grows its memory past
//! [`Limits::memory_bytes`] is refused the memory. Either way the call
//! returns a [`PluginFault`] and the instance is thrown away; the next call
//! gets a fresh one. A [`CallGuard`] trips a plugin that keeps faulting and
//! bounds its calls at once. See `docs/plugin-runtime.md`.

pub mod address_text;
mod bindings;
mod call_guard;
mod chained;
mod compile_cache;
mod configured;
mod engine;
mod error;
mod field_filter;
mod fixed_edits;
mod guest_output;
mod header_filter;
mod hook;
mod hook_gate;
mod host_imports;
mod host_state;
mod instance;
mod instance_pool;
mod metric_handles;
mod metrics;
mod observer;
pub mod plugin_config;
mod plugin_log;
mod record_text;
pub mod request_path;
mod state;
mod state_imports;
mod wire_edits;
mod wire_values;

pub use bindings::types::{
    CacheStatus, FixedEdit, FixedEdits, Header, HeaderEdit, HeaderFilter, HeaderOp, HookGate,
    HookSet, ImmediateResponse, IpAddress, LogFieldSet, LogGate, LogLevel, LogLine, LogRecord,
    LogVerdict, Method, PluginInfo, Protocol, RateDecision, RateLimit, RequestAction,
    RequestChecks, RequestEdits, RequestFieldSet, RequestHead, ResponseEdits, ResponseHead, Scheme,
    StateScope, ValuePart, Var,
};
pub use call_guard::CallGuard;
pub use chained::{ChainedPlugin, HookCall, HookFault, LogBatchCall, PluginHooks, RequestStep};
pub use compile_cache::CacheOutcome;
pub use configured::{block_on, MAX_LOG_BATCH};
pub use engine::{
    check_hook_budget, Allocator, BudgetBelowTick, MemoryReservation, EPOCH_TICK, LONG_CALL_TICK,
    MAX_MEMORY_BYTES,
};
pub use error::{ConfigureError, LoadError, PluginFault, RuntimeError};
pub use guest_output::DEFAULT_OUTPUT_LINES_PER_SECOND;
pub use hook::Hook;
pub use observer::{OutputSource, PluginObserver, PluginOutput};
pub use state::backend::{
    BackendError, BackendHealth, Consistency, RedisConfig, RedisDial, RedisDialer, RedisIo,
};
pub use state::bans::persist::{StateFileError, BANS_FILE};
pub use state::bans::{BanEntry, BanList, BanOutcome, BanRequest, OFFENCE_RETENTION_MS};
pub use state::clock::{Clock, ManualClock, SystemClock};
pub use state::view::{
    BanView, BucketState, CounterEntry, KvEntry, PluginStateView, RateLimitZoneState, WindowEntry,
};
pub use state::StateLimits;
pub use wire_edits::{apply_to_map, check_immediate_response, InvalidOutput, WireEdit};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wasmtime::Engine;

use bindings::PluginPre;
use call_guard::{GuardState, SlowCalls};
use compile_cache::CompileCache;
use configured::report_fault;
use engine::{EpochClock, EpochTicker};
use guest_output::OutputRateLimit;
use host_state::{GuestIdentity, HostState};
use instance::{InstanceRecipe, LiveInstances, PluginInstance};
use instance_pool::InstancePool;
use metrics::CallMetrics;
use state::SharedState;

/// Hook calls one instance serves before it is replaced, by default. Chosen
/// from `benches/instances.rs` (see `docs/plugin-runtime.md`): a reused
/// instance costs a fraction of a fresh one per call.
pub const DEFAULT_MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled plugins are cached (keyed by wasm hash + engine hash).
    pub cache_dir: PathBuf,
    /// Upper bound of instances alive at once across all plugins.
    pub max_instances: u32,
    /// Hook calls an instance serves before it is replaced by a fresh one;
    /// 1 = a fresh instance per call (full isolation between requests, at
    /// the cost measured in `docs/plugin-runtime.md`).
    pub max_calls_per_instance: u32,
    /// Lines of guest stdout/stderr logged per (plugin, route) and second;
    /// past it they are counted and summed up in one line.
    pub output_lines_per_second: u32,
    /// Where state that outlives the process is kept (the ban list's
    /// `bans.json`); `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
    /// The shared state backend (`[state] backend = "redis"`); `None`
    /// keeps all state on this machine.
    pub redis: Option<RedisConfig>,
}

impl RuntimeConfig {
    /// Defaults: 1000 instances, [`DEFAULT_MAX_CALLS_PER_INSTANCE`],
    /// [`DEFAULT_OUTPUT_LINES_PER_SECOND`], no state directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: cache_dir.into(),
            max_instances: 1000,
            max_calls_per_instance: DEFAULT_MAX_CALLS_PER_INSTANCE,
            output_lines_per_second: DEFAULT_OUTPUT_LINES_PER_SECOND,
            state_dir: None,
            redis: None,
        }
    }
}

/// What a runtime is built around besides its [`RuntimeConfig`]: the clock,
/// the caps on plugin state, and an optional observer of plugin output.
/// The proxy uses the defaults; tests and the plugin harness change them.
#[derive(Clone)]
pub struct RuntimeOptions {
    pub clock: Arc<dyn Clock>,
    pub state_limits: StateLimits,
    pub observer: Option<Arc<dyn PluginObserver>>,
    /// How connections to the shared backend are opened (the proxy's
    /// tailnet connector); `None` dials `RuntimeConfig::redis`'s url
    /// directly.
    pub redis_dialer: Option<Arc<dyn RedisDialer>>,
}

impl Default for RuntimeOptions {
    /// The system clock, default state caps, no observer, direct dialing.
    fn default() -> Self {
        RuntimeOptions {
            clock: Arc::new(SystemClock),
            state_limits: StateLimits::default(),
            observer: None,
            redis_dialer: None,
        }
    }
}

/// Per (plugin, route) limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time budget of one hook call.
    pub hook_timeout: Duration,
    /// Linear-memory cap of one instance, bytes (at most [`MAX_MEMORY_BYTES`]).
    pub memory_bytes: usize,
}

/// The one wasmtime engine, its epoch ticker, and the shared state plugins
/// reach through the `host` imports. Long-lived: config reloads configure
/// new plugins on the same runtime, so plugin state (rate limits, counters,
/// kv) survives them.
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    allocator: Allocator,
    linker: Linker<HostState>,
    cache: CompileCache,
    shared: Arc<SharedState>,
    live: Arc<LiveInstances>,
    epoch: EpochClock,
    config: RuntimeConfig,
    /// Dropped last of the runtime's parts: stops the epoch thread once the
    /// runtime and every plugin loaded from it are gone. Started by the
    /// first [`Runtime::load`].
    ticker: EpochTicker,
}

/// A compiled plugin component, ready to be configured for routes.
pub struct LoadedPlugin {
    name: String,
    digest: String,
    cache_outcome: CacheOutcome,
    pre: PluginPre<HostState>,
    runtime: Arc<RuntimeInner>,
}

/// A plugin configured for one route: the unit the pipeline calls. Safe to
/// call from many threads and tasks at once; each call takes an idle
/// instance (or makes one) and gives it back afterwards. Its calls are
/// guarded by a [`CallGuard`] ([`ConfiguredPlugin::with_call_guard`]).
///
/// Hooks the plugin did not declare in `configure` are not called: their
/// methods return the neutral value at once (`Continue` with no edits, no
/// response edits, and `None` for `on_log`). Since `None` from `on_log` also
/// means "drop the line", the pipeline checks [`ConfiguredPlugin::implements`]
/// (or [`ConfiguredPlugin::hooks`]) before calling a hook.
pub struct ConfiguredPlugin {
    recipe: InstanceRecipe,
    /// What `configure` declared: hooks and the header fields they read.
    info: PluginInfo,
    pool: InstancePool,
    metrics: CallMetrics,
    guard: GuardState,
    max_calls_per_instance: u32,
    _runtime: Arc<RuntimeInner>,
}

impl Runtime {
    /// A runtime on the system clock.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A runtime whose host imports (`now-ms`, rate limits, TTLs) read
    /// `clock`; a [`ManualClock`] lets tests move time.
    pub fn with_clock(config: RuntimeConfig, clock: Arc<dyn Clock>) -> Result<Self, RuntimeError> {
        Self::with_options(
            config,
            RuntimeOptions {
                clock,
                ..RuntimeOptions::default()
            },
        )
    }

    /// A runtime with its clock, state caps and observer chosen.
    pub fn with_options(
        config: RuntimeConfig,
        options: RuntimeOptions,
    ) -> Result<Self, RuntimeError> {
        let RuntimeOptions {
            clock,
            state_limits,
            observer,
            redis_dialer,
        } = options;
        let (engine, allocator) = engine::build_engine(config.max_instances)?;
        let mut linker = Linker::new(&engine);
        instance::link(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("linking host imports: {e:#}")))?;
        let epoch = EpochClock::default();
        let ticker = EpochTicker::new(engine.clone(), epoch.clone());
        let cache = CompileCache::new(config.cache_dir.clone(), &engine);
        let bans = match &config.state_dir {
            Some(dir) => BanList::open(dir, state_limits.max_bans, clock.now_ms())?,
            None => BanList::new(state_limits.max_bans),
        };
        let redis = match &config.redis {
            Some(redis) => Some(state::backend::RedisState::new(redis, redis_dialer)?),
            None => None,
        };
        let shared = Arc::new(
            SharedState::with_bans(clock, state_limits, bans)
                .with_observer(observer)
                .with_redis(redis),
        );
        shared.start_sync();
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                allocator,
                linker,
                cache,
                shared,
                live: Arc::new(LiveInstances::new(config.max_instances.max(1))),
                epoch,
                config,
                ticker,
            }),
        })
    }

    /// Compile `wasm` (or load it from the cache) as plugin `name`.
    pub fn load(&self, name: &str, wasm: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
        let inner = &self.inner;
        let invalid = |reason: String| LoadError::Invalid {
            plugin: name.to_string(),
            path: wasm.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(wasm).map_err(|source| LoadError::Read {
            plugin: name.to_string(),
            path: wasm.to_path_buf(),
            source,
        })?;
        check_component_header(&bytes).map_err(|reason| invalid(reason.to_string()))?;
        // Before any instance of this plugin can run.
        inner
            .ticker
            .ensure_started()
            .map_err(|source| LoadError::Runtime {
                plugin: name.to_string(),
                source,
            })?;
        let digest = compile_cache::sha256_hex(&bytes);
        let (component, cache_outcome) = inner
            .cache
            .load_or_compile(&inner.engine, name, &bytes, &digest)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let pre = inner
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| {
                invalid(format!(
                    "it does not fit the tailgate:plugin@0.11.0 `plugin` world: {e:#}"
                ))
            })?;
        Ok(Arc::new(LoadedPlugin {
            name: name.to_string(),
            digest,
            cache_outcome,
            pre,
            runtime: inner.clone(),
        }))
    }

    /// Validate `config_json` for `route` by calling the plugin's `configure`.
    /// Blocking: call it outside async tasks (at start-up, or from a
    /// blocking thread on reload).
    pub fn configure(
        &self,
        plugin: &Arc<LoadedPlugin>,
        route: &str,
        config_json: &str,
        limits: Limits,
    ) -> Result<ConfiguredPlugin, ConfigureError> {
        let inner = &self.inner;
        let mut limits = limits;
        if limits.memory_bytes > MAX_MEMORY_BYTES {
            tracing::warn!(
                plugin = %plugin.name,
                route,
                asked = limits.memory_bytes,
                max = MAX_MEMORY_BYTES,
                "plugin memory limit is above the runtime's maximum; using the maximum"
            );
            limits.memory_bytes = MAX_MEMORY_BYTES;
        }
        let guest = GuestIdentity {
            plugin: plugin.name.as_str().into(),
            route: route.into(),
        };
        let recipe = InstanceRecipe {
            pre: plugin.pre.clone(),
            guest,
            config_json: config_json.to_string(),
            limits,
            configure_budget: instance::configure_budget(&limits),
            shared: inner.shared.clone(),
            live: inner.live.clone(),
            epoch: inner.epoch.clone(),
            output_limit: Arc::new(OutputRateLimit::new(inner.config.output_lines_per_second)),
            slow_calls: SlowCalls::default(),
        };
        let metrics = CallMetrics::new(&plugin.name, route);
        let started = Instant::now();
        let made = block_on(PluginInstance::new(&recipe));
        metrics.call(Hook::Configure, started.elapsed());
        let (instance, info) = match made {
            Ok((instance, Ok(info))) => {
                let usable = match instance.unusable_checks(&info) {
                    Some(message) => Err(message),
                    None => hook_gate::normalised(info),
                };
                match usable {
                    Ok(info) => (instance, header_filter::normalised(info)),
                    Err(message) => {
                        return Err(ConfigureError::Rejected {
                            route: route.to_string(),
                            plugin: plugin.name.clone(),
                            message,
                        })
                    }
                }
            }
            Ok((_, Err(message))) => {
                return Err(ConfigureError::Rejected {
                    route: route.to_string(),
                    plugin: plugin.name.clone(),
                    message,
                })
            }
            Err(fault) => {
                report_fault(&metrics, &recipe.guest, Hook::Configure, &fault);
                return Err(ConfigureError::Fault {
                    route: route.to_string(),
                    plugin: plugin.name.clone(),
                    fault,
                });
            }
        };
        let guard = GuardState::new(
            CallGuard::OFF,
            inner.shared.clock.clone(),
            recipe.guest.clone(),
            recipe.slow_calls.clone(),
        );
        let configured = ConfiguredPlugin {
            recipe,
            info,
            pool: InstancePool::new(InstancePool::default_capacity()),
            metrics,
            guard,
            max_calls_per_instance: inner.config.max_calls_per_instance.max(1),
            _runtime: inner.clone(),
        };
        configured.pool.give_back(instance);
        Ok(configured)
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> Allocator {
        self.inner.allocator
    }

    /// The clock the host imports read.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.shared.clock.clone()
    }

    /// The shared state of plugin `name` (what its `host` imports see), to
    /// inspect or seed it. Created empty if the plugin has none yet.
    pub fn plugin_state(&self, name: &str) -> PluginStateView {
        PluginStateView::new(self.inner.shared.clone(), name)
    }

    /// The runtime's ban list (every jail), on its clock.
    pub fn bans(&self) -> BanView {
        BanView::new(self.inner.shared.clone())
    }

    /// The shared state backend's health (`/healthz`), if there is one.
    pub fn state_backend(&self) -> Option<BackendHealth> {
        self.inner.shared.redis.as_ref().map(|r| r.health())
    }

    /// The caps on each plugin's state.
    pub fn state_limits(&self) -> StateLimits {
        self.inner.shared.limits
    }

    /// Whether the epoch ticker thread runs (from the first plugin load on).
    pub fn epoch_ticker_started(&self) -> bool {
        self.inner.ticker.is_started()
    }

    /// Plugin instances alive right now (idle in pools or in a call).
    pub fn live_instances(&self) -> u32 {
        self.inner.live.count()
    }
}

/// A component starts with `\0asm` and layer 1; a core module (layer 0) is
/// the usual mistake (built for wasm32-wasip1 / unknown without adapting).
fn check_component_header(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly file");
    }
    if bytes[6..8] == [0, 0] {
        return Err(
            "a core WebAssembly module, not a component (build the plugin for wasm32-wasip2)",
        );
    }
    Ok(())
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// SHA-256 of the wasm file, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// Whether this load came from the compiled-plugin cache or compiled.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache_outcome
    }
    /// True when nothing was compiled: the plugin came from the cache.
    pub fn was_cached(&self) -> bool {
        self.cache_outcome == CacheOutcome::Hit
    }
    /// The cache file of this plugin's compiled form.
    pub fn cache_path(&self) -> PathBuf {
        self.runtime.cache.path_for(&self.digest)
    }
}
