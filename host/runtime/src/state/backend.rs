//! The shared state backend (`[state] backend = "redis"`): a pool of Redis
//! multiplexed connections that the state host imports and the admin API's ban
//! endpoints consult, so several Tailgate machines share rate limits, counters
//! and bans. Part of [`super::SharedState`]; the operations themselves (Lua
//! scripts, key layout) are in [`ops`], the `sync` mode's interval task in
//! [`sync`].
//!
//! Redis is never allowed to fail a request: every call has the configured
//! `timeout`, and an error or a timeout marks the backend down. While it is
//! down calls are not even tried (the caller decides on local state at once);
//! a probe pings every [`PROBE_INTERVAL`] and marks it up again when Redis
//! answers. A connection that failed or timed out is dropped and dialled
//! again on next use, in a task of its own (so a slow dial never holds a
//! request past `timeout`), within [`DIAL_TIMEOUT`] at least — through the
//! [`RedisDialer`] the host gives (the tailnet connector: `[tailnet]` mode,
//! `allow` list and identity check, as upstreams are dialled), or the
//! `redis` crate's own TCP/TLS when there is none. The transition is
//! logged once per outage, and shown by `tailgate_state_backend_up` {backend},
//! `tailgate_state_backend_errors_total` {backend} and [`BackendHealth`].

pub(crate) mod ban_ops;
pub(crate) mod kv_ops;
pub(crate) mod ops;
pub(crate) mod sync;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr};
use tokio::io::{AsyncRead, AsyncWrite};

/// How often a down backend is pinged.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The least time a dial (TCP, SOCKS5, TLS, `AUTH`) is given; it runs in
/// its own task, so callers still wait at most `timeout`.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// A byte stream to Redis, as a [`RedisDialer`] opens it.
pub trait RedisIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> RedisIo for T {}

/// What [`RedisDialer::dial`] returns.
pub type RedisDial = Pin<Box<dyn Future<Output = io::Result<Box<dyn RedisIo>>> + Send>>;

/// Opens the connections to Redis (the host's tailnet connector). The
/// runtime then speaks RESP over the stream (`AUTH`, `SELECT` from the url).
pub trait RedisDialer: Send + Sync + 'static {
    /// TCP to `host:port` (IPv6 without brackets) and, when `tls`
    /// (`rediss://`), the TLS handshake with `host` as the server name.
    fn dial(&self, host: &str, port: u16, tls: bool, timeout: Duration) -> RedisDial;
}

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
    #[error("[state] url: only redis:// and rediss:// are supported")]
    Scheme,
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

/// One connection of the pool: the live one (with its generation, so a
/// failure drops only the connection it happened on), and the lock dials
/// take turns on.
#[derive(Default)]
struct Slot {
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    dialing: tokio::sync::Mutex<Option<String>>,
    dials: AtomicU64,
}

/// The connections and the backend's health.
pub(crate) struct RedisState {
    client: redis::Client,
    dialer: Option<Arc<dyn RedisDialer>>,
    pool: Vec<Slot>,
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
    pub(crate) fn new(
        config: &RedisConfig,
        dialer: Option<Arc<dyn RedisDialer>>,
    ) -> Result<Arc<Self>, BackendError> {
        let client = redis::Client::open(config.url.as_str()).map_err(BackendError::Url)?;
        if !matches!(
            client.get_connection_info().addr(),
            ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. }
        ) {
            return Err(BackendError::Scheme);
        }
        let up_gauge = metrics::gauge!("tailgate_state_backend_up", "backend" => "redis");
        up_gauge.set(1.0);
        let pool = (0..config.pool_size.max(1))
            .map(|_| Slot::default())
            .collect();
        let instance_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        Ok(Arc::new(RedisState {
            client,
            dialer,
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

    /// A connection (round robin over the pool) and its slot and
    /// generation; dialled first when the slot has none. Must be called
    /// inside the Tokio runtime.
    async fn connection(self: &Arc<Self>) -> Result<(usize, u64, MultiplexedConnection), String> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        if let Some((generation, conn)) = self.live(index) {
            return Ok((index, generation, conn));
        }
        // In a task of its own: the caller's timeout does not cancel it.
        let state = self.clone();
        tokio::spawn(async move { state.dial_slot(index).await })
            .await
            .map_err(|e| e.to_string())?
            .map(|(generation, conn)| (index, generation, conn))
    }

    fn live(&self, index: usize) -> Option<(u64, MultiplexedConnection)> {
        let conn = self.pool[index]
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        conn.clone()
    }

    /// Dials slot `index`, one dial at a time; callers that waited on a
    /// dial that failed get its error rather than dialling again.
    async fn dial_slot(&self, index: usize) -> Result<(u64, MultiplexedConnection), String> {
        let slot = &self.pool[index];
        let seen = slot.dials.load(Ordering::Acquire);
        let mut last_error = slot.dialing.lock().await;
        if let Some(live) = self.live(index) {
            return Ok(live);
        }
        if slot.dials.load(Ordering::Acquire) != seen {
            if let Some(error) = last_error.as_ref() {
                return Err(error.clone());
            }
        }
        let dial_timeout = self.timeout.max(DIAL_TIMEOUT);
        let result = match tokio::time::timeout(dial_timeout, self.open(dial_timeout)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("connecting: timed out after {dial_timeout:?}")),
        };
        let generation = slot.dials.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(conn) => {
                *last_error = None;
                *slot.conn.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((generation, conn.clone()));
                Ok((generation, conn))
            }
            Err(e) => {
                *last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// A new connection: through the host's dialer, or the `redis` crate's
    /// own TCP/TLS.
    async fn open(&self, dial_timeout: Duration) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(dial_timeout))
            .set_response_timeout(Some(self.timeout));
        let Some(dialer) = &self.dialer else {
            return self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| e.to_string());
        };
        let info = self.client.get_connection_info();
        let (host, port, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host, *port, false),
            ConnectionAddr::TcpTls { host, port, .. } => (host, *port, true),
            _ => return Err("only redis:// and rediss:// are supported".into()),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let stream = dialer
            .dial(host, port, tls, dial_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let (conn, driver) =
            MultiplexedConnection::new_with_config(info.redis_settings(), stream, config)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(driver);
        Ok(conn)
    }

    /// Drops the connection of slot `index` if it is still `generation`:
    /// the next call on the slot dials again.
    fn drop_connection(&self, index: usize, generation: u64) {
        let mut conn = self.pool[index]
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            *conn = None;
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
        F: FnOnce(MultiplexedConnection) -> Fut,
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
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let mut used = None;
        let answer = tokio::time::timeout(self.timeout, async {
            let (index, generation, conn) = self.connection().await.map_err(Err)?;
            used = Some((index, generation));
            call(conn).await.map_err(Ok)
        })
        .await;
        let drop_used = || {
            if let Some((index, generation)) = used {
                self.drop_connection(index, generation);
            }
        };
        match answer {
            Ok(Ok(value)) => Some(value),
            Ok(Err(Ok(e))) if is_script_error(&e) => {
                // A bug of ours, not an outage: say so, decide locally.
                tracing::error!(error = %e, "state backend: script error");
                self.count_error();
                None
            }
            Ok(Err(Ok(e))) => {
                drop_used();
                self.failed(&e.to_string());
                None
            }
            Ok(Err(Err(dial))) => {
                self.failed(&dial);
                None
            }
            Err(_) => {
                drop_used();
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
