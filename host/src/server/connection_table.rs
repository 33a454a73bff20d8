//! Every open client connection, from accept to close: what state each one
//! is in (waiting for its first request, serving, idle between requests,
//! blocked writing) and the process's connection limit. At the accept, a
//! listener registers the new connection here; when the table is over
//! `server.max_connections`, the connections idle longest (no request in
//! flight: keep-alive connections between requests and silent ones) are
//! told to close, as nginx reuses its idle keep-alive connections, so new
//! clients keep being served. The timeouts that read this state are in
//! `super::timeouts`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::signal::Signal;
use tokio::time::Instant;

/// `write_blocked_ms` when no write is waiting.
const NOT_BLOCKED: u64 = u64::MAX;
/// File descriptors kept out of the derived connection limit for listeners,
/// log and cache files, plugin files and the admin API.
const RESERVED_FDS: u64 = 64;

/// The default `server.max_connections`: half of the file descriptors the
/// process may open (Tailgate raises its soft limit to the hard limit at
/// start, [`raise_fd_limit`]): every proxied request may hold an upstream
/// connection beside its client connection, as nginx counts both against
/// `worker_connections`.
pub fn default_max_connections() -> usize {
    match rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        Some(limit) => usize::try_from(limit.saturating_sub(RESERVED_FDS) / 2)
            .unwrap_or(usize::MAX)
            .max(1),
        None => usize::MAX,
    }
}

/// Raise the soft file-descriptor limit to the hard limit (what nginx's
/// `worker_rlimit_nofile` is for); returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("raising the open file limit to its hard limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// What one connection is doing, shared by its IO wrapper, its request
/// guards, its timeouts and the table. Times are milliseconds since `opened`.
pub struct ConnectionState {
    id: u64,
    opened: Instant,
    /// Requests in the service, from the head until the response body ends.
    active: AtomicU32,
    /// Requests received on this connection.
    served: AtomicU64,
    /// When `active` last fell to zero.
    idle_since_ms: AtomicU64,
    /// When a byte arrived with no request in flight (a head begins);
    /// `NOT_BLOCKED` when none did since the last request.
    head_started_ms: AtomicU64,
    /// When a write first returned `Pending` with nothing written since.
    write_blocked_ms: AtomicU64,
    http2: AtomicBool,
    /// Upgraded (101): a tunnel now, never idle, never shed.
    tunnel: AtomicBool,
    /// hyper is being asked to let go of an idle HTTP/1 connection
    /// (`super::parking`): its shutdown of the socket is not passed on.
    parking: AtomicBool,
    /// Wakes the timeouts when a deadline may have moved earlier.
    pub(super) changed: Signal,
    /// Raised when the table asks this connection to close.
    pub(super) shed: Signal,
}

impl ConnectionState {
    fn new(id: u64) -> Self {
        ConnectionState {
            id,
            opened: Instant::now(),
            active: AtomicU32::new(0),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NOT_BLOCKED),
            write_blocked_ms: AtomicU64::new(NOT_BLOCKED),
            http2: AtomicBool::new(false),
            tunnel: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            changed: Signal::default(),
            shed: Signal::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    pub(super) fn at(&self, ms: u64) -> Instant {
        self.opened + std::time::Duration::from_millis(ms)
    }

    /// A request reached the service; the guard ends it when dropped (with
    /// the response body, or with the request's future when it is dropped).
    pub fn request_started(self: &Arc<Self>, http2: bool) -> ActiveRequest {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(NOT_BLOCKED, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    /// The connection switched protocols: a tunnel from now on.
    pub fn upgraded(&self) {
        self.tunnel.store(true, Ordering::Release);
    }

    /// Requests received on this connection so far.
    pub(super) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub(super) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
    }

    pub(super) fn parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// Bytes were read from the client.
    pub(super) fn read_some(&self) {
        if self.active.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == NOT_BLOCKED
        {
            self.head_started_ms.store(self.now_ms(), Ordering::Relaxed);
            self.changed.raise();
        }
    }

    /// A write returned `Pending`: the client is not reading.
    pub(super) fn write_blocked(&self) {
        if self.write_blocked_ms.load(Ordering::Relaxed) == NOT_BLOCKED {
            self.write_blocked_ms
                .store(self.now_ms(), Ordering::Relaxed);
            self.changed.raise();
        }
    }

    /// A write made progress.
    pub(super) fn wrote_some(&self) {
        if self.write_blocked_ms.load(Ordering::Relaxed) != NOT_BLOCKED {
            self.write_blocked_ms.store(NOT_BLOCKED, Ordering::Relaxed);
        }
    }

    pub(super) fn snapshot(&self) -> StateSnapshot {
        let optional = |v: u64| (v != NOT_BLOCKED).then_some(v);
        StateSnapshot {
            active: self.active.load(Ordering::Acquire),
            served: self.served.load(Ordering::Relaxed),
            idle_since_ms: self.idle_since_ms.load(Ordering::Relaxed),
            head_started_ms: optional(self.head_started_ms.load(Ordering::Relaxed)),
            write_blocked_ms: optional(self.write_blocked_ms.load(Ordering::Relaxed)),
            http2: self.http2.load(Ordering::Relaxed),
            tunnel: self.tunnel.load(Ordering::Acquire),
        }
    }
}

/// One reading of a connection's state.
#[derive(Debug, Clone, Copy)]
pub(super) struct StateSnapshot {
    pub active: u32,
    pub served: u64,
    pub idle_since_ms: u64,
    pub head_started_ms: Option<u64>,
    pub write_blocked_ms: Option<u64>,
    pub http2: bool,
    pub tunnel: bool,
}

/// A request in flight on a connection; dropping it ends the request.
pub struct ActiveRequest(Arc<ConnectionState>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let state = &self.0;
        if state.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.idle_since_ms.store(state.now_ms(), Ordering::Relaxed);
        }
    }
}

