//! An optional tap on what plugins say: every `host.log` call and every
//! line a guest writes to stdout or stderr, with the plugin and route, as it
//! also goes to tracing. The proxy installs none; the plugin test harness
//! installs one to capture a plugin's own log lines for its assertions and
//! failure reports (a tracing subscriber per test is not reliable while
//! other threads log).

use crate::bindings::types::LogLevel;

/// Where a plugin's line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSource {
    /// The `host.log` import.
    HostLog,
    /// The guest's stdout (logged at info).
    Stdout,
    /// The guest's stderr (logged as a warning; a Rust panic message lands here).
    Stderr,
}

/// One line a plugin emitted.
#[derive(Debug, Clone, Copy)]
pub struct PluginOutput<'a> {
    pub plugin: &'a str,
    pub route: &'a str,
    pub source: OutputSource,
    pub level: LogLevel,
    /// The message as logged (cut to the runtime's per-line limit).
    pub message: &'a str,
}

/// Told about every line any plugin of the runtime emits, on the thread
/// that runs the hook. Must be quick: it runs inside the hook call.
pub trait PluginObserver: Send + Sync + 'static {
    fn plugin_output(&self, output: &PluginOutput<'_>);
}
