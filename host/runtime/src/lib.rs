//! Tailgate's plugin runtime: loads WebAssembly plugin components and runs
//! their hooks under a time budget and a memory cap. Sits between the proxy
//! pipeline (`tailgate::pipeline`) and the guests; knows nothing of HTTP I/O.
//!
//! Flow: [`Runtime::load`] compiles (or loads from the on-disk cache) a plugin
//! once; [`Runtime::configure`] validates one route's config for it and gives
//! a [`ConfiguredPlugin`], whose hook methods the pipeline calls per request.

mod bindings;
mod error;

pub use bindings::types::{
    Header, HeaderEdit, HeaderOp, HookSet, ImmediateResponse, LogLevel, LogLine, LogRecord,
    RequestAction, RequestEdits, RequestHead, ResponseEdits, ResponseHead, Var,
};
pub use error::{ConfigureError, LoadError, PluginFault, RuntimeError};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled plugins are cached (keyed by wasm hash + engine hash).
    pub cache_dir: PathBuf,
    /// Upper bound of instances alive at once across all plugins.
    pub max_instances: u32,
}

/// Per (plugin, route) limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time budget of one hook call.
    pub hook_timeout: Duration,
    /// Linear-memory cap of one instance, bytes.
    pub memory_bytes: usize,
}

/// The one wasmtime engine, its epoch ticker, and the shared state plugins
/// reach through the `host` imports.
pub struct Runtime {
    _private: (),
}

/// A compiled plugin component, ready to be configured for routes.
pub struct LoadedPlugin {
    _private: (),
}

/// A plugin configured for one route: the unit the pipeline calls.
pub struct ConfiguredPlugin {
    _private: (),
}

impl Runtime {
    pub fn new(_config: RuntimeConfig) -> Result<Self, RuntimeError> {
        todo!()
    }

    /// Compile `wasm` (or load it from the cache) as plugin `name`.
    pub fn load(&self, _name: &str, _wasm: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
        todo!()
    }

    /// Validate `config_json` for `route` by calling the plugin's `configure`.
    pub fn configure(
        &self,
        _plugin: &Arc<LoadedPlugin>,
        _route: &str,
        _config_json: &str,
        _limits: Limits,
    ) -> Result<ConfiguredPlugin, ConfigureError> {
        todo!()
    }
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        todo!()
    }
    /// SHA-256 of the wasm file, hex.
    pub fn digest(&self) -> &str {
        todo!()
    }
}

impl ConfiguredPlugin {
    pub fn name(&self) -> &str {
        todo!()
    }
    pub fn route(&self) -> &str {
        todo!()
    }
    pub fn hooks(&self) -> HookSet {
        todo!()
    }
    pub fn on_request(&self, _req: &RequestHead) -> Result<RequestAction, PluginFault> {
        todo!()
    }
    pub fn on_response(
        &self,
        _req: &RequestHead,
        _resp: &ResponseHead,
    ) -> Result<ResponseEdits, PluginFault> {
        todo!()
    }
    pub fn on_log(&self, _rec: &LogRecord) -> Result<Option<LogLine>, PluginFault> {
        todo!()
    }
}
