//! The public listeners as a set that a reload can change: one accept loop
//! per configured address, plain (`server.listen`) and TLS (`[tls] listen`).
//! Addresses that stay keep their socket (no connection is dropped, none
//! refused) and take the new config's handshake for the connections they
//! accept next (PROXY header on or off, new certificates); new addresses
//! are bound before the config swap (a bind failure rejects the reload);
//! removed ones stop accepting while their open connections finish.
//!
//! A reload is two steps: [`ListenerSet::prepare`] does everything that can
//! fail (load the `[tls]` certificates when they changed, bind the new
//! addresses) without touching what runs; [`ListenerSet::commit`] cannot
//! fail and switches over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::handshake::ConnectionHandshake;
use super::{ConnectionServer, ServerError};
use crate::config::model::tls::CertificatePair;
use crate::config::model::{Config, TlsConfig};
use crate::tls::TlsTermination;

/// A configured address and which occurrence of it this is (`:0` may be
/// listed more than once: each is its own listener). Counted over the plain
/// addresses, then the TLS ones.
type ListenKey = (SocketAddr, usize);

/// One listener a config asks for.
#[derive(Clone)]
struct ListenSpec {
    addr: SocketAddr,
    handshake: ConnectionHandshake,
}

/// The keys of `wanted`, in order.
fn keys_of(wanted: &[SocketAddr]) -> Vec<ListenKey> {
    wanted
        .iter()
        .enumerate()
        .map(|(i, addr)| (*addr, wanted[..i].iter().filter(|a| *a == addr).count()))
        .collect()
}

/// The running TLS termination and the settings it was built from.
struct RunningTls {
    certificates: Vec<CertificatePair>,
    watch: bool,
    termination: TlsTermination,
}

impl RunningTls {
    fn serves(&self, config: &TlsConfig) -> bool {
        self.certificates == config.certificates && self.watch == config.watch
    }
}

/// What [`ListenerSet::prepare`] made ready for [`ListenerSet::commit`].
pub struct PreparedListeners {
    specs: Vec<ListenSpec>,
    bound: Vec<BoundListener>,
    tls: Option<Arc<RunningTls>>,
    /// The certificates were loaded anew (first start or `[tls]` changed).
    tls_reloaded: bool,
}

impl PreparedListeners {
    /// The `[tls]` certificates were loaded anew (they changed).
    pub fn tls_reloaded(&self) -> bool {
        self.tls_reloaded
    }
}

/// A listener bound for a reload, not yet accepting.
struct BoundListener {
    key: ListenKey,
    local: SocketAddr,
    listener: TcpListener,
}

/// Listeners with their accept loops, keyed by configured address.
pub struct ListenerSet {
    server: ConnectionServer,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: BTreeMap<ListenKey, RunningListener>,
    tls: Option<Arc<RunningTls>>,
}

struct RunningListener {
    local: SocketAddr,
    handshake: Arc<ArcSwap<ConnectionHandshake>>,
    accept_loop: JoinHandle<()>,
}

/// What [`ListenerSet::commit`] changed (local addresses).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListenerChanges {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
    /// Kept listeners whose handshake changed (PROXY protocol, scheme, or
    /// new `[tls]` certificates).
    pub reconfigured: Vec<SocketAddr>,
}

impl ListenerSet {
    pub fn new(server: ConnectionServer) -> Self {
        ListenerSet {
            server,
            state: Mutex::new(State::default()),
        }
    }

    /// Everything `config`'s listeners need that can fail: the `[tls]`
    /// certificates (loaded again only when `[tls]` changed) and a socket
    /// for every address not served yet. Nothing running changes.
    pub async fn prepare(&self, config: &Config) -> Result<PreparedListeners, ServerError> {
        let running_tls = self.lock().tls.clone();
        let (tls, tls_reloaded) = match &config.tls {
            None => (None, false),
            Some(wanted) => match running_tls.filter(|run| run.serves(wanted)) {
                Some(run) => (Some(run), false),
                None => (
                    Some(Arc::new(RunningTls {
                        certificates: wanted.certificates.clone(),
                        watch: wanted.watch,
                        termination: TlsTermination::start(wanted)?,
                    })),
                    true,
                ),
            },
        };
        let mut specs: Vec<ListenSpec> = config
            .server
            .listen
            .iter()
            .map(|&addr| ListenSpec {
                addr,
                handshake: ConnectionHandshake::plain(config.server.proxy_protocol),
            })
            .collect();
        if let (Some(wanted), Some(run)) = (&config.tls, &tls) {
            specs.extend(wanted.listen.iter().map(|&addr| ListenSpec {
                addr,
                handshake: ConnectionHandshake::tls(
                    run.termination.acceptor.clone(),
                    wanted.proxy_protocol,
                ),
            }));
        }
        let bound = self.bind_missing(&specs).await?;
        Ok(PreparedListeners {
            specs,
            bound,
            tls,
            tls_reloaded,
        })
    }

