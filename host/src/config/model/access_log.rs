//! The validated `[access_log]` section: STDOUT and/or a file, and the log
//! plugins that shape the lines of requests no route took. Built by
//! `config::access_log` at load; read by `crate::access_log` and
//! `crate::plugin_chain`.

use std::path::PathBuf;

use super::RoutePlugin;

/// The validated `[access_log]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Write lines to STDOUT (default true).
    pub stdout: bool,
    /// Also append lines to this file (created if missing; relative to the
    /// config file's folder).
    pub file: Option<PathBuf>,
    /// The plugin chain whose log hook shapes the lines of requests no
    /// route took (as a route's chain shapes its own); empty: the default
    /// line. Only the log hook runs.
    pub plugins: Vec<RoutePlugin>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            stdout: true,
            file: None,
            plugins: Vec::new(),
        }
    }
}

impl AccessLogConfig {
    /// Whether `other` writes lines to the same places (the writer a
    /// reload keeps), whatever its plugins.
    pub fn same_writer(&self, other: &AccessLogConfig) -> bool {
        self.stdout == other.stdout && self.file == other.file
    }
}
