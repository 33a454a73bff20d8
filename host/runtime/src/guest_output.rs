//! Where a plugin's stdout and stderr go: line by line into tracing (stderr
//! as warnings, stdout as info), tagged with plugin and route, so a guest's
//! panic message shows up in the proxy's log. The end of what stderr got
//! during a call is also kept to explain a trap. Output per call is capped so
//! a chatty guest cannot flood the log, and lines per second are capped per
//! (plugin, route) across its instances ([`OutputRateLimit`]), so a fault
//! storm (each trap prints a ~1.3 KB panic message) cannot either.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::bindings::types::LogLevel;
use crate::host_state::GuestIdentity;
use crate::observer::{OutputSource, PluginObserver, PluginOutput};

/// Longest line logged; longer ones are split.
const MAX_LINE_BYTES: usize = 1024;
/// Output logged per stream per call; the rest is dropped.
const MAX_BYTES_PER_CALL: usize = 16 * 1024;
/// How much of the end of stderr is kept to explain a trap.
const TAIL_BYTES: usize = 512;

/// Lines of guest output (stdout and stderr) logged per (plugin, route) and
/// second, by default; past it lines are counted, not logged, and the next
/// line logged is preceded by one line saying how many were suppressed.
pub const DEFAULT_OUTPUT_LINES_PER_SECOND: u32 = 20;

/// How often the line budget of [`OutputRateLimit`] refills.
const OUTPUT_WINDOW: Duration = Duration::from_secs(1);

/// The guest-output line budget of one (plugin, route), shared by its
/// instances: at most `max` lines a second go to the log. What the
/// [`PluginObserver`] sees is not limited (it is a test tap).
#[derive(Debug)]
pub(crate) struct OutputRateLimit {
    max: u32,
    window: Mutex<OutputWindow>,
}

#[derive(Debug)]
struct OutputWindow {
    started: Instant,
    logged: u32,
    /// Lines suppressed since the last one logged.
    suppressed: u64,
}

/// Whether a line may be logged.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Log it, after a summary of this many suppressed lines (if any).
    Log {
        suppressed_before: u64,
    },
    Suppress,
}

