//! The one wasmtime [`Engine`] of a runtime and its epoch ticker: compiler
//! and allocator settings (the pooling allocator sized for the box, or the
//! on-demand allocator when pooling cannot be had; async calls, so a guest
//! runs on a fiber that can give its worker back), and the thread that
//! advances the epoch at which running guests yield and runaway ones stop.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;

/// How often the epoch advances: a runaway guest is stopped after its
/// budget, at most two ticks after it. Also the smallest hook budget a
/// config may set. 10 ms, as Spin's: each tick wakes a thread, and at 1 ms
/// those wake-ups cost a loaded two-core machine ~10 % of its throughput
/// (docs/performance-passes.md, section 10).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The tick while some hook call has run past one [`EPOCH_TICK`] and is
/// still running ([`EpochClock`]): such a call yields its worker to the
/// other tasks at every tick, so a runaway guest holds a worker for at most
/// this long at a time. Only then does the ticker wake 1000 times a second.
pub const LONG_CALL_TICK: Duration = Duration::from_millis(1);

/// A hook budget shorter than one [`EPOCH_TICK`]: the clock that stops
/// runaway hooks could not keep it. Configs reject it
/// ([`check_hook_budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "is below {tick}ms: plugin hooks are stopped on a {tick} ms clock",
    tick = EPOCH_TICK.as_millis()
)]
pub struct BudgetBelowTick;

/// Whether the epoch clock can keep `budget`: at least one tick.
pub fn check_hook_budget(budget: Duration) -> Result<Duration, BudgetBelowTick> {
    if budget < EPOCH_TICK {
        Err(BudgetBelowTick)
    } else {
        Ok(budget)
    }
}

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
/// (guard regions), for the address-space estimates.
const SLOT_GUARD_ESTIMATE: u64 = 64 << 20;
/// Most address space the instance pool may reserve (x86-64 user space is
/// 128 TiB): past it the smaller, bounds-checked reservation is used.
const MAX_POOL_ADDRESS_SPACE: u64 = 32 << 40;

/// How much address space each linear memory reserves, which decides how
/// guest loads and stores are checked. The memory never grows past the
/// route's `memory_limit` either way (the store's limiter enforces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReservation {
    /// 4 GiB: every 32-bit address falls inside the reservation or its
    /// guard pages, so Cranelift drops the bounds check of each load and
    /// store (a stray access faults on a guard page and traps). ~6 % fewer
    /// instructions per request with the three shipped plugins
    /// (docs/performance-passes.md). 1000 pool slots reserve ~4 TiB of address
    /// space, none of it RAM.
    Elided,
    /// [`MAX_MEMORY_BYTES`]: every load and store is bounds-checked; used
    /// when 4 GiB slots do not fit the address space (`ulimit -v`, or more
    /// than ~8000 instances).
    Checked,
}

impl MemoryReservation {
    fn bytes(self) -> u64 {
        match self {
            MemoryReservation::Elided => 4 << 30,
            MemoryReservation::Checked => MAX_MEMORY_BYTES as u64,
        }
    }

    /// The label logged at start-up.
    pub fn bounds_checks(self) -> &'static str {
        match self {
            MemoryReservation::Elided => "elided",
            MemoryReservation::Checked => "explicit",
        }
    }
}

/// Which instance allocator the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots, reused warm (fast instantiation).
    Pooling(MemoryReservation),
    /// `mmap` per instance (slower; used when pooling cannot be set up).
    OnDemand,
}

/// Builds the engine: the pooling allocator with 4 GiB reservations if the
/// pool fits the address space, else with bounds-checked ones, else the
/// on-demand allocator (bounds-checked).
pub(crate) fn build_engine(max_instances: u32) -> Result<(Engine, Allocator), RuntimeError> {
    let max_instances = max_instances.max(1);
    let limit = address_space_limit();
    for reservation in [MemoryReservation::Elided, MemoryReservation::Checked] {
        let pool_bytes = u64::from(max_instances) * (reservation.bytes() + SLOT_GUARD_ESTIMATE);
        if pool_bytes > MAX_POOL_ADDRESS_SPACE || limit.is_some_and(|limit| pool_bytes > limit / 2)
        {
            tracing::debug!(
                ?limit,
                pool_bytes,
                bounds_checks = reservation.bounds_checks(),
                "the instance pool would not fit the address space"
            );
            continue;
        }
        let pool = pooling_config(max_instances);
        match Engine::new(&engine_config(reservation, Some(pool))) {
            Ok(engine) => {
                tracing::info!(
                    max_instances,
                    bounds_checks = reservation.bounds_checks(),
                    pagemap_scan = PoolingAllocationConfig::is_pagemap_scan_available(),
                    "plugin engine: pooling instance allocator"
                );
                return Ok((engine, Allocator::Pooling(reservation)));
            }
            Err(error) => {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    bounds_checks = reservation.bounds_checks(),
                    "cannot set up the pooling instance allocator"
                );
            }
        }
    }
    tracing::warn!(
        address_space_limit = ?limit,
        "the instance pool does not fit the address space (ulimit -v?); using the on-demand instance allocator"
    );
    let engine = Engine::new(&engine_config(MemoryReservation::Checked, None))
        .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    Ok((engine, Allocator::OnDemand))
}

