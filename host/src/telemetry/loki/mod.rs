//! The Loki pusher: the access log's second sink. The log phase hands each
//! finished line (with the log-shape plugin's labels) to [`LokiSink::push`],
//! which only appends to a bounded in-memory buffer — a request never waits
//! for Loki. One sender task cuts batches by size (`batch_size`) or age
//! (`batch_wait`), encodes them (protobuf + snappy, or JSON), and posts them
//! in order, one at a time, retrying on 429, 5xx and connection errors.

mod buffer;
pub mod encode;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use self::buffer::{LineBuffer, LogEntry, StreamLabels};
use super::push_client::PushClient;
use super::retry::{deliver, Delivery};
use super::TelemetryError;
use crate::config::model::telemetry::{is_label_name, LokiConfig, LokiEncoding, RetryPolicy};

const SINK: &str = "loki";

/// Where the log phase puts lines for Loki. Cheap to clone.
#[derive(Clone)]
pub struct LokiSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LokiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiSink").finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the sender: a first line, a full batch, or a flush.
    wake: Notify,
    /// The sender found nothing to send.
    idle: Notify,
    /// Labels of every stream (config), before the plugin's.
    base_labels: Vec<(String, String)>,
    batch_size: usize,
    batch_wait: Duration,
}

struct State {
    buffer: LineBuffer,
    in_flight: bool,
    flushing: bool,
}

impl LokiSink {
    /// Queue `line` under the config's stream labels and `labels` (the
    /// log-shape plugin's; they win over the config's for the same name;
    /// names Loki would refuse are left out).
    pub fn push(&self, labels: &[(String, String)], line: &str) {
        let shared = &self.shared;
        let mut pairs: Vec<(String, String)> = labels
            .iter()
            .filter(|(name, _)| is_label_name(name))
            .cloned()
            .collect();
        for (name, value) in &shared.base_labels {
            if !pairs.iter().any(|(n, _)| n == name) {
                pairs.push((name.clone(), value.clone()));
            }
        }
        let stream = Arc::new(StreamLabels::new(pairs));
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let (dropped, wake) = {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            let was_empty = state.buffer.is_empty();
            let dropped = state
                .buffer
                .push(stream, line.to_owned(), now_ns, Instant::now());
            set_queue_gauge(&state.buffer);
            (
                dropped,
                was_empty || state.buffer.bytes() >= shared.batch_size,
            )
        };
        if dropped > 0 {
            count_dropped("buffer_full", dropped);
        }
        if wake {
            shared.wake.notify_one();
        }
    }
}

/// The running pusher.
pub struct LokiPusher {
    sink: LokiSink,
    task: JoinHandle<()>,
}

impl LokiPusher {
    /// Start the sender on the current tokio runtime. `base_labels` are the
    /// config's stream labels, already expanded.
    pub fn start(
        config: &LokiConfig,
        base_labels: Vec<(String, String)>,
    ) -> Result<Self, TelemetryError> {
        let client = PushClient::new(&config.endpoint, "telemetry.loki")?;
        let mut headers = vec![(
            CONTENT_TYPE,
            HeaderValue::from_static(match config.encoding {
                LokiEncoding::Protobuf => "application/x-protobuf",
                LokiEncoding::Json => "application/json",
            }),
        )];
        if let Some(tenant) = &config.tenant {
            let tenant = tenant.expand().map_err(|source| TelemetryError::Env {
                what: "telemetry.loki.tenant",
                source,
            })?;
            let value =
                HeaderValue::from_str(&tenant).map_err(|_| TelemetryError::Credentials {
                    what: "telemetry.loki.tenant",
                })?;
            headers.push((HeaderName::from_static("x-scope-orgid"), value));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer: LineBuffer::new(config.buffer_size),
                in_flight: false,
                flushing: false,
            }),
            wake: Notify::new(),
            idle: Notify::new(),
            base_labels,
            batch_size: config.batch_size,
            batch_wait: config.batch_wait,
        });
        let sender = Sender {
            shared: shared.clone(),
            client,
            headers,
            encoding: config.encoding,
            retry: config.retry,
        };
        Ok(LokiPusher {
            sink: LokiSink { shared },
            task: tokio::spawn(sender.run()),
        })
    }

    pub fn sink(&self) -> LokiSink {
        self.sink.clone()
    }

    /// Send every buffered line now, waiting up to `deadline`, then stop.
    pub async fn flush(self, deadline: Instant) {
        let shared = self.sink.shared.clone();
        shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flushing = true;
        shared.wake.notify_one();
        let drained = async {
            loop {
                let idle = shared.idle.notified();
                {
                    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                    if state.buffer.is_empty() && !state.in_flight {
                        return;
                    }
                }
                idle.await;
            }
        };
        if tokio::time::timeout_at(deadline.into(), drained)
            .await
            .is_err()
        {
            let left = shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .buffer
                .len();
            tracing::warn!("loki: shutting down with {left} lines unsent");
            count_dropped("shutdown", left);
        }
        self.task.abort();
    }
}

