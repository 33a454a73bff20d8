//! The plugin's own log lines, captured: every `host.log` call and every
//! line it wrote to stdout/stderr, through the runtime's observer tap. Hook
//! outcomes carry the lines of their call; failure messages print them.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tailgate_runtime::{LogLevel, OutputSource, PluginObserver, PluginOutput};

/// One line a plugin emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginLog {
    pub plugin: String,
    pub route: String,
    pub source: OutputSource,
    pub level: LogLevel,
    pub message: String,
}

impl fmt::Display for PluginLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        let source = match self.source {
            OutputSource::HostLog => "",
            OutputSource::Stdout => " stdout",
            OutputSource::Stderr => " stderr",
        };
        write!(f, "[{level}{source}] {}", self.message)
    }
}

/// Collects every plugin line of one harness, in order.
#[derive(Debug, Default)]
pub(crate) struct LogCapture {
    lines: Mutex<Vec<PluginLog>>,
}

impl LogCapture {
    fn lock(&self) -> MutexGuard<'_, Vec<PluginLog>> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many lines were captured so far (a mark for [`LogCapture::since`]).
    pub(crate) fn mark(&self) -> usize {
        self.lock().len()
    }

    /// The lines captured after `mark`.
    pub(crate) fn since(&self, mark: usize) -> Vec<PluginLog> {
        self.lock()
            .get(mark..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    pub(crate) fn all(&self) -> Vec<PluginLog> {
        self.lock().clone()
    }
}

/// The observer handed to the runtime.
pub(crate) struct CaptureObserver(pub(crate) Arc<LogCapture>);

impl PluginObserver for CaptureObserver {
    fn plugin_output(&self, output: &PluginOutput<'_>) {
        self.0.lock().push(PluginLog {
            plugin: output.plugin.to_owned(),
            route: output.route.to_owned(),
            source: output.source,
            level: output.level,
            message: output.message.to_owned(),
        });
    }
}

/// Lines formatted for a failure message, indented.
pub(crate) fn format_logs(lines: &[PluginLog]) -> String {
    if lines.is_empty() {
        return "  (the plugin logged nothing)".to_owned();
    }
    lines
        .iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
