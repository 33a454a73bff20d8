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
use std::time::{Duration, Instant};

use std::fmt::Write as _;

use crate::address_text::push_decimal;
use tailgate_runtime::LogRecord;

use crate::config::model::AccessLogConfig;
use crate::telemetry::loki::LokiSink;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

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
        let mut state = self.lock();
        while state.pending.is_empty() && !state.closed {
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let deadline = Instant::now() + FLUSH_INTERVAL;
        while state.pending.len() < BATCH_BYTES && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
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

/// The default access-log line: JSON with nginx's variable names, written
/// field by field (a `serde_json` struct cost ~7k instructions a line, the
/// largest single item of a plugin-free request; docs/performance.md).
pub fn default_line(rec: &LogRecord) -> String {
    let mut line = JsonLine::with_capacity(384 + rec.uri.len() + rec.user_agent.len());
    line.text("time", &rec.time);
    line.text("remote_addr", peer_ip_text(&rec.peer_addr));
    line.text("client_ip", &rec.client_ip);
    line.text("request_method", &rec.method);
    line.text("request_uri", &rec.uri);
    line.text("server_protocol", &rec.protocol);
    line.text("scheme", &rec.scheme);
    line.number("status", rec.status);
    line.number("body_bytes_sent", rec.bytes_sent);
    line.number("request_length", rec.bytes_received);
    line.seconds("request_time", Some(rec.request_time));
    line.seconds("upstream_response_time", rec.upstream_response_time);
    match &rec.upstream_addr {
        Some(addr) => line.text("upstream_addr", addr),
        None => line.null("upstream_addr"),
    }
    line.text("http_host", &rec.host);
    line.text("http_user_agent", &rec.user_agent);
    line.text("http_referer", &rec.referer);
    line.text("request_id", &rec.request_id);
    line.text("route", &rec.route);
    // nginx `$upstream_cache_status`; only on routes with a cache.
    if !rec.cache_status.is_empty() {
        line.text("upstream_cache_status", &rec.cache_status);
    }
    line.finish()
}

/// A one-line JSON object being written: `"key":value` pairs in order.
struct JsonLine(String);

impl JsonLine {
    fn with_capacity(capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        JsonLine(out)
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_string(&mut self.0, value);
    }

    fn number(&mut self, key: &str, value: impl Into<u64>) {
        self.key(key);
        push_decimal(&mut self.0, value.into());
    }

    /// Seconds rounded to milliseconds (nginx's `$request_time`), as the
    /// shortest decimal (`0.012`, `1.0`: what serde_json writes); `null`
    /// when absent, negative or not finite.
    fn seconds(&mut self, key: &str, value: Option<f64>) {
        let Some(seconds) = value.filter(|v| v.is_finite() && *v >= 0.0) else {
            return self.null(key);
        };
        self.key(key);
        let ms = (seconds * 1000.0).round();
        if ms >= 9_007_199_254_740_992.0 {
            // Past 2^53 ms (285,000 years) a float prints itself.
            let _ = write!(self.0, "{:?}", ms / 1000.0);
            return;
        }
        let ms = ms as u64;
        push_decimal(&mut self.0, ms / 1000);
        self.0.push('.');
        let fraction = ms % 1000;
        let digits = [fraction / 100, fraction / 10 % 10, fraction % 10];
        let keep = digits
            .iter()
            .rposition(|&d| d != 0)
            .map_or(1, |last| last + 1);
        for digit in &digits[..keep] {
            self.0.push(char::from(b'0' + *digit as u8));
        }
    }

    fn null(&mut self, key: &str) {
        self.key(key);
        self.0.push_str("null");
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// `text` as a JSON string: `"` and `\` escaped, control characters as
/// `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`; runs of other bytes (all of
/// UTF-8 above ASCII) copied whole.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let bytes = text.as_bytes();
    let mut run = 0;
    while let Some(offset) = bytes[run..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
    {
        let at = run + offset;
        out.push_str(&text[run..at]);
        match bytes[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            byte => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        run = at + 1;
    }
    out.push_str(&text[run..]);
    out.push('"');
}

/// The IP part of a socket address as `SocketAddr` prints it (`1.2.3.4:80`,
/// `[::1]:80`, `[fe80::1%2]:80`), without formatting the address again;
/// anything else as is.
fn peer_ip_text(peer_addr: &str) -> &str {
    match peer_addr.strip_prefix('[') {
        Some(v6) => match v6.find(['%', ']']) {
            Some(end) if v6[end..].contains("]:") => &v6[..end],
            _ => peer_addr,
        },
        None => match peer_addr.split_once(':') {
            Some((ip, port)) if !port.contains(':') && port.parse::<u16>().is_ok() => ip,
            _ => peer_addr,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record() -> LogRecord {
        LogRecord {
            time: "2025-01-02T03:04:05.678Z".into(),
            time_unix_ms: 1_735_787_045_678,
            client_ip: "198.51.100.4".into(),
            peer_addr: "10.0.0.2:5555".into(),
            method: "GET".into(),
            scheme: "https".into(),
            host: "docs.example.com".into(),
            uri: "/a?b=c".into(),
            protocol: "HTTP/1.1".into(),
            status: 200,
            bytes_sent: 1234,
            bytes_received: 0,
            request_time: 0.012_345,
            upstream_response_time: Some(0.010_01),
            upstream_addr: Some("100.64.0.1:443".into()),
            cache_status: String::new(),
            route: "docs".into(),
            request_id: "abc".into(),
            user_agent: "curl/8 \"quoted\"".into(),
            referer: String::new(),
            request_headers: vec![],
            response_headers: vec![],
            vars: vec![],
        }
    }

    #[test]
    fn default_line_is_nginx_like_json() {
        let line = default_line(&record());
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["time"], "2025-01-02T03:04:05.678Z");
        assert_eq!(v["remote_addr"], "10.0.0.2");
        assert_eq!(v["client_ip"], "198.51.100.4");
        assert_eq!(v["request_method"], "GET");
        assert_eq!(v["request_uri"], "/a?b=c");
        assert_eq!(v["status"], 200);
        assert_eq!(v["body_bytes_sent"], 1234);
        assert_eq!(v["request_time"], 0.012);
        assert_eq!(v["upstream_response_time"], 0.01);
        assert_eq!(v["http_host"], "docs.example.com");
        assert_eq!(v["http_user_agent"], "curl/8 \"quoted\"");
        assert_eq!(v["http_referer"], "");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["route"], "docs");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn seconds_are_written_as_serde_json_writes_the_rounded_value() {
        let mut cases: Vec<f64> = (0..5000).map(|ms| f64::from(ms) / 997.0).collect();
        cases.extend([0.0, 0.0004, 0.0005, 1.0, 59.9996, 86_400.25, 1e12]);
        for seconds in cases {
            let mut line = JsonLine::with_capacity(16);
            line.seconds("t", Some(seconds));
            let rounded = (seconds * 1000.0).round() / 1000.0;
            let expected = format!(
                "{{\"t\":{}}}",
                serde_json::to_string(&rounded).expect("json")
            );
            assert_eq!(line.finish(), expected, "{seconds}");
        }
    }

    #[test]
    fn default_line_matches_serde_json_field_for_field() {
        let mut rec = record();
        rec.user_agent = "a\"b\\c\nd\u{1}\u{8}\u{c}\u{7f}é\t".into();
        rec.request_time = 1.0;
        rec.upstream_response_time = None;
        rec.upstream_addr = None;
        rec.cache_status = "HIT".into();
        let line = default_line(&rec);
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["http_user_agent"], rec.user_agent.as_str());
        assert_eq!(v["request_time"], 1.0);
        assert!(line.contains(r#""request_time":1.0,"#), "{line}");
        assert!(v["upstream_response_time"].is_null());
        assert!(v["upstream_addr"].is_null());
        assert_eq!(v["upstream_cache_status"], "HIT");
        // The same escapes serde_json writes.
        assert!(
            line.contains(&serde_json::to_string(&rec.user_agent).expect("json")),
            "{line}"
        );
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 19);
        rec.cache_status.clear();
        rec.request_time = f64::NAN;
        let v: serde_json::Value = serde_json::from_str(&default_line(&rec)).expect("valid JSON");
        assert!(v.get("upstream_cache_status").is_none());
        assert!(v["request_time"].is_null());
    }

    #[test]
    fn the_remote_addr_is_the_peer_ip_as_socket_addr_prints_it() {
        for peer in [
            "10.0.0.2:5555",
            "[::1]:80",
            "[fe80::1%2]:443",
            "[::ffff:10.1.2.3]:8080",
        ] {
            let parsed: std::net::SocketAddr = peer.parse().expect("socket address");
            assert_eq!(peer_ip_text(peer), parsed.ip().to_string(), "{peer}");
        }
        assert_eq!(peer_ip_text("not an address"), "not an address");
    }

    #[tokio::test]
    async fn writer_appends_one_line_per_request_in_order_to_the_file() {
        let path = std::env::temp_dir().join(format!("tailgate-access-{}.log", std::process::id()));
        std::fs::write(&path, "earlier\n").expect("seed file");
        let config = AccessLogConfig {
            stdout: false,
            file: Some(path.clone()),
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
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let _guard = rt.enter();
        assert!(AccessLog::start(&config, None).is_err());
    }
}
