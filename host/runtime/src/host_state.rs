//! What one plugin instance's `Store` holds: its identity (plugin, route),
//! the empty WASI context, the memory cap, and its handle on the shared host
//! state. Created per instance by the instance pool; read by the host
//! imports during a hook call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::UpdateDeadline;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::types::{IpAddress, RateDecision, StateScope};
use crate::call_guard::{SlowCallMark, SlowCalls};
use crate::engine::{EpochClock, LongCallMark, EPOCH_TICK};
use crate::guest_output::{GuestOutput, OutputRateLimit, OutputTail};
use crate::metric_handles::MetricHandles;
use crate::plugin_log::PluginLogs;
use crate::state::zone_uses::ZoneUses;
use crate::state::{PluginState, SharedState};

/// The (plugin, route) an instance serves, for logs and metrics.
#[derive(Debug, Clone)]
pub(crate) struct GuestIdentity {
    pub(crate) plugin: Arc<str>,
    pub(crate) route: Arc<str>,
}

/// The store data of a plugin instance.
pub(crate) struct HostState {
    pub(crate) guest: GuestIdentity,
    pub(crate) shared: Arc<SharedState>,
    pub(crate) plugin_state: Arc<PluginState>,
    pub(crate) memory: MemoryCap,
    /// The time budget of the current call, kept at the epoch ticks.
    pub(crate) budget: CallBudget,
    /// The end of what the guest wrote to stderr during the current call.
    pub(crate) stderr_tail: OutputTail,
    /// The plugin metrics this instance used, ready for the next call.
    pub(crate) metric_handles: MetricHandles,
    /// What the guest logged during the current call, written after it.
    pub(crate) logs: PluginLogs,
    /// The rate-limit zone uses the instance registered.
    pub(crate) zone_uses: ZoneUses,
    /// The decisions of the request checks the host made for the request
    /// whose hook runs next (`plugin-info.request-checks`): the hook's own
    /// check of the same use and key takes its decision from here, once.
    pub(crate) pre_checked: Vec<PreChecked>,
    stdout: GuestOutput,
    stderr: GuestOutput,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    /// Points the state imports at the namespace the configured plugin
    /// asked for (`plugin-info.state-scope`): the plugin's own, its
    /// route's, or a named one shared by the plugin's uses that name it.
    pub(crate) fn use_scope(&mut self, scope: &StateScope) {
        let plugin = &self.guest.plugin;
        let namespace = match scope {
            StateScope::Plugin => return,
            StateScope::Route => format!("{plugin}@route:{}", self.guest.route),
            StateScope::Named(name) => format!("{plugin}@{name}"),
        };
        self.plugin_state = self.shared.plugin(&namespace);
        self.zone_uses.forget_zones();
    }

