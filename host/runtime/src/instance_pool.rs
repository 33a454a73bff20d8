//! The idle instances of one configured plugin, ready for the next call.
//! Taken and given back from any worker thread; an instance is only given
//! back after a normal call, under its call limit and memory threshold.
//! Also the turns to make a new one: at most [`INSTANTIATIONS_AT_ONCE`].

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::instance::PluginInstance;

/// New instances of one configured plugin made at once. `configure` can
/// run for milliseconds (a config parsed, regexes compiled) and yields its
/// worker at epoch ticks; without a bound, a burst of requests on an empty
/// pool (a cold start, a reload) made an instance for nearly every request
/// of the burst — hundreds, each with its own memory — where a few calls'
/// worth were needed.
pub(crate) const INSTANTIATIONS_AT_ONCE: usize = 2;

pub(crate) struct InstancePool {
    idle: Mutex<Vec<PluginInstance>>,
    capacity: usize,
    instantiating: Semaphore,
}

impl InstancePool {
    pub(crate) fn new(capacity: usize) -> Self {
        InstancePool {
            idle: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            instantiating: Semaphore::new(INSTANTIATIONS_AT_ONCE),
        }
    }

    /// Waits for a turn to make a new instance; hold it while making it.
    /// Whoever waited should look in the pool again first: calls that ended
    /// meanwhile gave theirs back.
    pub(crate) async fn turn_to_instantiate(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed.
        self.instantiating.acquire().await.ok()
    }

    /// Idle instances to keep per configured plugin: enough for every
    /// worker thread to have one in hand.
    pub(crate) fn default_capacity() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 32)
            * 2
    }

    pub(crate) fn take(&self) -> Option<PluginInstance> {
        self.lock().pop()
    }

    /// Keeps `instance` for later, or drops it if the pool is full.
    pub(crate) fn give_back(&self, instance: PluginInstance) {
        let refused = {
            let mut idle = self.lock();
            if idle.len() < self.capacity {
                idle.push(instance);
                None
            } else {
                Some(instance)
            }
        };
        // Tearing a store down is not done under the lock.
        drop(refused);
    }

    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PluginInstance>> {
        // Instances are moved in and out whole; a poisoned lock holds no
        // half-made state.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
