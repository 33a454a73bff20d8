//! The shared state backend (`[state] backend = "redis"`): a pool of Redis
//! connection managers that the state host imports and the admin API's ban
//! endpoints consult, so several Tailgate machines share rate limits, counters
//! and bans. Part of [`super::SharedState`]; the operations themselves (Lua
//! scripts, key layout) are in [`ops`], the `sync` mode's interval task in
//! [`sync`].
//!
//! Redis is never allowed to fail a request: every call has the configured
//! `timeout`, and an error or a timeout marks the backend down. While it is
//! down calls are not even tried (the caller decides on local state at once);
//! a probe pings every [`PROBE_INTERVAL`] and marks it up again when Redis
//! answers (the connection manager reconnects by itself). The transition is
//! logged once per outage, and shown by `tailgate_state_backend_up` {backend},
//! `tailgate_state_backend_errors_total` {backend} and [`BackendHealth`].

pub(crate) mod ops;
pub(crate) mod sync;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How often a down backend is pinged.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How decisions are made with a shared backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Each decision is made in Redis (one round trip per state call).
    Exact,
    /// Decisions are local; every interval, deltas are pushed to Redis and
    /// the other machines' counts pulled (Kong's `sync_rate`).
    Sync(Duration),
}

/// `[state] backend = "redis"`, as the runtime takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS), credentials already expanded.
    pub url: String,
    /// Put before every key this runtime writes (`tailgate:`).
    pub key_prefix: String,
    /// The longest any one Redis call may take before local state decides.
    pub timeout: Duration,
    /// Connections (each multiplexed) used round robin.
    pub pool_size: usize,
    pub consistency: Consistency,
}

/// Why the shared backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("[state] url: {0}")]
    Url(#[source] redis::RedisError),
}

/// What `/healthz` says about the shared backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    /// `redis`.
    pub backend: &'static str,
    /// `exact` or `sync`.
    pub mode: &'static str,
    pub up: bool,
    /// Errors and timeouts since start.
    pub errors: u64,
}

/// The connections and the backend's health.
pub(crate) struct RedisState {
    client: redis::Client,
    pool: Vec<OnceLock<ConnectionManager>>,
    next: AtomicUsize,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) consistency: Consistency,
    up: AtomicBool,
    probing: AtomicBool,
    errors: AtomicU64,
    up_gauge: metrics::Gauge,
    errors_total: metrics::Counter,
    /// Makes window event members unique across machines.
    pub(crate) instance_id: u64,
    pub(crate) sequence: AtomicU64,
    /// What the `sync` mode's next round pushes.
    pub(crate) queue: sync::SyncQueue,
}

impl RedisState {
    pub(crate) fn new(config: &RedisConfig) -> Result<Arc<Self>, BackendError> {
        let client = redis::Client::open(config.url.as_str()).map_err(BackendError::Url)?;
        let up_gauge = metrics::gauge!("tailgate_state_backend_up", "backend" => "redis");
        up_gauge.set(1.0);
        let pool = (0..config.pool_size.max(1))
            .map(|_| OnceLock::new())
            .collect();
        let instance_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        Ok(Arc::new(RedisState {
            client,
            pool,
            next: AtomicUsize::new(0),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            consistency: config.consistency,
            up: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            up_gauge,
            errors_total: metrics::counter!(
                "tailgate_state_backend_errors_total",
                "backend" => "redis"
            ),
            instance_id,
            sequence: AtomicU64::new(0),
            queue: sync::SyncQueue::default(),
        }))
    }

    /// A connection (round robin over the pool), created on first use.
    /// Must be called inside the Tokio runtime.
    fn connection(self: &Arc<Self>) -> Option<ConnectionManager> {
        let slot = &self.pool[self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len()];
        if let Some(conn) = slot.get() {
            return Some(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_INTERVAL);
        match self.client.get_connection_manager_lazy(config) {
            Ok(conn) => Some(slot.get_or_init(|| conn).clone()),
            Err(e) => {
                self.failed(&e.to_string());
                None
            }
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn health(&self) -> BackendHealth {
        BackendHealth {
            backend: "redis",
            mode: match self.consistency {
                Consistency::Exact => "exact",
                Consistency::Sync(_) => "sync",
            },
            up: self.is_up(),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Runs `call` on a connection within the timeout. `None` when the
    /// backend is down, failed or was too slow: the caller decides locally.
    pub(crate) async fn run<T, F, Fut>(self: &Arc<Self>, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        self.try_run(call).await
    }

    /// [`Self::run`] even while the backend is marked down (the probe, the
    /// sync task).
    pub(crate) async fn try_run<T, F, Fut>(self: &Arc<Self>, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection()?;
        match tokio::time::timeout(self.timeout, call(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) if is_script_error(&e) => {
                // A bug of ours, not an outage: say so, decide locally.
                tracing::error!(error = %e, "state backend: script error");
                self.count_error();
                None
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed(&format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.errors_total.increment(1);
    }

    /// Marks the backend down (warning once per outage) and starts the probe.
    fn failed(self: &Arc<Self>, error: &str) {
        self.count_error();
        if self.up.swap(false, Ordering::AcqRel) {
            self.up_gauge.set(0.0);
            tracing::warn!(
                backend = "redis",
                %error,
                "state backend unreachable; deciding on this machine's state until it is back"
            );
        }
        if !self.probing.swap(true, Ordering::AcqRel) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(probe(self.clone()));
            } else {
                self.probing.store(false, Ordering::Release);
            }
        }
    }

    fn recovered(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.up_gauge.set(1.0);
            tracing::info!(backend = "redis", "state backend reachable again");
        }
    }
}

/// Pings a down backend until it answers.
async fn probe(state: Arc<RedisState>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let pong = state
            .try_run(
                |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
            )
            .await;
        if pong.is_some() {
            state.probing.store(false, Ordering::Release);
            state.recovered();
            return;
        }
    }
}

fn is_script_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
        && e.to_string().contains("script")
}
