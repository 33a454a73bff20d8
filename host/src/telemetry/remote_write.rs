//! The Prometheus remote_write 1.0 pusher: every `interval` it snapshots all
//! series the recorder holds (what `/metrics` shows, plus `up`), queues the
//! snapshot (bounded: the oldest is dropped and counted when full), and a
//! sender task posts queued snapshots in order as a snappy-compressed
//! protobuf `WriteRequest`, retrying as `retry` says. Never touches the
//! request path: requests only update the recorder.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderName, HeaderValue};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::exposition;
use super::push_client::PushClient;
use super::retry::{deliver, Delivery};
use super::TelemetryError;
use crate::config::model::telemetry::RemoteWriteConfig;

const SINK: &str = "remote_write";
/// Snapshots merged into one request when catching up after an outage.
const MAX_SNAPSHOTS_PER_REQUEST: usize = 10;

// === The remote_write 1.0 messages (prometheus/prompb/remote.proto, types.proto) ===

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name; `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

// === Snapshots ===

/// Every series at one instant, labels sorted, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub timestamp_ms: i64,
    pub series: Vec<(Vec<Label>, f64)>,
}

impl Snapshot {
    /// Series of the rendered `text`, each with the `extra` labels it does
    /// not carry itself, plus `up{up_labels} 1`.
    pub fn from_text(
        text: &str,
        timestamp_ms: i64,
        extra: &[(String, String)],
        up_labels: &[(String, String)],
    ) -> Snapshot {
        let (parsed, errors) = exposition::parse(text);
        for e in errors {
            tracing::warn!("remote_write: skipping a series: {e}");
        }
        let mut series: Vec<_> = parsed
            .into_iter()
            .map(|s| (series_labels(&s.name, s.labels, extra), s.value))
            .collect();
        series.push((series_labels("up", up_labels.to_vec(), &[]), 1.0));
        Snapshot {
            timestamp_ms,
            series,
        }
    }
}

/// `__name__` plus `labels` plus those of `extra` not already there, sorted
/// by name; a name given twice keeps its first value.
fn series_labels(
    name: &str,
    labels: Vec<(String, String)>,
    extra: &[(String, String)],
) -> Vec<Label> {
    let mut out: Vec<Label> = Vec::with_capacity(labels.len() + extra.len() + 1);
    out.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    for (name, value) in labels.into_iter().chain(extra.iter().cloned()) {
        if value.is_empty() || out.iter().any(|l| l.name == name) {
            continue;
        }
        out.push(Label { name, value });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One `WriteRequest` of `snapshots` (in time order): one time series per
/// label set, its samples in timestamp order.
pub fn write_request(snapshots: &[Snapshot]) -> WriteRequest {
    let mut by_series: BTreeMap<&[Label], Vec<Sample>> = BTreeMap::new();
    for snapshot in snapshots {
        for (labels, value) in &snapshot.series {
            by_series.entry(labels).or_default().push(Sample {
                value: *value,
                timestamp: snapshot.timestamp_ms,
            });
        }
    }
    WriteRequest {
        timeseries: by_series
            .into_iter()
            .map(|(labels, samples)| TimeSeries {
                labels: labels.to_vec(),
                samples,
            })
            .collect(),
    }
}

/// The request body: protobuf, snappy block format.
pub fn encode(request: &WriteRequest) -> Result<Bytes, snap::Error> {
    let raw = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map(Bytes::from)
}

fn headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (CONTENT_ENCODING, HeaderValue::from_static("snappy")),
        (
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        ),
        (
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static("0.1.0"),
        ),
    ]
}

// === The pusher ===

/// Snapshots waiting to be sent, oldest first.
#[derive(Debug, Default)]
struct SnapshotQueue {
    waiting: VecDeque<Snapshot>,
    in_flight: bool,
    last_timestamp_ms: i64,
}

impl SnapshotQueue {
    fn queued_samples(&self) -> usize {
        self.waiting.iter().map(|s| s.series.len()).sum()
    }
}

/// The running pusher: a snapshot ticker and a sender.
pub struct RemoteWritePusher {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<SnapshotQueue>,
    queued: Notify,
    idle: Notify,
    handle: PrometheusHandle,
    extra_labels: Vec<(String, String)>,
    up_labels: Vec<(String, String)>,
    queue_size: usize,
}

impl RemoteWritePusher {
    /// Start both tasks on the current tokio runtime.
    pub fn start(
        config: &RemoteWriteConfig,
        handle: PrometheusHandle,
        extra_labels: Vec<(String, String)>,
        up_labels: Vec<(String, String)>,
    ) -> Result<Self, TelemetryError> {
        let client = PushClient::new(&config.endpoint, "telemetry.remote_write")?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(SnapshotQueue::default()),
            queued: Notify::new(),
            idle: Notify::new(),
            handle,
            extra_labels,
            up_labels,
            queue_size: config.queue_size,
        });
        let ticker = tokio::spawn(tick(shared.clone(), config.interval));
        let sender = tokio::spawn(send(shared.clone(), client, config.retry));
        Ok(RemoteWritePusher {
            shared,
            tasks: vec![ticker, sender],
        })
    }

    /// Queue a last snapshot and wait (up to `deadline`) until everything
    /// queued is sent or given up, then stop.
    pub async fn flush(self, deadline: Instant) {
        self.shared.snapshot();
        let shared = self.shared.clone();
        let drained = async move {
            loop {
                let idle = shared.idle.notified();
                {
                    let q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    if q.waiting.is_empty() && !q.in_flight {
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
            tracing::warn!("remote_write: shutting down with samples still queued");
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for RemoteWritePusher {
    /// A pusher dropped without [`flush`](RemoteWritePusher::flush) (one a
    /// rejected reload started) stops at once.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    /// Take a snapshot now and queue it.
    fn snapshot(&self) {
        self.handle.run_upkeep();
        let text = self.handle.render();
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Samples of a series must come in time order, whatever the clock does.
        let timestamp_ms = now.max(q.last_timestamp_ms + 1);
        q.last_timestamp_ms = timestamp_ms;
        let snapshot =
            Snapshot::from_text(&text, timestamp_ms, &self.extra_labels, &self.up_labels);
        q.waiting.push_back(snapshot);
        while q.waiting.len() > self.queue_size {
            if let Some(dropped) = q.waiting.pop_front() {
                count_dropped("queue_full", dropped.series.len());
            }
        }
        set_queue_gauge(&q);
        drop(q);
        self.queued.notify_one();
    }
}

async fn tick(shared: Arc<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        shared.snapshot();
    }
}

async fn send(
    shared: Arc<Shared>,
    client: PushClient,
    retry: crate::config::model::telemetry::RetryPolicy,
) {
    let headers = headers();
    loop {
        let queued = shared.queued.notified();
        let batch: Vec<Snapshot> = {
            let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let n = q.waiting.len().min(MAX_SNAPSHOTS_PER_REQUEST);
            let batch = q.waiting.drain(..n).collect();
            q.in_flight = n > 0;
            set_queue_gauge(&q);
            batch
        };
        if batch.is_empty() {
            shared.idle.notify_waiters();
            queued.await;
            continue;
        }
        let samples: usize = batch.iter().map(|s| s.series.len()).sum();
        let outcome = match encode(&write_request(&batch)) {
            Ok(body) => deliver(&client, &headers, body, retry, SINK).await,
            Err(e) => Delivery::Rejected(format!("snappy: {e}")),
        };
        match outcome {
            Delivery::Sent => {
                metrics::counter!("tailgate_telemetry_sent_total", "sink" => SINK)
                    .increment(samples as u64);
            }
            Delivery::Rejected(why) => {
                tracing::error!("remote_write: endpoint refused {samples} samples: {why}");
                count_dropped("rejected", samples);
            }
            Delivery::GaveUp(why) => {
                tracing::error!("remote_write: dropping {samples} samples after retries: {why}");
                count_dropped("retries_exhausted", samples);
            }
        }
        shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_flight = false;
    }
}

fn count_dropped(reason: &'static str, samples: usize) {
    metrics::counter!("tailgate_telemetry_dropped_total", "sink" => SINK, "reason" => reason)
        .increment(samples as u64);
}

fn set_queue_gauge(q: &SnapshotQueue) {
    metrics::gauge!("tailgate_telemetry_queue_length", "sink" => SINK)
        .set(q.queued_samples() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(labels: &[Label]) -> Vec<(&str, &str)> {
        labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn snapshot_sorts_labels_sets_name_and_adds_up() {
        let text = "# TYPE r counter\nr{status=\"200\",host=\"a\",instance=\"mine\"} 4\n";
        let extra = pairs(&[("job", "tailgate"), ("instance", "default")]);
        let up = pairs(&[("job", "tailgate"), ("instance", "default")]);
        let s = Snapshot::from_text(text, 1000, &extra, &up);
        assert_eq!(s.series.len(), 2);
        assert_eq!(
            names(&s.series[0].0),
            vec![
                ("__name__", "r"),
                ("host", "a"),
                ("instance", "mine"),
                ("job", "tailgate"),
                ("status", "200")
            ]
        );
        assert_eq!(s.series[0].1, 4.0);
        assert_eq!(
            names(&s.series[1].0),
            vec![
                ("__name__", "up"),
                ("instance", "default"),
                ("job", "tailgate")
            ]
        );
        assert_eq!(s.series[1].1, 1.0);
    }

    #[test]
    fn merged_snapshots_keep_samples_in_time_order_per_series() {
        let a = Snapshot::from_text("x 1\ny 5\n", 1000, &[], &[]);
        let b = Snapshot::from_text("x 2\n", 2000, &[], &[]);
        let req = write_request(&[a, b]);
        let x = req
            .timeseries
            .iter()
            .find(|t| t.labels[0].value == "x")
            .unwrap();
        assert_eq!(
            x.samples,
            vec![
                Sample {
                    value: 1.0,
                    timestamp: 1000
                },
                Sample {
                    value: 2.0,
                    timestamp: 2000
                }
            ]
        );
        let y = req
            .timeseries
            .iter()
            .find(|t| t.labels[0].value == "y")
            .unwrap();
        assert_eq!(y.samples.len(), 1);
        assert_eq!(req.timeseries.len(), 3, "x, y and up");
    }

    #[test]
    fn the_body_is_snappy_block_protobuf() {
        let req = write_request(&[Snapshot::from_text("x{a=\"b\"} 1.5\n", 42, &[], &[])]);
        let body = encode(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back: WriteRequest = prost::Message::decode(raw.as_slice()).unwrap();
        assert_eq!(back, req);
    }
}