fn engine_config(
    reservation: MemoryReservation,
    pooling: Option<PoolingAllocationConfig>,
) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Calls are made with the `*_async` methods (wasmtime 48 needs no
    // switch for it): guests run on fibers, and at each epoch tick a running
    // call yields to the executor (`host_state::CallBudget`), so a long hook
    // does not hold its tokio worker, and host imports may be async.
    config.memory_reservation(reservation.bytes());
    config.memory_may_move(false);
    // Profiling aid (docs/performance-passes.md): name the plugins' compiled
    // functions in /tmp/perf-<pid>.map for perf and for callgrind dumps.
    if std::env::var_os("TAILGATE_WASM_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
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
        // One fiber stack per call in flight; an instance is in at most one.
        .total_stacks(max_instances)
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

/// The epoch as the hook budgets read it: the time the ticker has counted
/// (its ticks added up, each at most its nominal length), and the hook
/// calls that have run past one tick and not returned yet. A call marks
/// itself long at its first tick and unmarks when it ends (or its instance
/// is dropped, when the call was cancelled). Budgets count ticks, not the
/// wall clock, as the epoch deadline did: on a machine so loaded that the
/// ticker itself waits for a CPU, hooks are not stopped for time they spent
/// waiting too.
#[derive(Debug, Clone, Default)]
pub(crate) struct EpochClock(Arc<EpochCounters>);

#[derive(Debug, Default)]
struct EpochCounters {
    elapsed_us: AtomicU64,
    long_calls: AtomicUsize,
    /// The ticker's stop flag, and what wakes it: a stop, or the first
    /// long call (so the fast ticks start at once).
    signal: (Mutex<bool>, Condvar),
}

/// One call counted as long in [`EpochClock`]; uncounted on drop.
#[derive(Debug)]
pub(crate) struct LongCallMark(Arc<EpochCounters>);

impl EpochClock {
    pub(crate) fn mark_long(&self) -> LongCallMark {
        if self.0.long_calls.fetch_add(1, Ordering::AcqRel) == 0 {
            self.0.signal.1.notify_all();
        }
        LongCallMark(self.0.clone())
    }

    /// Whether any call is long right now.
    pub(crate) fn any_long(&self) -> bool {
        self.0.long_calls.load(Ordering::Acquire) > 0
    }

    /// Microseconds of ticks so far.
    pub(crate) fn now_us(&self) -> u64 {
        self.0.elapsed_us.load(Ordering::Acquire)
    }

    fn advance(&self, tick: Duration) {
        let us = u64::try_from(tick.as_micros()).unwrap_or(u64::MAX);
        self.0.elapsed_us.fetch_add(us, Ordering::AcqRel);
    }
}

impl Drop for LongCallMark {
    fn drop(&mut self) {
        self.0.long_calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`], or
/// every [`LONG_CALL_TICK`] while a call is long, and the [`EpochClock`]. Started with the first
/// plugin load ([`EpochTicker::ensure_started`]): a proxy without plugins
/// has no thread waking 100 times a second (at 1000 a second it was ~6 % of
/// a plugin-free proxy's CPU, docs/performance-passes.md); a proxy whose
/// hooks return within a tick never ticks faster. Stops (and is joined) when
/// dropped.
pub(crate) struct EpochTicker {
    engine: Engine,
    clock: EpochClock,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EpochTicker {
    /// A ticker for `engine`, not started yet.
    pub(crate) fn new(engine: Engine, clock: EpochClock) -> Self {
        EpochTicker {
            engine,
            clock,
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
        let engine = self.engine.clone();
        let clock = self.clock.clone();
        let handle = std::thread::Builder::new()
            .name("tailgate-epoch".into())
            .spawn(move || {
                let (stopped, wake) = &clock.0.signal;
                let mut stopped = stopped.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    let tick = if clock.any_long() {
                        LONG_CALL_TICK
                    } else {
                        EPOCH_TICK
                    };
                    let started = Instant::now();
                    let (guard, _) = wake
                        .wait_timeout(stopped, tick)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    // Woken early by a long call: the time that passed. Late
                    // (the thread waited for a CPU): one tick, so budgets
                    // do not count time the machine could not give.
                    clock.advance(started.elapsed().min(tick));
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
        let (stopped, wake) = &self.clock.0.signal;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        let thread = self.thread.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(thread) = thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_unless_the_address_space_is_too_small() {
        let (_engine, allocator) = build_engine(4).expect("engine");
        let elided_pool = 4 * (MemoryReservation::Elided.bytes() + SLOT_GUARD_ESTIMATE);
        let checked_pool = 4 * (MemoryReservation::Checked.bytes() + SLOT_GUARD_ESTIMATE);
        match address_space_limit() {
            None => assert_eq!(allocator, Allocator::Pooling(MemoryReservation::Elided)),
            // e.g. `(ulimit -v 2000000; cargo test ...)`
            Some(limit) if checked_pool > limit / 2 => assert_eq!(allocator, Allocator::OnDemand),
            Some(limit) if elided_pool > limit / 2 => {
                assert_eq!(allocator, Allocator::Pooling(MemoryReservation::Checked))
            }
            Some(_) => {}
        }
    }

    #[test]
    fn a_pool_too_big_for_4_gib_slots_is_bounds_checked() {
        // 10,000 slots of 4 GiB would reserve ~40 TiB.
        let (_engine, allocator) = build_engine(10_000).expect("engine");
        if address_space_limit().is_none() {
            assert_eq!(allocator, Allocator::Pooling(MemoryReservation::Checked));
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
