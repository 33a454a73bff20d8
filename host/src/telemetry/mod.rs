//! Telemetry, beside the request path: the process-wide metrics recorder
//! (everything `metrics::*!` records, rendered as Prometheus text for the
//! admin listener's `/metrics`), the Prometheus remote_write pusher, and the
//! Loki pusher fed by the access log. Started once by `tailgate run` before
//! the plugins are configured (their metric handles are registered then),
//! flushed at shutdown. Requests only record metrics and queue log lines;
//! they never wait on a push.
//!
//! A config reload restarts the pushers whose section changed (see
//! [`Telemetry`]); the metric prefix and constant labels need a restart.

pub mod by_host;
pub mod exposition;
pub mod loki;
pub mod metrics_endpoint;
pub mod push_client;
pub mod recorder;
pub mod remote_write;
pub mod retry;

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::{JoinHandle, JoinSet};

use self::loki::{LokiPusher, LokiSink};
use self::remote_write::RemoteWritePusher;
use crate::config::model::telemetry::{
    EnvText, LokiConfig, RemoteWriteConfig, TelemetryConfig, UnsetVariable,
};

/// The default `job` label of `up`, pushed series and Loki streams.
pub const DEFAULT_JOB: &str = "tailgate";
/// Content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

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
///
/// A reload may change `[telemetry.remote_write]` and `[telemetry.loki]`:
/// [`prepare`](Telemetry::prepare) starts pushers for the sections that
/// changed (an error rejects the reload), [`commit`](Telemetry::commit)
/// puts them in service and flushes the replaced ones in the background. A
/// pusher whose section did not change keeps running, with its queue. The
/// metric prefix and the constant labels are part of the process-wide
/// recorder: they change only on restart.
pub struct Telemetry {
    handle: PrometheusHandle,
    /// `[telemetry.labels]` as expanded at start (the recorder's).
    constant: Vec<(String, String)>,
    /// `instance` and `job`, added to pushed series that lack them.
    scrape_labels: Vec<(String, String)>,
    started_with: TelemetryConfig,
    pushers: Mutex<Pushers>,
    /// Replaced pushers flushing their queues; awaited at shutdown.
    retiring: Mutex<JoinSet<()>>,
    upkeep: JoinHandle<()>,
}

/// The pushers in service, with the sections they were started from.
#[derive(Default)]
struct Pushers {
    remote_write: Option<(RemoteWriteConfig, RemoteWritePusher)>,
    loki: Option<(LokiConfig, LokiPusher)>,
}

/// What a reload changes in the pushers: `None` keeps the running one,
/// `Some(None)` stops it, `Some(Some(..))` replaces it.
pub struct TelemetryUpdate {
    remote_write: Replacement<RemoteWriteConfig, RemoteWritePusher>,
    loki: Replacement<LokiConfig, LokiPusher>,
    /// The Loki sink access-log lines go to once the update is committed.
    loki_sink: Option<LokiSink>,
}

impl TelemetryUpdate {
    /// True when the Loki pusher is replaced or stopped: the access log must
    /// be rebuilt on the new sink.
    pub fn loki_changed(&self) -> bool {
        self.loki.is_some()
    }

    /// The sink for access-log lines after the update.
    pub fn loki_sink(&self) -> Option<LokiSink> {
        self.loki_sink.clone()
    }

    /// The sections this update restarts (for the reload's log and answer).
    pub fn changed(&self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.remote_write.is_some() {
            changed.push("telemetry.remote_write");
        }
        if self.loki.is_some() {
            changed.push("telemetry.loki");
        }
        changed
    }
}

