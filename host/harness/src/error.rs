//! Errors of the harness: a plugin that cannot be found, loaded or
//! configured, and a cases file that cannot be read.

use std::path::PathBuf;

use tailgate_runtime::{InvalidOutput, LoadError, PluginFault, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("starting the plugin runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("creating the compile cache directory: {0}")]
    CacheDir(std::io::Error),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `configure` returned an error: the message the operator would see.
    #[error("plugin {plugin}: config rejected: {message}")]
    ConfigRejected { plugin: String, message: String },
    /// `configure` did not return (trap, timeout, memory cap).
    #[error("plugin {plugin}: configure {fault}")]
    ConfigureFault { plugin: String, fault: PluginFault },
    /// `configure` declared fixed edits that cannot go on the wire (the
    /// proxy refuses the config the same way).
    #[error("plugin {plugin}: its fixed edits cannot go on the wire: {reason}")]
    InvalidFixedEdits {
        plugin: String,
        reason: InvalidOutput,
    },
    #[error("plugin config is not valid: {0}")]
    ConfigSyntax(String),
    #[error(
        "{path}: the built plugin was not found; looked for {looked_for}. Build it first: {build}"
    )]
    NotBuilt {
        path: PathBuf,
        looked_for: String,
        build: String,
    },
    #[error(
        "{wasm} is older than {source_file}: the test would run stale code. Rebuild it first: {build}"
    )]
    Stale {
        wasm: PathBuf,
        source_file: PathBuf,
        build: String,
    },
}

impl HarnessError {
    /// The message `configure` rejected the config with, if that is what happened.
    pub fn rejection(&self) -> Option<&str> {
        match self {
            HarnessError::ConfigRejected { message, .. } => Some(message),
            _ => None,
        }
    }
}