impl OutputRateLimit {
    /// A budget of `max` lines a second (at least 1).
    pub(crate) fn new(max: u32) -> Self {
        OutputRateLimit {
            max: max.max(1),
            window: Mutex::new(OutputWindow {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    fn admit(&self, now: Instant) -> Admission {
        let mut window = lock(&self.window);
        if now.saturating_duration_since(window.started) >= OUTPUT_WINDOW {
            window.started = now;
            window.logged = 0;
        }
        if window.logged >= self.max {
            window.suppressed += 1;
            return Admission::Suppress;
        }
        window.logged += 1;
        Admission::Log {
            suppressed_before: std::mem::take(&mut window.suppressed),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stdout,
    Stderr,
}

/// The end of a guest's stderr during the current call.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutputTail(Arc<Mutex<Vec<u8>>>);

impl OutputTail {
    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }

    /// The kept text, trimmed, lossily decoded.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).trim().to_string()
    }

    fn push(&self, bytes: &[u8]) {
        let mut tail = lock(&self.0);
        tail.extend_from_slice(bytes);
        if tail.len() > TAIL_BYTES {
            let cut = tail.len() - TAIL_BYTES;
            tail.drain(..cut);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One guest output stream (stdout or stderr) of one instance.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<OutputInner>);

struct OutputInner {
    guest: GuestIdentity,
    kind: Kind,
    tail: Option<OutputTail>,
    observer: Option<Arc<dyn PluginObserver>>,
    limit: Arc<OutputRateLimit>,
    lines: Mutex<LineBuffer>,
}

#[derive(Default)]
struct LineBuffer {
    pending: Vec<u8>,
    /// Bytes seen since the buffer was last reset (per call).
    seen: usize,
    truncated: bool,
}

impl GuestOutput {
    pub(crate) fn stdout(
        guest: GuestIdentity,
        observer: Option<Arc<dyn PluginObserver>>,
        limit: Arc<OutputRateLimit>,
    ) -> Self {
        Self::new(guest, Kind::Stdout, None, observer, limit)
    }

    pub(crate) fn stderr(
        guest: GuestIdentity,
        tail: OutputTail,
        observer: Option<Arc<dyn PluginObserver>>,
        limit: Arc<OutputRateLimit>,
    ) -> Self {
        Self::new(guest, Kind::Stderr, Some(tail), observer, limit)
    }

    fn new(
        guest: GuestIdentity,
        kind: Kind,
        tail: Option<OutputTail>,
        observer: Option<Arc<dyn PluginObserver>>,
        limit: Arc<OutputRateLimit>,
    ) -> Self {
        GuestOutput(Arc::new(OutputInner {
            guest,
            kind,
            tail,
            observer,
            limit,
            lines: Mutex::new(LineBuffer::default()),
        }))
    }

    /// Starts a new call: a fresh output budget and an empty stderr tail.
    pub(crate) fn begin_call(&self) {
        let mut lines = lock(&self.0.lines);
        lines.seen = 0;
        lines.truncated = false;
        if let Some(tail) = &self.0.tail {
            tail.clear();
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let inner = &self.0;
        if let Some(tail) = &inner.tail {
            tail.push(bytes);
        }
        let mut lines = lock(&inner.lines);
        if lines.seen >= MAX_BYTES_PER_CALL {
            if !lines.truncated {
                lines.truncated = true;
                inner.emit(b"[further output dropped]");
            }
            return;
        }
        let room = MAX_BYTES_PER_CALL - lines.seen;
        let bytes = &bytes[..bytes.len().min(room)];
        lines.seen += bytes.len();
        lines.pending.extend_from_slice(bytes);
        while let Some(end) = lines.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = lines.pending.drain(..=end).collect();
            inner.emit(&line[..line.len() - 1]);
        }
        while lines.pending.len() >= MAX_LINE_BYTES {
            let line: Vec<u8> = lines.pending.drain(..MAX_LINE_BYTES).collect();
            inner.emit(&line);
        }
    }
}

impl OutputInner {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let (plugin, route) = (&*self.guest.plugin, &*self.guest.route);
        let logged = match self.limit.admit(Instant::now()) {
            Admission::Log { suppressed_before } => {
                if suppressed_before > 0 {
                    tracing::warn!(
                        plugin,
                        route,
                        suppressed = suppressed_before,
                        "suppressed {suppressed_before} lines of plugin output (at most {} a second are logged)",
                        self.limit.max
                    );
                }
                true
            }
            Admission::Suppress => false,
        };
        let (source, level) = match self.kind {
            Kind::Stderr => {
                if logged {
                    tracing::warn!(plugin, route, stream = "stderr", "{line}");
                }
                (OutputSource::Stderr, LogLevel::Warn)
            }
            Kind::Stdout => {
                if logged {
                    tracing::info!(plugin, route, stream = "stdout", "{line}");
                }
                (OutputSource::Stdout, LogLevel::Info)
            }
        };
        if let Some(observer) = &self.observer {
            observer.plugin_output(&PluginOutput {
                plugin,
                route,
                source,
                level,
                message: line,
            });
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Never full: what is over the budget is dropped, not refused, so a
        // guest never fails (or panics) because it printed.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_lines_are_counted_and_reported_with_the_next_one() {
        let limit = OutputRateLimit::new(2);
        let start = Instant::now();
        let log = |suppressed_before| Admission::Log { suppressed_before };
        assert_eq!(limit.admit(start), log(0));
        assert_eq!(limit.admit(start), log(0));
        for _ in 0..5 {
            assert_eq!(
                limit.admit(start + Duration::from_millis(500)),
                Admission::Suppress
            );
        }
        let next_second = start + OUTPUT_WINDOW;
        assert_eq!(limit.admit(next_second), log(5));
        assert_eq!(limit.admit(next_second), log(0));
        assert_eq!(limit.admit(next_second), Admission::Suppress);
    }
}
