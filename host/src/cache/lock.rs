//! The cache lock (nginx `proxy_cache_lock`): one request per key fills or
//! refreshes the cache; the others for that key wait for it (up to the
//! route's `lock_timeout`) or, for an expired entry, are served it stale
//! (`updating`). The holder keeps its [`CacheLockGuard`] until the response
//! is stored (or turned out not storable); dropping the guard releases the
//! waiters. Used by the cache step of the upstream phase.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The keys being filled right now.
#[derive(Default)]
pub struct CacheLocks {
    held: Mutex<HashMap<String, Held>>,
    next_id: AtomicU64,
}

struct Held {
    id: u64,
    released: watch::Receiver<()>,
}

/// The result of asking for a key's lock.
pub enum LockAttempt {
    /// This request fills the key.
    Acquired(CacheLockGuard),
    /// Another request is filling it.
    Busy(LockWait),
}

/// Holding a key's lock; released on drop.
pub struct CacheLockGuard {
    locks: Arc<CacheLocks>,
    key: String,
    id: u64,
    _release: watch::Sender<()>,
}

/// Waiting for another request's lock.
pub struct LockWait {
    released: watch::Receiver<()>,
}

impl CacheLocks {
    pub fn try_lock(self: &Arc<Self>, key: &str) -> LockAttempt {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = held.get(key) {
            return LockAttempt::Busy(LockWait {
                released: current.released.clone(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(());
        held.insert(key.to_owned(), Held { id, released: rx });
        LockAttempt::Acquired(CacheLockGuard {
            locks: self.clone(),
            key: key.to_owned(),
            id,
            _release: tx,
        })
    }

    /// Whether someone holds the key's lock.
    #[cfg(test)]
    pub fn is_held(&self, key: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }
}

impl Drop for CacheLockGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(&self.key).is_some_and(|h| h.id == self.id) {
            held.remove(&self.key);
        }
        // `_release` drops after this, waking every waiter.
    }
}

impl LockWait {
    /// Wait until the holder releases the lock; false on timeout.
    pub async fn released_within(mut self, timeout: Duration) -> bool {
        // `changed` errs once the sender (the guard) is gone.
        tokio::time::timeout(timeout, async {
            while self.released.changed().await.is_ok() {}
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_and_waiters_wake_on_release() {
        let locks = Arc::new(CacheLocks::default());
        let LockAttempt::Acquired(guard) = locks.try_lock("k") else {
            panic!("first attempt must acquire");
        };
        let LockAttempt::Busy(wait) = locks.try_lock("k") else {
            panic!("second attempt must wait");
        };
        assert!(matches!(locks.try_lock("other"), LockAttempt::Acquired(_)));
        let waiter = tokio::spawn(wait.released_within(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(guard);
        assert!(waiter.await.expect("join"));
        assert!(!locks.is_held("k"));
        assert!(matches!(locks.try_lock("k"), LockAttempt::Acquired(_)));
    }

    #[tokio::test]
    async fn waiting_times_out() {
        let locks = Arc::new(CacheLocks::default());
        let _guard = locks.try_lock("k");
        let LockAttempt::Busy(wait) = locks.try_lock("k") else {
            panic!("must wait");
        };
        assert!(!wait.released_within(Duration::from_millis(30)).await);
    }
}