/// Time a replaced pusher has to send what it still holds.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let upkeep_handle = handle.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                upkeep_handle.run_upkeep();
            }
        });
        let telemetry = Telemetry {
            handle,
            constant,
            scrape_labels,
            started_with: config.clone(),
            pushers: Mutex::new(Pushers::default()),
            retiring: Mutex::new(JoinSet::new()),
            upkeep,
        };
        let update = telemetry.prepare(config)?;
        telemetry.commit(update);
        tracing::info!(
            prefix = %config.metrics_prefix,
            remote_write = config.remote_write.is_some(),
            loki = config.loki.is_some(),
            "telemetry started"
        );
        Ok(telemetry)
    }

    /// Start pushers for the sections of `next` that differ from the running
    /// ones. Nothing in service changes until [`commit`](Self::commit);
    /// dropping the update stops what it started.
    pub fn prepare(&self, next: &TelemetryConfig) -> Result<TelemetryUpdate, TelemetryError> {
        let pushers = self.lock_pushers();
        let remote_write = replacement(&pushers.remote_write, &next.remote_write, |rw| {
            self.start_remote_write(rw)
        })?;
        let loki = replacement(&pushers.loki, &next.loki, |loki| self.start_loki(loki))?;
        let loki_sink = match &loki {
            Some(replacement) => replacement.as_ref().map(|(_, p)| p.sink()),
            None => pushers.loki.as_ref().map(|(_, p)| p.sink()),
        };
        Ok(TelemetryUpdate {
            remote_write,
            loki,
            loki_sink,
        })
    }

    /// Put `update`'s pushers in service; the ones they replace send what
    /// they hold in the background (bounded), then stop.
    pub fn commit(&self, update: TelemetryUpdate) {
        let mut retired = Vec::new();
        {
            let mut pushers = self.lock_pushers();
            if let Some(rw) = update.remote_write {
                retired.extend(
                    std::mem::replace(&mut pushers.remote_write, rw).map(|(_, p)| Retired::Rw(p)),
                );
            }
            if let Some(loki) = update.loki {
                retired.extend(
                    std::mem::replace(&mut pushers.loki, loki).map(|(_, p)| Retired::Loki(p)),
                );
            }
        }
        let mut retiring = self.retiring.lock().unwrap_or_else(PoisonError::into_inner);
        for pusher in retired {
            retiring.spawn(pusher.flush(Instant::now() + RETIRE_TIMEOUT));
        }
    }

    /// Settings of `next` that only a restart applies.
    pub fn restart_only_changes(&self, next: &TelemetryConfig) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.started_with.metrics_prefix != next.metrics_prefix {
            keys.push("telemetry.metrics_prefix");
        }
        if self.started_with.labels != next.labels {
            keys.push("telemetry.labels");
        }
        keys
    }

    /// The Loki sink in service, if any.
    pub fn loki_sink(&self) -> Option<LokiSink> {
        self.lock_pushers().loki.as_ref().map(|(_, p)| p.sink())
    }

    /// Push what is still queued (a last metrics snapshot and every buffered
    /// log line), waiting at most `timeout`; replaced pushers still flushing
    /// are waited for too.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let Pushers { remote_write, loki } = std::mem::take(&mut *self.lock_pushers());
        let rw = async {
            if let Some((_, rw)) = remote_write {
                rw.flush(deadline).await;
            }
        };
        let loki = async {
            if let Some((_, loki)) = loki {
                loki.flush(deadline).await;
            }
        };
        let mut retiring =
            std::mem::take(&mut *self.retiring.lock().unwrap_or_else(PoisonError::into_inner));
        let retired = async {
            let _ = tokio::time::timeout_at(deadline.into(), async {
                while retiring.join_next().await.is_some() {}
            })
            .await;
        };
        tokio::join!(rw, loki, retired);
        self.upkeep.abort();
    }

    fn start_remote_write(
        &self,
        config: &RemoteWriteConfig,
    ) -> Result<RemoteWritePusher, TelemetryError> {
        let mut up = self.constant.clone();
        for (name, value) in &self.scrape_labels {
            if !up.iter().any(|(n, _)| n == name) {
                up.push((name.clone(), value.clone()));
            }
        }
        RemoteWritePusher::start(config, self.handle.clone(), self.scrape_labels.clone(), up)
    }

    fn start_loki(&self, config: &LokiConfig) -> Result<LokiPusher, TelemetryError> {
        let labels = if config.labels.is_empty() {
            self.scrape_labels.clone()
        } else {
            expand_labels(&config.labels, "telemetry.loki.labels")
        };
        LokiPusher::start(config, labels)
    }

    fn lock_pushers(&self) -> std::sync::MutexGuard<'_, Pushers> {
        self.pushers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a reload does to one pusher: `None` keeps the running one (its
/// section did not change), `Some(None)` stops it, `Some(Some(..))` is the
/// pusher `start` made for the new section.
type Replacement<C, P> = Option<Option<(C, P)>>;

fn replacement<C: Clone + PartialEq, P>(
    running: &Option<(C, P)>,
    next: &Option<C>,
    start: impl FnOnce(&C) -> Result<P, TelemetryError>,
) -> Result<Replacement<C, P>, TelemetryError> {
    if running.as_ref().map(|(config, _)| config) == next.as_ref() {
        return Ok(None);
    }
    let started = match next {
        Some(config) => Some((config.clone(), start(config)?)),
        None => None,
    };
    Ok(Some(started))
}

/// A pusher taken out of service by a reload.
enum Retired {
    Rw(RemoteWritePusher),
    Loki(LokiPusher),
}

impl Retired {
    async fn flush(self, deadline: Instant) {
        match self {
            Retired::Rw(p) => p.flush(deadline).await,
            Retired::Loki(p) => p.flush(deadline).await,
        }
    }
}

/// The Prometheus text of every metric, or `None` before [`Telemetry::start`].
pub fn render_metrics() -> Option<String> {
    METRICS.get().map(|handle| {
        handle.run_upkeep();
        handle.render()
    })
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
