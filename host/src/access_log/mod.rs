//! The access log: the pipeline's last phase hands each finished exchange's
//! line here. Lines are appended to one shared buffer and a single writer
//! thread owns STDOUT and/or the file (`[access_log]`), so lines are never
//! interleaved and a slow STDOUT never stalls a request. Like nginx's
//! `access_log ... buffer=64k flush=...`, the writer wakes when a batch of
//! [`BATCH_BYTES`] is ready or [`FLUSH_INTERVAL`] after the first unwritten
//! line, not per line: a request pays a short lock and a copy, no task
//! wake-up, and the writes are blocking writes on the writer's own thread
//! (not a blocking-pool hand-off per write as with `tokio::io::stdout`).
//! [`default_line`] is the nginx-like JSON line used when no plugin shapes it.
//! A reload that changes `[access_log]` (or the Loki pusher) starts a new
//! writer for the new config; the old one ends once the requests still
//! holding it have logged ([`LogWriters`] waits for all of them at exit).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::config::model::AccessLogConfig;
use crate::telemetry::loki::LokiSink;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod default_line;

pub use default_line::default_line;

/// A batch the writer writes at once (nginx `buffer=64k`).
pub const BATCH_BYTES: usize = 64 * 1024;
/// Longest a line waits in the buffer before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes waiting for the writer; past this, lines are dropped and counted.
const MAX_PENDING_BYTES: usize = 8 << 20;

/// Where finished access-log lines go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    sink: Sink,
    /// The second sink, when `[telemetry.loki]` is configured.
    loki: Option<crate::telemetry::loki::LokiSink>,
}

#[derive(Debug, Clone)]
enum Sink {
    /// The writer thread's buffer; closed when the last clone is dropped.
    Buffer(Arc<QueueHandle>),
    /// A channel (tests, other sinks).
    Channel(mpsc::Sender<String>),
}

impl AccessLog {
    /// Start the writer thread (STDOUT and/or the configured file); with
    /// `loki`, every line is also queued for Loki. The returned task ends
    /// (after writing every queued line) once every `AccessLog` clone is
    /// gone. Fails only if the file cannot be opened for appending, or the
    /// thread cannot be started.
    pub fn start(
        config: &AccessLogConfig,
        loki: Option<LokiSink>,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let file = match &config.file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => None,
        };
        let sinks = Sinks {
            stdout: config.stdout,
            file,
        };
        let queue = Arc::new(LineQueue::default());
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let writer_queue = queue.clone();
        std::thread::Builder::new()
            .name("tailgate-access-log".into())
            .spawn(move || {
                write_lines(&writer_queue, sinks);
                let _ = done_tx.send(());
            })?;
        let writer = tokio::spawn(async move {
            let _ = done_rx.await;
        });
        let log = AccessLog {
            sink: Sink::Buffer(Arc::new(QueueHandle(queue))),
            loki,
        };
        Ok((log, writer))
    }

    /// A log whose lines land in the returned receiver (tests, other sinks).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity);
        let log = AccessLog {
            sink: Sink::Channel(tx),
            loki: None,
        };
        (log, rx)
    }

    /// Queue one line (a trailing newline is added by the writer; embedded
    /// line breaks are escaped so one request stays one line).
    pub fn write_line(&self, line: String) {
        self.write_labelled_line(line, &[]);
    }

    /// Queue one line with its Loki stream labels (the log-shape plugin's).
    pub fn write_labelled_line(&self, line: String, labels: &[(String, String)]) {
        // A SIMD byte search: `contains([char; 2])` decoded every character.
        let line = if memchr::memchr2(b'\n', b'\r', line.as_bytes()).is_some() {
            line.replace('\n', "\\n").replace('\r', "\\r")
        } else {
            line
        };
        if let Some(loki) = &self.loki {
            loki.push(labels, &line);
        }
        match &self.sink {
            Sink::Buffer(queue) => {
                if !queue.0.push(&line) {
                    metrics::counter!("tailgate_access_log_dropped_total").increment(1);
                    tracing::warn!("access log buffer full; dropping a line");
                }
            }
            Sink::Channel(tx) => {
                if let Err(e) = tx.try_send(line) {
                    metrics::counter!("tailgate_access_log_dropped_total").increment(1);
                    if matches!(e, mpsc::error::TrySendError::Full(_)) {
                        tracing::warn!("access log queue full; dropping a line");
                    }
                }
            }
        }
    }
}

/// The writer tasks of every access log started so far (one per
/// `[access_log]` config a reload brought in), so that exit waits until the
/// last line of each is written. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LogWriters(Arc<Mutex<Vec<JoinHandle<()>>>>);

impl LogWriters {
    pub fn add(&self, writer: JoinHandle<()>) {
        let mut writers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        writers.retain(|w| !w.is_finished());
        writers.push(writer);
    }

    /// Wait (at most `timeout`) for every writer to finish; they finish once
    /// every handle of their log is dropped. False if one did not in time.
    pub async fn finish(&self, timeout: Duration) -> bool {
        let writers = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        tokio::time::timeout(timeout, async {
            for writer in writers {
                let _ = writer.await;
            }
        })
        .await
        .is_ok()
    }
}

// === impl LineQueue ===

/// Lines waiting for the writer, newline-terminated, in arrival order.
#[derive(Debug, Default)]
struct LineQueue {
    state: Mutex<QueueState>,
    /// Signalled on the first line after a write, when a batch fills up,
    /// and on close.
    wake: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    pending: Vec<u8>,
    /// Every `AccessLog` is gone: write what is left and stop.
    closed: bool,
}

