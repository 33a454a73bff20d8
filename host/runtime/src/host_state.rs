//! What one plugin instance's `Store` holds: its identity (plugin, route),
//! the empty WASI context, the memory cap, and its handle on the shared host
//! state. Created per instance by the instance pool; read by the host
//! imports during a hook call.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::guest_output::{GuestOutput, OutputTail};
use crate::metric_handles::MetricHandles;
use crate::plugin_log::PluginLogs;
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
    /// The end of what the guest wrote to stderr during the current call.
    pub(crate) stderr_tail: OutputTail,
    /// The plugin metrics this instance used, ready for the next call.
    pub(crate) metric_handles: MetricHandles,
    /// What the guest logged during the current call, written after it.
    pub(crate) logs: PluginLogs,
    stdout: GuestOutput,
    stderr: GuestOutput,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(guest: GuestIdentity, shared: Arc<SharedState>, memory_cap: usize) -> Self {
        let plugin_state = shared.plugin(&guest.plugin);
        let stderr_tail = OutputTail::default();
        // No preopens, no env, no args, no network: the builder's defaults.
        let observer = shared.observer.clone();
        let stdout = GuestOutput::stdout(guest.clone(), observer.clone());
        let stderr = GuestOutput::stderr(guest.clone(), stderr_tail.clone(), observer);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        HostState {
            guest,
            shared,
            plugin_state,
            memory: MemoryCap::new(memory_cap),
            stderr_tail,
            metric_handles: MetricHandles::default(),
            logs: PluginLogs::default(),
            stdout,
            stderr,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl HostState {
    /// Resets the per-call bookkeeping before a hook (or `configure`) runs.
    pub(crate) fn begin_call(&mut self) {
        self.memory.begin_call();
        self.stdout.begin_call();
        self.stderr.begin_call();
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