    /// Bind every address of `specs` that is not served yet.
    async fn bind_missing(&self, specs: &[ListenSpec]) -> Result<Vec<BoundListener>, ServerError> {
        let addrs: Vec<SocketAddr> = specs.iter().map(|s| s.addr).collect();
        let missing: Vec<ListenKey> = {
            let state = self.lock();
            keys_of(&addrs)
                .into_iter()
                .filter(|key| !state.running.contains_key(key))
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

    /// Start accepting on the new addresses, give the kept ones their new
    /// handshake, and stop accepting on every address no longer wanted.
    /// Prints `listening on http://ADDR` (or `https://`) for each new
    /// listener. Returns once the removed listeners' sockets are closed.
    pub async fn commit(&self, prepared: PreparedListeners) -> ListenerChanges {
        let mut changes = ListenerChanges::default();
        let stopped = self.switch_over(prepared, &mut changes);
        for accept_loop in stopped {
            let _ = accept_loop.await;
        }
        changes
    }

    /// The synchronous part of [`commit`](Self::commit): returns the aborted
    /// accept loops.
    fn switch_over(
        &self,
        prepared: PreparedListeners,
        changes: &mut ListenerChanges,
    ) -> Vec<JoinHandle<()>> {
        let PreparedListeners {
            specs,
            bound,
            tls,
            tls_reloaded,
        } = prepared;
        let addrs: Vec<SocketAddr> = specs.iter().map(|s| s.addr).collect();
        let wanted: Vec<(ListenKey, ListenSpec)> = keys_of(&addrs).into_iter().zip(specs).collect();
        let mut stopped = Vec::new();
        let mut state = self.lock();
        state.tls = tls;
        let removed: Vec<ListenKey> = state
            .running
            .keys()
            .filter(|key| !wanted.iter().any(|(k, _)| k == *key))
            .copied()
            .collect();
        for key in removed {
            if let Some(listener) = state.running.remove(&key) {
                listener.accept_loop.abort();
                tracing::info!(local = %listener.local, "stopped listening");
                changes.removed.push(listener.local);
                stopped.push(listener.accept_loop);
            }
        }
        for (key, spec) in &wanted {
            if let Some(running) = state.running.get(key) {
                let old = running.handshake.load();
                let same = old.proxy_protocol() == spec.handshake.proxy_protocol()
                    && old.scheme() == spec.handshake.scheme()
                    && !(tls_reloaded && spec.handshake.scheme() == "https");
                if !same {
                    tracing::info!(local = %running.local, scheme = spec.handshake.scheme(), "listener reconfigured");
                    changes.reconfigured.push(running.local);
                }
                running.handshake.store(Arc::new(spec.handshake.clone()));
            }
        }
        for b in bound {
            let Some((_, spec)) = wanted.iter().find(|(k, _)| *k == b.key) else {
                continue;
            };
            let scheme = spec.handshake.scheme();
            eprintln!("listening on {scheme}://{}", b.local);
            tracing::info!(local = %b.local, scheme, "listening");
            let handshake = Arc::new(ArcSwap::from_pointee(spec.handshake.clone()));
            let accept_loop = tokio::spawn(
                self.server
                    .clone()
                    .accept_loop(b.listener, handshake.clone()),
            );
            changes.added.push(b.local);
            if let Some(old) = state.running.insert(
                b.key,
                RunningListener {
                    local: b.local,
                    handshake,
                    accept_loop,
                },
            ) {
                old.accept_loop.abort();
                stopped.push(old.accept_loop);
            }
        }
        stopped
    }

    /// Local addresses being served now, with their scheme.
    pub fn local_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.lock()
            .running
            .values()
            .map(|l| (l.handshake.load().scheme(), l.local))
            .collect()
    }

    /// Stop accepting everywhere (new connections are refused) and wait
    /// until every listening socket is closed.
    pub async fn close_all(&self) {
        let loops: Vec<JoinHandle<()>> = {
            let mut state = self.lock();
            std::mem::take(&mut state.running)
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the map consistent (each
        // change is one insert or remove), so a poisoned lock is still usable.
        self.state
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