/// The open client connections of the process, across listeners.
#[derive(Default)]
pub struct ConnectionTable {
    next_id: AtomicU64,
    open: AtomicUsize,
    connections: Mutex<HashMap<u64, Arc<ConnectionState>>>,
}

/// A connection's place in the table; dropping it removes the connection.
pub struct Registration {
    table: Arc<ConnectionTable>,
    pub state: Arc<ConnectionState>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut connections) = self.table.connections.lock() {
            connections.remove(&self.state.id);
        }
        self.table.open.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("tailgate_active_connections").decrement(1.0);
    }
}

impl ConnectionTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Open connections now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Register a connection just accepted. Over `max`, the connections
    /// idle longest are shed to make room; when none is idle, `None`: the
    /// new connection is refused (closed at once) and counted.
    pub fn register(self: &Arc<Self>, max: usize) -> Option<Registration> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState::new(id));
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("tailgate_active_connections").increment(1.0);
        let registration = Registration {
            table: self.clone(),
            state: state.clone(),
        };
        if open > max && self.shed_idle(open - max) == 0 {
            metrics::counter!("tailgate_connections_refused_total").increment(1);
            return None;
        }
        if let Ok(mut connections) = self.connections.lock() {
            connections.insert(id, state);
        }
        Some(registration)
    }

    /// Ask the `count` connections idle longest to close; returns how many
    /// were asked. A shed connection leaves the table when it has closed.
    fn shed_idle(&self, count: usize) -> usize {
        let Ok(connections) = self.connections.lock() else {
            return 0;
        };
        let mut idle: Vec<(Instant, &Arc<ConnectionState>)> = connections
            .values()
            .filter_map(|state| {
                let now = state.snapshot();
                (now.active == 0 && !now.tunnel && now.write_blocked_ms.is_none())
                    .then(|| (state.at(now.idle_since_ms), state))
            })
            .collect();
        let count = count.min(idle.len());
        if count == 0 {
            return 0;
        }
        idle.select_nth_unstable_by_key(count - 1, |(since, _)| *since);
        for (_, state) in &idle[..count] {
            state.shed.raise();
        }
        metrics::counter!("tailgate_connections_shed_total").increment(count as u64);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_the_limit_the_longest_idle_is_shed_and_a_busy_one_never() {
        let table = ConnectionTable::new();
        let oldest = table.register(2).expect("room");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let busy = table.register(2).expect("room");
        let _request = busy.state.request_started(false);
        // Full: the third connection sheds the idle one, not the busy one.
        let third = table.register(2).expect("room after shedding");
        assert!(
            tokio::time::timeout(std::time::Duration::ZERO, oldest.state.shed.wait())
                .await
                .is_ok(),
            "the idle connection was told to close"
        );
        drop(oldest);
        assert_eq!(table.open(), 2);
        // Only busy connections and the newest: a fourth is refused.
        let _third_request = third.state.request_started(false);
        assert!(table.register(2).is_none());
        assert_eq!(table.open(), 2);
    }

    #[tokio::test]
    async fn an_upgraded_connection_is_never_shed() {
        let table = ConnectionTable::new();
        let tunnel = table.register(1).expect("room");
        drop(tunnel.state.request_started(false));
        tunnel.state.upgraded();
        assert!(table.register(1).is_none(), "the tunnel was shed");
        assert_eq!(table.open(), 1);
    }

    #[test]
    fn the_default_limit_follows_the_descriptor_limit() {
        let limit = raise_fd_limit().expect("a limit");
        let max = default_max_connections();
        assert!(max >= 1 && (max as u64) <= limit, "{max} of {limit}");
    }
}
