//! The public listeners as a set that a reload can change: one accept loop
//! per configured `server.listen` address. Addresses that stay keep their
//! socket (no connection is dropped, none refused); new ones are bound
//! before the config swap (a bind failure rejects the reload); removed ones
//! stop accepting while their open connections finish.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{ConnectionServer, ServerError};

/// A listener bound for a reload, not yet accepting.
pub struct BoundListener {
    /// The address as configured (may have port 0).
    pub configured: SocketAddr,
    pub local: SocketAddr,
    listener: TcpListener,
}

/// Listeners with their accept loops, keyed by configured address.
pub struct ListenerSet {
    server: ConnectionServer,
    running: Mutex<BTreeMap<SocketAddr, RunningListener>>,
}

struct RunningListener {
    local: SocketAddr,
    accept_loop: JoinHandle<()>,
}

/// What [`ListenerSet::apply`] changed (local addresses).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListenerChanges {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
}

impl ListenerSet {
    pub fn new(server: ConnectionServer) -> Self {
        ListenerSet {
            server,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// Bind every address of `wanted` that is not served yet.
    pub async fn bind_missing(
        &self,
        wanted: &[SocketAddr],
    ) -> Result<Vec<BoundListener>, ServerError> {
        let missing: Vec<SocketAddr> = {
            let running = self.lock();
            wanted
                .iter()
                .filter(|a| !running.contains_key(a))
                .copied()
                .collect()
        };
        let mut bound = Vec::with_capacity(missing.len());
        for addr in missing {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            bound.push(BoundListener {
                configured: addr,
                local,
                listener,
            });
        }
        Ok(bound)
    }

    /// Start accepting on `bound` and stop accepting on every running
    /// address not in `wanted`. Prints `listening on http://ADDR` for each
    /// new listener.
    pub fn apply(&self, wanted: &[SocketAddr], bound: Vec<BoundListener>) -> ListenerChanges {
        let mut changes = ListenerChanges::default();
        let mut running = self.lock();
        running.retain(|addr, listener| {
            let keep = wanted.contains(addr);
            if !keep {
                listener.accept_loop.abort();
                tracing::info!(local = %listener.local, "stopped listening");
                changes.removed.push(listener.local);
            }
            keep
        });
        for b in bound {
            eprintln!("listening on http://{}", b.local);
            tracing::info!(local = %b.local, "listening");
            let accept_loop = tokio::spawn(self.server.clone().accept_loop(b.listener));
            changes.added.push(b.local);
            if let Some(old) = running.insert(
                b.configured,
                RunningListener {
                    local: b.local,
                    accept_loop,
                },
            ) {
                old.accept_loop.abort();
            }
        }
        changes
    }

    /// Local addresses being served now.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.lock().values().map(|l| l.local).collect()
    }

    /// Stop accepting everywhere (new connections are refused) and wait
    /// until every listening socket is closed.
    pub async fn close_all(&self) {
        let loops: Vec<JoinHandle<()>> = {
            let mut running = self.lock();
            std::mem::take(&mut *running)
                .into_values()
                .map(|l| {
                    l.accept_loop.abort();
                    l.accept_loop
                })
                .collect()
        };
        for accept_loop in loops {
            let _ = accept_loop.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, RunningListener>> {
        // A panic while holding the lock leaves the map consistent (each
        // change is one insert or remove), so a poisoned lock is still usable.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
