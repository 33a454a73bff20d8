//! [`Harness`]: one plugin runtime, as the proxy builds it, on a fake clock,
//! with the plugin's logs and metrics captured. Load a built plugin,
//! configure it like a route would, then drive its hooks through the
//! [`TestPlugin`] it gives.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tailgate_runtime::{
    plugin_config, ChainedPlugin, LoadedPlugin, ManualClock, PluginStateView, Runtime,
    RuntimeConfig, RuntimeOptions, StateLimits,
};

use crate::error::HarnessError;
use crate::metrics_capture::{MetricsCapture, MetricsSnapshot};
use crate::plugin_logs::{CaptureObserver, LogCapture, PluginLog};
use crate::test_plugin::TestPlugin;

mod shared_compile;

/// Where the fake clock starts: 2025-01-01T00:00:00Z.
pub const DEFAULT_START_MS: u64 = 1_735_689_600_000;
/// The proxy's default hook budget (`hook_timeout = "50ms"`).
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(50);
/// The proxy's default instance memory cap (`memory_limit = "16MiB"`).
pub const DEFAULT_MEMORY_BYTES: usize = 16 << 20;
/// Route name plugins are configured for when a test gives none.
pub const DEFAULT_ROUTE: &str = "test";

/// A plugin configuration, as `configure` will receive it (JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig(String);

impl PluginConfig {
    /// JSON object text, as is.
    pub fn json(text: impl Into<String>) -> Self {
        PluginConfig(text.into())
    }

    /// A TOML table as written under `[routes.plugins.config]`, converted
    /// the way the proxy converts it.
    pub fn toml(text: &str) -> Result<Self, HarnessError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| HarnessError::ConfigSyntax(e.message().to_owned()))?;
        Self::from_table(&table)
    }

    pub fn from_table(table: &toml::Table) -> Result<Self, HarnessError> {
        plugin_config::table_to_json(table)
            .map(PluginConfig)
            .map_err(HarnessError::ConfigSyntax)
    }

    /// The empty table (`{}`): what a route without a config table sends.
    pub fn empty() -> Self {
        PluginConfig("{}".to_owned())
    }

    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PluginConfig {
    /// JSON text.
    fn from(json: &str) -> Self {
        PluginConfig::json(json)
    }
}

impl From<String> for PluginConfig {
    fn from(json: String) -> Self {
        PluginConfig::json(json)
    }
}

impl From<serde_json::Value> for PluginConfig {
    fn from(value: serde_json::Value) -> Self {
        PluginConfig(value.to_string())
    }
}

/// Settings of a [`Harness`]; [`Harness::builder`].
#[derive(Debug, Clone)]
pub struct HarnessBuilder {
    start_ms: u64,
    hook_timeout: Duration,
    memory_bytes: usize,
    route: String,
    state_limits: StateLimits,
    cache_dir: Option<PathBuf>,
    max_calls_per_instance: u32,
}

impl Default for HarnessBuilder {
    fn default() -> Self {
        HarnessBuilder {
            start_ms: DEFAULT_START_MS,
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            route: DEFAULT_ROUTE.to_owned(),
            state_limits: StateLimits::default(),
            cache_dir: None,
            max_calls_per_instance: tailgate_runtime::DEFAULT_MAX_CALLS_PER_INSTANCE,
        }
    }
}

impl HarnessBuilder {
    /// Where the fake clock starts, Unix epoch milliseconds.
    pub fn start_ms(mut self, ms: u64) -> Self {
        self.start_ms = ms;
        self
    }

    /// The time budget of each hook call (route `hook_timeout`).
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = timeout;
        self
    }

    /// The instance memory cap (route `memory_limit`).
    pub fn memory_bytes(mut self, bytes: usize) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// The route name plugins are configured for (and requests carry).
    pub fn route(mut self, route: &str) -> Self {
        self.route = route.to_owned();
        self
    }

    /// Caps on plugin state (shrink them to test eviction at the cap).
    pub fn state_limits(mut self, limits: StateLimits) -> Self {
        self.state_limits = limits;
        self
    }

    /// Keep compiled plugins in `dir` across harnesses (default: a fresh
    /// temporary directory per harness, filled from the plugins this
    /// process compiled already, so a suite compiles each plugin once).
    /// Loading from it is trusted: use a directory only you write to, such
    /// as one under your `target/`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Hook calls an instance serves before a fresh one replaces it (the
    /// proxy's `max_calls_per_instance`); 1 = a fresh instance per call.
    pub fn max_calls_per_instance(mut self, calls: u32) -> Self {
        self.max_calls_per_instance = calls.max(1);
        self
    }

    pub fn build(self) -> Result<Harness, HarnessError> {
        let (cache_dir, temp_cache) = match &self.cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(HarnessError::CacheDir)?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("tailgate-harness-")
                    .tempdir()
                    .map_err(HarnessError::CacheDir)?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut config = RuntimeConfig::new(cache_dir.clone());
        // A harness runs one test's calls: a few instances are plenty, and a
        // small pool keeps many harnesses in parallel tests cheap.
        config.max_instances = 16;
        config.max_calls_per_instance = self.max_calls_per_instance;
        let clock = Arc::new(ManualClock::new(self.start_ms));
        let logs = Arc::new(LogCapture::default());
        let runtime = Runtime::with_options(
            config,
            RuntimeOptions {
                clock: clock.clone(),
                state_limits: self.state_limits,
                observer: Some(Arc::new(CaptureObserver(logs.clone()))),
                redis_dialer: None,
            },
        )?;
        Ok(Harness {
            runtime,
            cache_dir: temp_cache.is_some().then_some(cache_dir.clone()),
            clock,
            logs,
            metrics: Arc::new(MetricsCapture::default()),
            settings: self,
            _temp_cache: temp_cache,
        })
    }
}

