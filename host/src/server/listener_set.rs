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

/// A configured address and which occurrence of it this is (`:0` may be
/// listed more than once: each is its own listener).
type ListenKey = (SocketAddr, usize);

/// The keys of `wanted`, in order.
fn keys_of(wanted: &[SocketAddr]) -> Vec<ListenKey> {
    wanted
        .iter()
        .enumerate()
        .map(|(i, addr)| (*addr, wanted[..i].iter().filter(|a| *a == addr).count()))
        .collect()
}

/// A listener bound for a reload, not yet accepting.
pub struct BoundListener {
    key: ListenKey,
    pub local: SocketAddr,
    listener: TcpListener,
}

/// Listeners with their accept loops, keyed by configured address.
pub struct ListenerSet {
    server: ConnectionServer,
    running: Mutex<BTreeMap<ListenKey, RunningListener>>,
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
        let missing: Vec<ListenKey> = {
            let running = self.lock();
            keys_of(wanted)
                .into_iter()
                .filter(|key| !running.contains_key(key))
                .collect()
        };
        let mut bound = Vec::with_capacity(missing.len());
        for key in missing {
            let addr = key.0;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            bound.push(BoundListener {
                key,
                local,
                listener,
            });
        }
        Ok(bound)
    }

    /// Start accepting on `bound` and stop accepting on every running
    /// address not in `wanted`. Prints `listening on http://ADDR` for each
    /// new listener. Returns once the removed listeners' sockets are closed.
    pub async fn apply(&self, wanted: &[SocketAddr], bound: Vec<BoundListener>) -> ListenerChanges {
        let mut changes = ListenerChanges::default();
        let stopped = self.start_and_stop(wanted, bound, &mut changes);
        for accept_loop in stopped {
            let _ = accept_loop.await;
        }
        changes
    }

    /// The synchronous part of [`apply`](Self::apply): returns the aborted
    /// accept loops.
    fn start_and_stop(
        &self,
        wanted: &[SocketAddr],
        bound: Vec<BoundListener>,
        changes: &mut ListenerChanges,
    ) -> Vec<JoinHandle<()>> {
        let wanted = keys_of(wanted);
        let mut stopped = Vec::new();
        let mut running = self.lock();
        let removed: Vec<ListenKey> = running
            .keys()
            .filter(|key| !wanted.contains(key))
            .copied()
            .collect();
        for key in removed {
            if let Some(listener) = running.remove(&key) {
                listener.accept_loop.abort();
                tracing::info!(local = %listener.local, "stopped listening");
                changes.removed.push(listener.local);
                stopped.push(listener.accept_loop);
            }
        }
        for b in bound {
            eprintln!("listening on http://{}", b.local);
            tracing::info!(local = %b.local, "listening");
            let accept_loop = tokio::spawn(self.server.clone().accept_loop(b.listener));
            changes.added.push(b.local);
            if let Some(old) = running.insert(
                b.key,
                RunningListener {
                    local: b.local,
                    accept_loop,
                },
            ) {
                old.accept_loop.abort();
                stopped.push(old.accept_loop);
            }
        }
        stopped
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

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ListenKey, RunningListener>> {
        // A panic while holding the lock leaves the map consistent (each
        // change is one insert or remove), so a poisoned lock is still usable.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_addresses_are_distinct_listeners() {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let fixed: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(
            keys_of(&[any, fixed, any]),
            vec![(any, 0), (fixed, 0), (any, 1)]
        );
    }
}
