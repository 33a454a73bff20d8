//! The idle instances of one configured plugin, ready for the next call.
//! Taken and given back from any worker thread; an instance is only given
//! back after a normal call, under its call limit and memory threshold.

use std::sync::Mutex;

use crate::instance::PluginInstance;

pub(crate) struct InstancePool {
    idle: Mutex<Vec<PluginInstance>>,
    capacity: usize,
}

impl InstancePool {
    pub(crate) fn new(capacity: usize) -> Self {
        InstancePool {
            idle: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
        }
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
