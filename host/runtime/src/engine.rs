//! The one wasmtime [`Engine`] of a runtime and its epoch ticker: compiler
//! and allocator settings (the pooling allocator sized for the box, or the
//! on-demand allocator when pooling cannot be had), and the thread that
//! advances the epoch which stops runaway guests.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;

/// How often the epoch advances: a runaway guest is stopped at most one
/// tick after its budget.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest linear memory any plugin instance may have, whatever its route
/// asks for; also the virtual-memory reservation of each instance.
pub const MAX_MEMORY_BYTES: usize = 256 << 20;

/// Core module instances one plugin component may create (a `wasm32-wasip2`
/// Rust guest makes 3-4: the module and the shims around it).
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Linear memory kept resident (reset with memset, not madvise) when a
/// pooled slot is freed: covers a small guest's whole heap.
const KEEP_RESIDENT_MEMORY: usize = 4 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
/// Address space a pooled memory slot reserves beyond its reservation
/// (guard regions), for the `ulimit -v` estimate.
const SLOT_GUARD_ESTIMATE: u64 = 64 << 20;

/// Which instance allocator the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots, reused warm (fast instantiation).
    Pooling,
    /// `mmap` per instance (slower; used when pooling cannot be set up).
    OnDemand,
}

/// Builds the engine: pooling allocator if it fits, else on-demand.
pub(crate) fn build_engine(max_instances: u32) -> Result<(Engine, Allocator), RuntimeError> {
    let max_instances = max_instances.max(1);
    let pool_bytes = u64::from(max_instances) * (MAX_MEMORY_BYTES as u64 + SLOT_GUARD_ESTIMATE);
    match address_space_limit() {
        Some(limit) if pool_bytes > limit / 2 => {
            tracing::warn!(
                address_space_limit = limit,
                pool_bytes,
                "address space is limited (ulimit -v); using the on-demand instance allocator"
            );
        }
        _ => match Engine::new(&engine_config(Some(pooling_config(max_instances)))) {
            Ok(engine) => {
                tracing::info!(
                    max_instances,
                    pagemap_scan = PoolingAllocationConfig::is_pagemap_scan_available(),
                    "plugin engine: pooling instance allocator"
                );
                return Ok((engine, Allocator::Pooling));
            }
            Err(error) => {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    "cannot set up the pooling instance allocator; using the on-demand one"
                );
            }
        },
    }
    let engine =
        Engine::new(&engine_config(None)).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    Ok((engine, Allocator::OnDemand))
}

fn engine_config(pooling: Option<PoolingAllocationConfig>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Bounds-checked memories of at most MAX_MEMORY_BYTES instead of 4 GiB
    // reservations: keeps the pool to a few hundred GiB of address space.
    config.memory_reservation(MAX_MEMORY_BYTES as u64);
    config.memory_may_move(false);
    config.allocation_strategy(match pooling {
        Some(pool) => InstanceAllocationStrategy::Pooling(pool),
        None => InstanceAllocationStrategy::OnDemand,
    });
    config
}

fn pooling_config(max_instances: u32) -> PoolingAllocationConfig {
    let core_instances = max_instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_instances)
        .total_core_instances(core_instances)
        .total_memories(max_instances)
        .total_tables(core_instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(1)
        .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memory_size(MAX_MEMORY_BYTES)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .pagemap_scan(if PoolingAllocationConfig::is_pagemap_scan_available() {
            Enabled::Yes
        } else {
            Enabled::No
        });
    pool
}

/// The process's address-space limit (`ulimit -v`), if it has one.
fn address_space_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    // "Max address space   <soft>   <hard>   bytes"
    let soft = line
        .trim_start_matches("Max address space")
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`]. Started
/// with the first plugin load ([`EpochTicker::ensure_started`]): a proxy
/// without plugins has no thread waking 1000 times a second (it was ~6 % of
/// a plugin-free proxy's CPU, docs/performance.md). Stops (and is joined)
/// when dropped.
pub(crate) struct EpochTicker {
    engine: Engine,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EpochTicker {
    /// A ticker for `engine`, not started yet.
    pub(crate) fn new(engine: Engine) -> Self {
        EpochTicker {
            engine,
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            thread: Mutex::new(None),
        }
    }

    /// Start the thread unless it runs already. Must be called before an
    /// instance of the engine runs (a deadline only passes while it ticks).
    pub(crate) fn ensure_started(&self) -> Result<(), RuntimeError> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_some() {
            return Ok(());
        }
        let signal = self.stop.clone();
        let engine = self.engine.clone();
        let handle = std::thread::Builder::new()
            .name("tailgate-epoch".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut stopped = stopped.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    let (guard, _) = wake
                        .wait_timeout(stopped, EPOCH_TICK)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("starting the epoch ticker thread: {e}")))?;
        *thread = Some(handle);
        Ok(())
    }

    /// Whether the thread was started.
    pub(crate) fn is_started(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        let thread = self.thread.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(thread) = thread.take() {
            let _ = thread.join();
        }
    }
}

/// Epoch ticks to allow for `budget`: rounded up, plus one because the
/// deadline may be set just before a tick.
pub(crate) fn deadline_ticks(budget: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    let ticks = budget.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX - 1).max(1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_covers_the_budget_plus_one_tick() {
        assert_eq!(deadline_ticks(Duration::from_millis(50)), 51);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 3);
        assert_eq!(deadline_ticks(Duration::ZERO), 2);
    }

    #[test]
    fn pooling_unless_the_address_space_is_too_small() {
        let (_engine, allocator) = build_engine(4).expect("engine");
        let pool_bytes = 4 * (MAX_MEMORY_BYTES as u64 + SLOT_GUARD_ESTIMATE);
        match address_space_limit() {
            None => assert_eq!(allocator, Allocator::Pooling),
            // e.g. `(ulimit -v 2000000; cargo test ...)`
            Some(limit) if pool_bytes > limit / 2 => assert_eq!(allocator, Allocator::OnDemand),
            Some(_) => {}
        }
    }

    #[test]
    fn address_space_limit_reads_proc() {
        // Whatever the limit is here, reading it must not fail on Linux.
        if std::path::Path::new("/proc/self/limits").exists() {
            let limits = std::fs::read_to_string("/proc/self/limits").expect("read");
            let unlimited = limits
                .lines()
                .any(|l| l.starts_with("Max address space") && l.contains("unlimited"));
            assert_eq!(address_space_limit().is_none(), unlimited);
        }
    }
}
