//! The process's lifecycle around the server: serving -> draining -> done.
//! Shutdown (SIGTERM/SIGINT) flips the proxy into draining (`/healthz`
//! answers 503), cancels [`Lifecycle::shutdown_token`] for everything that
//! watches it (listeners, the admin API, the config watcher, pushers), waits
//! for in-flight requests and WebSocket tunnels, then runs the flush hooks
//! (telemetry queues) before the process exits.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type FlushFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type FlushHook = Box<dyn FnOnce() -> FlushFuture + Send>;

/// Shared view of the lifecycle. Cheap to clone.
#[derive(Clone, Default)]
pub struct Lifecycle {
    inner: Arc<LifecycleState>,
}

#[derive(Default)]
struct LifecycleState {
    draining: AtomicBool,
    shutdown: CancellationToken,
    connections: TaskTracker,
    tunnels: TaskTracker,
    flush_hooks: Mutex<Vec<(String, FlushHook)>>,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once shutdown began: health checks answer 503.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Start draining: health checks fail from now on and the shutdown token
    /// is cancelled. Idempotent.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
        self.inner.shutdown.cancel();
    }

    /// Cancelled when shutdown begins. Long-running tasks (pushers, watchers)
    /// select on `token.cancelled()` to stop.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Where accepted connections are served, so a drain can wait for them.
    pub fn connections(&self) -> &TaskTracker {
        &self.inner.connections
    }

    /// Where upgraded connections (WebSocket tunnels) run, so a drain waits
    /// for them too: hyper forgets a connection once it is upgraded.
    pub fn tunnels(&self) -> &TaskTracker {
        &self.inner.tunnels
    }

    /// Register `flush` to run once the drain is over (every request has
    /// been answered and logged), before the process exits: push what is
    /// still queued (Loki lines, Prometheus samples). Hooks run concurrently,
    /// all bounded by the same flush timeout.
    pub fn on_shutdown<F, Fut>(&self, name: impl Into<String>, flush: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: FlushHook = Box::new(move || Box::pin(flush()));
        if let Ok(mut hooks) = self.inner.flush_hooks.lock() {
            hooks.push((name.into(), hook));
        }
    }

    /// Wait until every connection and tunnel has ended, or `timeout`.
    /// Returns how many were still open at the deadline. Call once no new
    /// connection can be accepted.
    pub async fn wait_drained(&self, timeout: Duration) -> usize {
        let (connections, tunnels) = (&self.inner.connections, &self.inner.tunnels);
        connections.close();
        tunnels.close();
        // A tunnel is spawned by a connection's last request, so wait for
        // the connections first, then the tunnels.
        let drained = async {
            connections.wait().await;
            tunnels.wait().await;
        };
        match tokio::time::timeout(timeout, drained).await {
            Ok(()) => 0,
            Err(_) => connections.len() + tunnels.len(),
        }
    }

    /// Run every registered flush hook (each once), bounded by `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let hooks = match self.inner.flush_hooks.lock() {
            Ok(mut hooks) => std::mem::take(&mut *hooks),
            Err(_) => return,
        };
        let mut running = tokio::task::JoinSet::new();
        for (name, hook) in hooks {
            let flushing = hook();
            running.spawn(async move {
                flushing.await;
                name
            });
        }
        let all = async {
            while let Some(done) = running.join_next().await {
                match done {
                    Ok(name) => tracing::debug!(hook = %name, "flushed"),
                    Err(e) => tracing::warn!("a shutdown flush failed: {e}"),
                }
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("shutdown flush did not finish within {timeout:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn draining_cancels_the_token_and_flush_runs_each_hook_once() {
        let lifecycle = Lifecycle::new();
        let token = lifecycle.shutdown_token();
        assert!(!lifecycle.is_draining());
        let flushed = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let flushed = flushed.clone();
            lifecycle.on_shutdown("count", move || async move {
                flushed.fetch_add(1, Ordering::SeqCst);
            });
        }
        lifecycle.begin_drain();
        assert!(lifecycle.is_draining());
        assert!(token.is_cancelled());
        lifecycle.flush(Duration::from_secs(1)).await;
        lifecycle.flush(Duration::from_secs(1)).await;
        assert_eq!(flushed.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_hanging_flush_is_cut_off_at_the_timeout() {
        let lifecycle = Lifecycle::new();
        lifecycle.on_shutdown("hang", std::future::pending::<()>);
        let started = std::time::Instant::now();
        lifecycle.flush(Duration::from_millis(100)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn draining_waits_for_connections_and_tunnels_and_counts_those_left() {
        let lifecycle = Lifecycle::new();
        lifecycle.tunnels().spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        lifecycle.connections().spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        assert_eq!(lifecycle.wait_drained(Duration::from_secs(2)).await, 0);
        let lifecycle = Lifecycle::new();
        lifecycle.tunnels().spawn(std::future::pending::<()>());
        assert_eq!(lifecycle.wait_drained(Duration::from_millis(50)).await, 1);
    }
}