impl Drop for LokiPusher {
    /// A pusher dropped without [`flush`](LokiPusher::flush) (one a rejected
    /// reload started) stops sending at once.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the sender should do next.
enum Next {
    Send(Vec<LogEntry>),
    WaitUntil(Instant),
    Idle,
}

struct Sender {
    shared: Arc<Shared>,
    client: PushClient,
    headers: Vec<(HeaderName, HeaderValue)>,
    encoding: LokiEncoding,
    retry: RetryPolicy,
}

impl Sender {
    async fn run(self) {
        loop {
            let wake = self.shared.wake.notified();
            match self.next() {
                Next::Send(batch) => {
                    self.send(batch).await;
                    self.shared
                        .state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .in_flight = false;
                }
                Next::WaitUntil(when) => {
                    tokio::select! {
                        _ = wake => {}
                        _ = tokio::time::sleep_until(when.into()) => {}
                    }
                }
                Next::Idle => {
                    self.shared.idle.notify_waiters();
                    wake.await;
                }
            }
        }
    }

    fn next(&self) -> Next {
        let shared = &self.shared;
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(oldest) = state.buffer.oldest() else {
            return Next::Idle;
        };
        let due = oldest + shared.batch_wait;
        if state.flushing || state.buffer.bytes() >= shared.batch_size || due <= Instant::now() {
            let batch = state.buffer.take_batch(shared.batch_size);
            state.in_flight = true;
            set_queue_gauge(&state.buffer);
            Next::Send(batch)
        } else {
            Next::WaitUntil(due)
        }
    }

    async fn send(&self, batch: Vec<LogEntry>) {
        let lines = batch.len();
        let body = match self.encoding {
            LokiEncoding::Protobuf => match encode::protobuf_body(&batch) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!("loki: compressing a batch: {e}");
                    count_dropped("rejected", lines);
                    return;
                }
            },
            LokiEncoding::Json => encode::json_body(&batch),
        };
        drop(batch);
        match deliver(&self.client, &self.headers, body, self.retry, SINK).await {
            Delivery::Sent => {
                metrics::counter!("tailgate_telemetry_sent_total", "sink" => SINK)
                    .increment(lines as u64);
            }
            Delivery::Rejected(why) => {
                tracing::error!("loki refused a batch of {lines} lines (dropped): {why}");
                count_dropped("rejected", lines);
            }
            Delivery::GaveUp(why) => {
                tracing::error!("loki: dropping {lines} lines after every retry failed: {why}");
                count_dropped("retries_exhausted", lines);
            }
        }
    }
}

fn count_dropped(reason: &'static str, lines: usize) {
    metrics::counter!("tailgate_telemetry_dropped_total", "sink" => SINK, "reason" => reason)
        .increment(lines as u64);
}

fn set_queue_gauge(buffer: &LineBuffer) {
    metrics::gauge!("tailgate_telemetry_queue_length", "sink" => SINK).set(buffer.len() as f64);
    metrics::gauge!("tailgate_telemetry_queue_bytes", "sink" => SINK).set(buffer.bytes() as f64);
}
