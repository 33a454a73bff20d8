//! The access log: the pipeline's last phase hands each finished exchange's
//! line here. One writer task owns STDOUT and is fed by a bounded channel, so
//! lines are never interleaved and a slow STDOUT never stalls a request.
//! The writer sends each line to STDOUT and/or a file (`[access_log]`).
//! [`default_line`] is the nginx-like JSON line used when no plugin shapes it.
//! A reload that changes `[access_log]` (or the Loki pusher) starts a new
//! writer for the new config; the old one ends once the requests still
//! holding it have logged ([`LogWriters`] waits for all of them at exit).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tailgate_runtime::LogRecord;

use crate::config::model::AccessLogConfig;
use crate::telemetry::loki::LokiSink;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Lines waiting for the writer; past this, lines are dropped and counted.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// Where finished access-log lines go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
    /// The second sink, when `[telemetry.loki]` is configured.
    loki: Option<crate::telemetry::loki::LokiSink>,
}

impl AccessLog {
    /// Spawn the writer (STDOUT and/or the configured file) on the current
    /// tokio runtime; with `loki`, every line is also queued for Loki. The
    /// task ends (after writing every queued line) once every `AccessLog`
    /// clone is gone. Fails only if the file cannot be opened for appending.
    pub fn start(
        config: &AccessLogConfig,
        loki: Option<LokiSink>,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let file = match &config.file {
            Some(path) => Some(tokio::fs::File::from_std(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        let (mut log, rx) = Self::channel(QUEUE_CAPACITY);
        log.loki = loki;
        let sinks = Sinks {
            stdout: config.stdout.then(tokio::io::stdout),
            file,
        };
        let writer = tokio::spawn(write_lines(rx, sinks));
        Ok((log, writer))
    }

    /// A log whose lines land in the returned receiver (tests, other sinks).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity);
        (AccessLog { tx, loki: None }, rx)
    }

    /// Queue one line (a trailing newline is added by the writer; embedded
    /// line breaks are escaped so one request stays one line).
    pub fn write_line(&self, line: String) {
        self.write_labelled_line(line, &[]);
    }

    /// Queue one line with its Loki stream labels (the log-shape plugin's).
    pub fn write_labelled_line(&self, line: String, labels: &[(String, String)]) {
        let line = if line.contains(['\n', '\r']) {
            line.replace('\n', "\\n").replace('\r', "\\r")
        } else {
            line
        };
        if let Some(loki) = &self.loki {
            loki.push(labels, &line);
        }
        if let Err(e) = self.tx.try_send(line) {
            metrics::counter!("tailgate_access_log_dropped_total").increment(1);
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::warn!("access log queue full; dropping a line");
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

/// Where the writer puts lines.
struct Sinks {
    stdout: Option<tokio::io::Stdout>,
    file: Option<tokio::fs::File>,
}

impl Sinks {
    async fn write_all(&mut self, buf: &[u8]) {
        if let Some(out) = &mut self.stdout {
            if let Err(e) = write_flush(out, buf).await {
                tracing::error!("writing the access log to stdout: {e}");
            }
        }
        if let Some(file) = &mut self.file {
            if let Err(e) = write_flush(file, buf).await {
                tracing::error!("writing the access log file: {e}");
            }
        }
    }
}

async fn write_flush<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut W,
    buf: &[u8],
) -> std::io::Result<()> {
    out.write_all(buf).await?;
    out.flush().await
}

/// Write lines as they come, batching whatever is already queued into one
/// write per sink.
async fn write_lines(mut rx: mpsc::Receiver<String>, mut out: Sinks) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(line) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(line) => {
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                }
                Err(_) => break,
            }
        }
        out.write_all(&buf).await;
    }
}

/// The default access-log line: JSON with nginx's variable names.
pub fn default_line(rec: &LogRecord) -> String {
    #[derive(Serialize)]
    struct DefaultLine<'a> {
        time: &'a str,
        remote_addr: &'a str,
        client_ip: &'a str,
        request_method: &'a str,
        request_uri: &'a str,
        server_protocol: &'a str,
        scheme: &'a str,
        status: u16,
        body_bytes_sent: u64,
        request_length: u64,
        request_time: f64,
        upstream_response_time: Option<f64>,
        upstream_addr: Option<&'a str>,
        http_host: &'a str,
        http_user_agent: &'a str,
        http_referer: &'a str,
        request_id: &'a str,
        route: &'a str,
        /// nginx `$upstream_cache_status`; only on routes with a cache.
        #[serde(skip_serializing_if = "str::is_empty")]
        upstream_cache_status: &'a str,
    }
    let remote_addr = rec
        .peer_addr
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| rec.peer_addr.clone());
    let line = DefaultLine {
        time: &rec.time,
        remote_addr: &remote_addr,
        client_ip: &rec.client_ip,
        request_method: &rec.method,
        request_uri: &rec.uri,
        server_protocol: &rec.protocol,
        scheme: &rec.scheme,
        status: rec.status,
        body_bytes_sent: rec.bytes_sent,
        request_length: rec.bytes_received,
        request_time: millis(rec.request_time),
        upstream_response_time: rec.upstream_response_time.map(millis),
        upstream_addr: rec.upstream_addr.as_deref(),
        http_host: &rec.host,
        http_user_agent: &rec.user_agent,
        http_referer: &rec.referer,
        request_id: &rec.request_id,
        route: &rec.route,
        upstream_cache_status: &rec.cache_status,
    };
    // Serialising plain strings and numbers cannot fail; NaN/inf become null.
    serde_json::to_string(&line).unwrap_or_else(|e| format!("{{\"log_error\":\"{e}\"}}"))
}

/// Seconds rounded to milliseconds, as nginx prints them.
fn millis(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
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