impl LineQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Bytes are appended whole under the lock; a poisoned lock holds no
        // half-written line.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append `line` and a newline; false when the buffer is full.
    fn push(&self, line: &str) -> bool {
        let mut state = self.lock();
        let before = state.pending.len();
        if before + line.len() + 1 > MAX_PENDING_BYTES {
            return false;
        }
        state.pending.extend_from_slice(line.as_bytes());
        state.pending.push(b'\n');
        let after = state.pending.len();
        drop(state);
        if before == 0 || (before < BATCH_BYTES && after >= BATCH_BYTES) {
            self.wake.notify_one();
        }
        true
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Wait for a batch: the first line, then until [`BATCH_BYTES`] are
    /// pending or [`FLUSH_INTERVAL`] has passed (or the queue closed).
    /// Moves the batch into `out`; returns whether the queue is closed.
    fn next_batch(&self, out: &mut Vec<u8>) -> bool {
        let mut state = crate::batch_wait::wait_for_batch(
            &self.wake,
            self.lock(),
            FLUSH_INTERVAL,
            |s| !s.pending.is_empty() || s.closed,
            |s| s.pending.len() >= BATCH_BYTES || s.closed,
        );
        std::mem::swap(&mut state.pending, out);
        state.closed
    }
}

/// Closes the queue when the last `AccessLog` clone is dropped.
#[derive(Debug)]
struct QueueHandle(Arc<LineQueue>);

impl Drop for QueueHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Where the writer puts lines.
struct Sinks {
    stdout: bool,
    file: Option<std::fs::File>,
}

impl Sinks {
    fn write_all(&mut self, buf: &[u8]) {
        if self.stdout {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
                tracing::error!("writing the access log to stdout: {e}");
            }
        }
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(buf) {
                tracing::error!("writing the access log file: {e}");
            }
        }
    }
}

/// The writer thread: one write per sink and batch, until the queue closes
/// and every line is written.
fn write_lines(queue: &LineQueue, mut sinks: Sinks) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    loop {
        let closed = queue.next_batch(&mut batch);
        if !batch.is_empty() {
            sinks.write_all(&batch);
        }
        batch.clear();
        // A burst may have grown the buffer; do not keep it.
        if batch.capacity() > 4 * BATCH_BYTES {
            batch = Vec::with_capacity(BATCH_BYTES);
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn writer_appends_one_line_per_request_in_order_to_the_file() {
        let path = std::env::temp_dir().join(format!("tailgate-access-{}.log", std::process::id()));
        std::fs::write(&path, "earlier\n").expect("seed file");
        let config = AccessLogConfig {
            stdout: false,
            file: Some(path.clone()),
            ..AccessLogConfig::default()
        };
        let (log, writer) = AccessLog::start(&config, None).expect("open log file");
        log.write_line("first".into());
        log.write_line("second\nhalf".into());
        drop(log);
        writer.await.expect("writer task");
        let out = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(out, "earlier\nfirst\nsecond\\nhalf\n");
    }

    #[tokio::test]
    async fn lines_are_written_within_the_flush_interval_while_the_log_lives() {
        let path =
            std::env::temp_dir().join(format!("tailgate-access-flush-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let config = AccessLogConfig {
            stdout: false,
            file: Some(path.clone()),
            ..AccessLogConfig::default()
        };
        let (log, _writer) = AccessLog::start(&config, None).expect("open log file");
        log.write_line("one".into());
        log.write_line("two".into());
        let waited = Instant::now();
        let out = loop {
            let out = std::fs::read_to_string(&path).unwrap_or_default();
            if out.len() >= 8 || waited.elapsed() > Duration::from_secs(5) {
                break out;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let _ = std::fs::remove_file(&path);
        assert_eq!(out, "one\ntwo\n");
        // Written while the log lives: the flush interval (plus slack), not
        // the close, wrote them.
        assert!(
            waited.elapsed() < FLUSH_INTERVAL * 20,
            "{:?}",
            waited.elapsed()
        );
        drop(log);
    }

    #[test]
    fn a_full_batch_is_written_before_the_flush_interval() {
        let queue = LineQueue::default();
        let line = "x".repeat(1023);
        for _ in 0..BATCH_BYTES / 1024 {
            assert!(queue.push(&line));
        }
        let mut out = Vec::new();
        let started = Instant::now();
        assert!(!queue.next_batch(&mut out));
        assert!(
            started.elapsed() < FLUSH_INTERVAL,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(out.len(), BATCH_BYTES);
    }

    #[test]
    fn past_the_pending_cap_lines_are_refused() {
        let queue = LineQueue::default();
        let line = "y".repeat(64 * 1024 - 1);
        for _ in 0..MAX_PENDING_BYTES / (64 * 1024) {
            assert!(queue.push(&line));
        }
        assert!(!queue.push("one more"));
        let mut out = Vec::new();
        queue.next_batch(&mut out);
        assert!(queue.push("one more"));
    }

    #[test]
    fn an_unopenable_file_is_an_error() {
        let config = AccessLogConfig {
            stdout: true,
            file: Some("/nonexistent-dir/x/access.log".into()),
            ..AccessLogConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let _guard = rt.enter();
        assert!(AccessLog::start(&config, None).is_err());
    }
}