/// One plugin runtime under test control. Plugins loaded and configured on
/// the same harness share its state (per plugin name), clock, logs and
/// metrics, as they would in one proxy.
pub struct Harness {
    runtime: Runtime,
    /// The harness's own temporary compile cache (`None` when the test
    /// gave a directory): filled from the process's compiled plugins.
    cache_dir: Option<PathBuf>,
    clock: Arc<ManualClock>,
    logs: Arc<LogCapture>,
    metrics: Arc<MetricsCapture>,
    settings: HarnessBuilder,
    _temp_cache: Option<tempfile::TempDir>,
}

/// A compiled plugin, ready to be configured.
#[derive(Clone)]
pub struct PluginFile {
    loaded: Arc<LoadedPlugin>,
    path: PathBuf,
}

impl PluginFile {
    /// The plugin's name: its state namespace and its `plugin` metric label.
    pub fn name(&self) -> &str {
        self.loaded.name()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A plugin's name from its file: `rate_limit.wasm` -> `rate-limit`.
pub fn name_from_path(wasm: &Path) -> String {
    wasm.file_stem()
        .map(|stem| stem.to_string_lossy().replace('_', "-"))
        .unwrap_or_else(|| "plugin".to_owned())
}

impl Harness {
    /// A harness with the proxy's default limits, the clock at
    /// [`DEFAULT_START_MS`] and routes named [`DEFAULT_ROUTE`].
    pub fn new() -> Result<Harness, HarnessError> {
        HarnessBuilder::default().build()
    }

    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// Compile `wasm`, named after the file (`rate_limit.wasm` -> `rate-limit`).
    pub fn load(&self, wasm: impl AsRef<Path>) -> Result<PluginFile, HarnessError> {
        let wasm = wasm.as_ref();
        self.load_as(&name_from_path(wasm), wasm)
    }

    /// Compile `wasm` as plugin `name` (the name `[plugins]` gives it).
    /// A wasm this process compiled already (an earlier harness, a parallel
    /// test) is not compiled again.
    pub fn load_as(&self, name: &str, wasm: impl AsRef<Path>) -> Result<PluginFile, HarnessError> {
        let path = wasm.as_ref().to_path_buf();
        let load = || {
            self.runtime.load(name, &path).map(|loaded| {
                let cache_path = loaded.cache_path();
                (loaded, cache_path)
            })
        };
        let loaded = match &self.cache_dir {
            Some(dir) => shared_compile::load(&path, dir, load)?,
            None => load()?.0,
        };
        Ok(PluginFile { loaded, path })
    }

    /// Configure `plugin` for the harness's route with `config`, calling its
    /// `configure` as a config load would. A rejected config is
    /// [`HarnessError::ConfigRejected`] with the plugin's message.
    pub fn configure(
        &self,
        plugin: &PluginFile,
        config: impl Into<PluginConfig>,
    ) -> Result<TestPlugin<'_>, HarnessError> {
        self.configure_for(plugin, &self.settings.route.clone(), config)
    }

    /// Configure `plugin` for route `route`.
    pub fn configure_for(
        &self,
        plugin: &PluginFile,
        route: &str,
        config: impl Into<PluginConfig>,
    ) -> Result<TestPlugin<'_>, HarnessError> {
        let config = config.into();
        let limits = tailgate_runtime::Limits {
            hook_timeout: self.settings.hook_timeout,
            memory_bytes: self.settings.memory_bytes,
        };
        let configured = self.metrics.around(|| {
            self.runtime
                .configure(&plugin.loaded, route, config.as_json(), limits)
        });
        match configured {
            Ok(configured) => {
                let name = configured.name().to_owned();
                let chained = ChainedPlugin::new(configured).map_err(|reason| {
                    HarnessError::InvalidFixedEdits {
                        plugin: name,
                        reason,
                    }
                })?;
                Ok(TestPlugin::new(self, chained))
            }
            Err(tailgate_runtime::ConfigureError::Rejected {
                plugin, message, ..
            }) => Err(HarnessError::ConfigRejected { plugin, message }),
            Err(tailgate_runtime::ConfigureError::Fault { plugin, fault, .. }) => {
                Err(HarnessError::ConfigureFault { plugin, fault })
            }
        }
    }

    /// The fake clock every host import reads (`now-ms`, rate limits, TTLs).
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Moves the fake clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The fake clock, Unix epoch milliseconds.
    pub fn now_ms(&self) -> u64 {
        use tailgate_runtime::Clock as _;
        self.clock.now_ms()
    }

    /// Plugin `name`'s shared state: inspect it or seed it.
    pub fn state(&self, plugin: &str) -> PluginStateView {
        self.metrics.around(|| self.runtime.plugin_state(plugin))
    }

    /// Every line any plugin logged on this harness so far.
    pub fn logs(&self) -> Vec<PluginLog> {
        self.logs.all()
    }

    /// Every metric recorded on this harness so far (counters are totals).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The runtime underneath, for what the harness does not wrap.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(crate) fn log_capture(&self) -> &LogCapture {
        &self.logs
    }

    pub(crate) fn metrics_capture(&self) -> &MetricsCapture {
        &self.metrics
    }
}
