//! Errors of the plugin runtime: loading, configuring, and faults during a hook call.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("creating the wasm engine: {0}")]
    Engine(String),
    #[error(transparent)]
    StateFile(#[from] crate::StateFileError),
    #[error(transparent)]
    Backend(#[from] crate::BackendError),
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {plugin}: reading {path}: {source}")]
    Read {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {plugin}: {path} is not a valid plugin component: {reason}")]
    Invalid {
        plugin: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin {plugin}: {source}")]
    Runtime {
        plugin: String,
        #[source]
        source: RuntimeError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("route {route}, plugin {plugin}: config rejected: {message}")]
    Rejected {
        route: String,
        plugin: String,
        message: String,
    },
    #[error("route {route}, plugin {plugin}: {fault}")]
    Fault {
        route: String,
        plugin: String,
        fault: PluginFault,
    },
}

/// Why a hook call did not return normally. The instance is discarded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginFault {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exceeded its time budget of {0:?}")]
    Timeout(std::time::Duration),
    #[error("exceeded its memory cap of {0} bytes")]
    MemoryLimit(usize),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// Not called: the plugin is tripped after repeated faults and fails
    /// fast for up to this cool-down (then one trial call decides).
    #[error("is tripped after repeated faults: not called for up to {0:?}")]
    Tripped(std::time::Duration),
    /// Not called: this many of its calls are running, its bound.
    #[error("has {0} calls running, its bound: not called")]
    Saturated(u32),
}

impl PluginFault {
    /// Whether the call failed fast, without entering the guest (the plugin
    /// is tripped or at its bound of calls at once).
    pub fn is_fail_fast(&self) -> bool {
        matches!(self, PluginFault::Tripped(_) | PluginFault::Saturated(_))
    }
}
