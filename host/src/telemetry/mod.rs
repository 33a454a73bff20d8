//! Telemetry, beside the request path: the process-wide metrics recorder
//! (everything `metrics::*!` records, rendered as Prometheus text for the
//! admin listener's `/metrics`), the Prometheus remote_write pusher, and the
//! Loki pusher fed by the access log. Started once by `tailgate run` before
//! the plugins are configured (their metric handles are registered then),
//! flushed at shutdown. Requests only record metrics and queue log lines;
//! they never wait on a push.
//!
//! `[telemetry]` is read at start-up only: a config reload does not change it.

pub mod exposition;
pub mod loki;
pub mod metrics_endpoint;
pub mod push_client;
pub mod recorder;
pub mod remote_write;
pub mod retry;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use self::loki::{LokiPusher, LokiSink};
use self::remote_write::RemoteWritePusher;
use crate::config::model::telemetry::{EnvText, TelemetryConfig, UnsetVariable};

/// The default `job` label of `up`, pushed series and Loki streams.
pub const DEFAULT_JOB: &str = "tailgate";
/// Content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();
static LOKI: OnceLock<LokiSink> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("installing the metrics recorder: {0}")]
    Recorder(String),
    #[error("{what}: {source}")]
    Env {
        what: &'static str,
        #[source]
        source: UnsetVariable,
    },
    #[error("{what}: not a valid HTTP header value")]
    Credentials { what: &'static str },
    #[error("{what}: TLS setup: {reason}")]
    Tls { what: &'static str, reason: String },
}

/// The running telemetry: keep it until shutdown, then [`Telemetry::shutdown`].
pub struct Telemetry {
    remote_write: Option<RemoteWritePusher>,
    loki: Option<LokiPusher>,
    upkeep: JoinHandle<()>,
}

impl Telemetry {
    /// Install the metrics recorder (process-wide, once) and start the
    /// configured pushers on the current tokio runtime.
    pub fn start(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        let constant = expand_labels(&config.labels, "telemetry.labels");
        let (recorder, handle) = recorder::build(&config.metrics_prefix, &constant)
            .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
        metrics::set_global_recorder(recorder)
            .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
        let _ = METRICS.set(handle.clone());

        let instance = constant
            .iter()
            .find(|(name, _)| name == "instance")
            .map_or_else(host_name, |(_, value)| value.clone());
        let scrape_labels = vec![
            ("instance".to_owned(), instance.clone()),
            ("job".to_owned(), DEFAULT_JOB.to_owned()),
        ];
        let remote_write = config
            .remote_write
            .as_ref()
            .map(|rw| {
                let mut up = constant.clone();
                for (name, value) in &scrape_labels {
                    if !up.iter().any(|(n, _)| n == name) {
                        up.push((name.clone(), value.clone()));
                    }
                }
                RemoteWritePusher::start(rw, handle.clone(), scrape_labels.clone(), up)
            })
            .transpose()?;
        let loki = config
            .loki
            .as_ref()
            .map(|loki| {
                let labels = if loki.labels.is_empty() {
                    scrape_labels.clone()
                } else {
                    expand_labels(&loki.labels, "telemetry.loki.labels")
                };
                LokiPusher::start(loki, labels)
            })
            .transpose()?;
        if let Some(loki) = &loki {
            let _ = LOKI.set(loki.sink());
        }
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
        tracing::info!(
            prefix = %config.metrics_prefix,
            remote_write = config.remote_write.is_some(),
            loki = config.loki.is_some(),
            "telemetry started"
        );
        Ok(Telemetry {
            remote_write,
            loki,
            upkeep,
        })
    }

    /// Push what is still queued (a last metrics snapshot and every buffered
    /// log line), waiting at most `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let rw = async {
            if let Some(rw) = self.remote_write {
                rw.flush(deadline).await;
            }
        };
        let loki = async {
            if let Some(loki) = self.loki {
                loki.flush(deadline).await;
            }
        };
        tokio::join!(rw, loki);
        self.upkeep.abort();
    }
}

/// The Prometheus text of every metric, or `None` before [`Telemetry::start`].
pub fn render_metrics() -> Option<String> {
    METRICS.get().map(|handle| {
        handle.run_upkeep();
        handle.render()
    })
}

/// The Loki sink, when `[telemetry.loki]` is configured and started.
pub fn loki_sink() -> Option<LokiSink> {
    LOKI.get().cloned()
}

/// Expand `${VAR}`s; a label whose variable is unset is left out (so
/// `region = "${FLY_REGION}"` works on Fly and off it).
fn expand_labels(
    labels: &std::collections::BTreeMap<String, EnvText>,
    what: &str,
) -> Vec<(String, String)> {
    labels
        .iter()
        .filter_map(|(name, value)| match value.expand() {
            Ok(v) if v.is_empty() => None,
            Ok(v) => Some((name.clone(), v)),
            Err(e) => {
                tracing::info!("{what}.{name}: {e}; the label is left out");
                None
            }
        })
        .collect()
}

/// This machine's name (the default `instance`), or `tailgate`.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_JOB.to_owned())
}