    pub(crate) fn new(
        guest: GuestIdentity,
        shared: Arc<SharedState>,
        memory_cap: usize,
        epoch: EpochClock,
        slow_calls: SlowCalls,
        output_limit: Arc<OutputRateLimit>,
    ) -> Self {
        let plugin_state = shared.plugin(&guest.plugin);
        let stderr_tail = OutputTail::default();
        // No preopens, no env, no args, no network: the builder's defaults.
        let observer = shared.observer.clone();
        let stdout = GuestOutput::stdout(guest.clone(), observer.clone(), output_limit.clone());
        let stderr =
            GuestOutput::stderr(guest.clone(), stderr_tail.clone(), observer, output_limit);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        HostState {
            guest,
            shared,
            plugin_state,
            memory: MemoryCap::new(memory_cap),
            budget: CallBudget::new(epoch, slow_calls),
            stderr_tail,
            metric_handles: MetricHandles::default(),
            logs: PluginLogs::default(),
            zone_uses: ZoneUses::default(),
            pre_checked: Vec::new(),
            stdout,
            stderr,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl HostState {
    /// Resets the per-call bookkeeping before a hook (or `configure`) runs
    /// with `budget`.
    pub(crate) fn begin_call(&mut self, budget: Duration) {
        self.memory.begin_call();
        self.budget.begin(budget);
        self.stdout.begin_call();
        self.stderr.begin_call();
    }

    /// After the call returned (normally or not).
    pub(crate) fn end_call(&mut self) {
        self.budget.end();
        self.pre_checked.clear();
    }
}

/// One request check the host made before a hook (see
/// [`HostState::pre_checked`]).
#[derive(Debug, Clone)]
pub(crate) struct PreChecked {
    pub(crate) zone: u32,
    pub(crate) client_ip: IpAddress,
    pub(crate) dry_run: bool,
    pub(crate) decision: RateDecision,
}

/// The time budget of the call running on an instance, kept at the epoch
/// ticks: at each tick the call yields to the executor (another task may
/// run on its worker), and the first tick past its budget stops it. The
/// budget counts the time the guest runs, on the [`EpochClock`]: the tick
/// intervals that end while it runs, from its start or from its last
/// resumption; time it waits for a worker after a yield is not charged, so
/// a busy proxy does not stop healthy hooks that happened to straddle a
/// tick. The limit is the budget plus one tick (the call may start just
/// before one): a runaway guest alone on its worker is stopped after
/// 50–61 ms of a 50 ms budget. A call still running at its first tick
/// counts as long, which makes the ticker tick every
/// [`crate::engine::LONG_CALL_TICK`]: a runaway guest gives its worker back
/// every millisecond. One that has run two whole [`EPOCH_TICK`]s counts as
/// slow for its plugin's bound ([`SlowCalls`]).
#[derive(Debug)]
pub(crate) struct CallBudget {
    epoch: EpochClock,
    slow_calls: SlowCalls,
    /// Epoch time charged so far, and where the next charge starts.
    ran_us: u64,
    from_us: u64,
    /// When the call was resumed after its last yield (epoch time; set by
    /// the yield's future, `u64::MAX` when not yet).
    resumed_us: Arc<AtomicU64>,
    limit_us: u64,
    /// Set from the call's first tick to its end.
    long: Option<LongCallMark>,
    /// Set once the call has run two whole ticks, to its end.
    slow: Option<SlowCallMark>,
    timed_out: bool,
    /// Epoch time the call spent waiting in async host imports (Redis)
    /// since the last tick: not charged, the guest did not run.
    waited_us: u64,
}

impl CallBudget {
    fn new(epoch: EpochClock, slow_calls: SlowCalls) -> Self {
        CallBudget {
            epoch,
            slow_calls,
            ran_us: 0,
            from_us: 0,
            resumed_us: Arc::new(AtomicU64::new(u64::MAX)),
            limit_us: 0,
            long: None,
            slow: None,
            timed_out: false,
            waited_us: 0,
        }
    }

    fn begin(&mut self, budget: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2);
        self.ran_us = 0;
        self.from_us = self.epoch.now_us();
        self.resumed_us.store(u64::MAX, Ordering::Release);
        self.limit_us = us(budget).saturating_add(us(EPOCH_TICK));
        self.long = None;
        self.slow = None;
        self.timed_out = false;
        self.waited_us = 0;
    }

    fn end(&mut self) {
        self.long = None;
        self.slow = None;
    }

    /// At an epoch tick while the call runs: yield, or stop the call.
    pub(crate) fn at_tick(&mut self) -> UpdateDeadline {
        let now = self.epoch.now_us();
        let resumed = self.resumed_us.swap(u64::MAX, Ordering::AcqRel);
        let from = if resumed == u64::MAX {
            self.from_us
        } else {
            resumed.max(self.from_us)
        };
        let waited = std::mem::take(&mut self.waited_us);
        let ran = now.saturating_sub(from).saturating_sub(waited);
        self.ran_us = self.ran_us.saturating_add(ran);
        self.from_us = now;
        if self.ran_us >= self.limit_us {
            self.timed_out = true;
            self.end();
            return UpdateDeadline::Interrupt;
        }
        if self.long.is_none() {
            self.long = Some(self.epoch.mark_long());
        }
        if self.slow.is_none() && u128::from(self.ran_us) >= 2 * EPOCH_TICK.as_micros() {
            self.slow = Some(self.slow_calls.mark());
        }
        // tokio's yield, not a bare self-wake: the task goes back behind
        // the I/O driver too, so a worker with nothing else queued still
        // sees new connections and requests before the guest runs on (with
        // a self-wake, the current-thread scheduler polled I/O only every
        // 61 slices: ~60 ms). Resumed, it notes when, so the wait is not
        // charged.
        let (resumed, epoch) = (self.resumed_us.clone(), self.epoch.clone());
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                resumed.store(epoch.now_us(), Ordering::Release);
            }),
        )
    }

    /// Awaits `wait` (a host import's round trip to Redis) without charging
    /// the time to the call: the guest's worker is free meanwhile, so the
    /// wait counts neither towards the hook's timeout nor towards making it
    /// a slow call (`max_concurrent_calls`). The state backend bounds the
    /// wait by its own `timeout`.
    pub(crate) async fn unbilled<T>(&mut self, wait: impl std::future::Future<Output = T>) -> T {
        let started = self.epoch.now_us();
        let out = wait.await;
        let waited = self.epoch.now_us().saturating_sub(started);
        self.waited_us = self.waited_us.saturating_add(waited);
        out
    }

    /// Whether the last call was stopped for its budget.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the linear memory of one instance and remembers whether it had to
/// refuse growth, which is how a fault is known to be the memory cap's doing
/// rather than guessed from a trap message. An instance may have one linear
/// memory (what `wasm32-wasip2` guests have), so the cap per memory is the
/// cap per instance.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    cap: usize,
    /// Size of the instance's linear memory, bytes.
    size: usize,
    /// Set when growth was refused since the last [`MemoryCap::begin_call`].
    denied: bool,
}

/// Most table elements one table may have (function-pointer tables of
/// ordinary guests hold a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryCap {
    pub(crate) fn new(cap: usize) -> Self {
        MemoryCap {
            cap,
            size: 0,
            denied: false,
        }
    }

    pub(crate) fn begin_call(&mut self) {
        self.denied = false;
    }

    pub(crate) fn denied(&self) -> bool {
        self.denied
    }

    /// Current size of the linear memory, bytes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap || maximum.is_some_and(|max| desired > max) {
            self.denied = true;
            return Ok(false);
        }
        self.size = desired;
        Ok(true)
    }

    /// Growth the cap allowed but the allocator refused (the pool's slot
    /// size, or the host out of memory) also counts as hitting the cap.
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.denied = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }

    fn memories(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_cap_refuses_growth_past_the_cap_and_remembers() {
        let mut cap = MemoryCap::new(1000);
        assert!(cap.memory_growing(0, 600, None).expect("grow"));
        assert!(!cap.denied());
        assert!(!cap.memory_growing(600, 1100, None).expect("grow"));
        assert!(cap.denied());
        assert_eq!(cap.size(), 600);
        cap.begin_call();
        assert!(!cap.denied());
        assert!(cap.memory_growing(600, 1000, None).expect("grow"));
        assert_eq!(cap.size(), 1000);
    }
}
