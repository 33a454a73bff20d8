//! One live plugin instance: its own `Store` (memory cap, WASI context,
//! identity) and the instantiated component, configured for one route.
//! Every call is async and runs under a time budget kept at the epoch
//! ticks: at each tick the guest yields its worker, past the budget it is
//! stopped. A call that does not return normally is turned into a
//! [`PluginFault`] and the instance must be dropped (a trapped instance
//! cannot be entered again); so must one whose call was cancelled (its
//! future dropped mid-call), which dropping the future does.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::HasSelf;
use wasmtime::{Store, Trap};

use crate::address_text;
use crate::bindings::host;
use crate::bindings::types::{IpAddress, PluginInfo, RateDecision, RateKey, RequestChecks};
use crate::bindings::{Plugin, PluginPre};
use crate::call_guard::SlowCalls;
use crate::engine::EpochClock;
use crate::guest_output::OutputRateLimit;
use crate::host_state::{GuestIdentity, HostState, PreChecked};
use crate::plugin_log::PluginLogs;
use crate::state::SharedState;
use crate::{Limits, PluginFault};

/// What it takes to make a configured instance of one (plugin, route).
pub(crate) struct InstanceRecipe {
    pub(crate) pre: PluginPre<HostState>,
    pub(crate) guest: GuestIdentity,
    pub(crate) config_json: String,
    pub(crate) limits: Limits,
    /// Budget of instantiation + `configure` (see [`configure_budget`]).
    pub(crate) configure_budget: Duration,
    pub(crate) shared: Arc<SharedState>,
    pub(crate) live: Arc<LiveInstances>,
    /// The runtime's epoch clock (and its long calls, which make it tick faster).
    pub(crate) epoch: EpochClock,
    /// The rate limit of this (plugin, route)'s stdout and stderr lines,
    /// shared by its instances.
    pub(crate) output_limit: Arc<OutputRateLimit>,
    /// This (plugin, route)'s calls past a tick, which its call guard bounds.
    pub(crate) slow_calls: SlowCalls,
}

/// Counts the instances alive across a runtime against its maximum.
pub(crate) struct LiveInstances {
    count: AtomicU32,
    max: u32,
}

impl LiveInstances {
    pub(crate) fn new(max: u32) -> Self {
        LiveInstances {
            count: AtomicU32::new(0),
            max,
        }
    }

    fn acquire(self: &Arc<Self>) -> Result<InstanceSlot, PluginFault> {
        let previous = self.count.fetch_add(1, Ordering::AcqRel);
        if previous >= self.max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(PluginFault::Instantiate(format!(
                "all {} plugin instances of the runtime are in use",
                self.max
            )));
        }
        Ok(InstanceSlot(self.clone()))
    }

    pub(crate) fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }
}

/// One unit of [`LiveInstances`], given back on drop.
struct InstanceSlot(Arc<LiveInstances>);

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) struct PluginInstance {
    store: Store<HostState>,
    bindings: Plugin,
    /// Hook calls served (not counting `configure`).
    calls: u32,
    /// Linear memory size right after `configure`.
    baseline_memory: usize,
    _slot: InstanceSlot,
}

impl PluginInstance {
    /// Instantiates the plugin and calls `configure` with the route's
    /// config. `Ok((instance, Err(message)))` is a config the plugin rejected.
    pub(crate) async fn new(
        recipe: &InstanceRecipe,
    ) -> Result<(PluginInstance, Result<PluginInfo, String>), PluginFault> {
        let slot = recipe.live.acquire()?;
        let state = HostState::new(
            recipe.guest.clone(),
            recipe.shared.clone(),
            recipe.limits.memory_bytes,
            recipe.epoch.clone(),
            recipe.slow_calls.clone(),
            recipe.output_limit.clone(),
        );
        let mut store = Store::new(recipe.pre.engine(), state);
        store.limiter(|state| &mut state.memory);
        // At every tick: yield to the executor, or stop a call past its
        // budget (`CallBudget`).
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().budget.at_tick()));
        // The epoch deadline starts at 0: set it before instantiating.
        store.data_mut().begin_call(recipe.configure_budget);
        store.set_epoch_deadline(1);
        let bindings = match recipe.pre.instantiate_async(&mut store).await {
            Ok(bindings) => bindings,
            Err(error) => {
                store.data_mut().end_call();
                emit_unserved(recipe, &mut store);
                return Err(
                    match classify(&error, store.data(), recipe.configure_budget) {
                        PluginFault::Trap(message) => PluginFault::Instantiate(message),
                        other => other,
                    },
                );
            }
        };
        let mut instance = PluginInstance {
            store,
            bindings,
            calls: 0,
            baseline_memory: 0,
            _slot: slot,
        };
        // `configure` gets the same budget as instantiation, afresh.
        instance
            .store
            .data_mut()
            .begin_call(recipe.configure_budget);
        instance.store.set_epoch_deadline(1);
        let configured = instance
            .bindings
            .tailgate_plugin_hooks()
            .call_configure(&mut instance.store, &recipe.config_json)
            .await
            .map_err(|error| classify(&error, instance.store.data(), recipe.configure_budget));
        instance.store.data_mut().end_call();
        emit_unserved(recipe, &mut instance.store);
        let configured = configured?;
        if let Ok(info) = &configured {
            instance.store.data_mut().use_scope(&info.state_scope);
        }
        instance.baseline_memory = instance.store.data().memory.size();
        Ok((instance, configured))
    }

    /// Starts a hook call under the hook budget: returns the bindings and the
    /// store to make it with. End it with [`PluginInstance::end_call`].
    pub(crate) fn begin_call(
        &mut self,
        recipe: &InstanceRecipe,
    ) -> (&Plugin, &mut Store<HostState>) {
        self.store.data_mut().begin_call(recipe.limits.hook_timeout);
        self.store.set_epoch_deadline(1);
        (&self.bindings, &mut self.store)
    }

    /// Ends the call [`PluginInstance::begin_call`] started with its
    /// `result`, a fault named, and counts it.
    pub(crate) fn end_call<R>(
        &mut self,
        recipe: &InstanceRecipe,
        result: wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        self.store.data_mut().end_call();
        self.calls = self.calls.saturating_add(1);
        result.map_err(|error| classify(&error, self.store.data(), recipe.limits.hook_timeout))
    }

    /// Why `info`'s request checks cannot be made, if they cannot: a zone
    /// use not registered on this instance (in `configure`), or a jail
    /// name `ban-check` would refuse.
    pub(crate) fn unusable_checks(&self, info: &PluginInfo) -> Option<String> {
        let registered = self.store.data().zone_uses.len();
        let checks = &info.request_checks;
        if checks
            .checks
            .iter()
            .any(|check| (check.zone as usize) >= registered)
        {
            return Some(
                "plugin bug: plugin-info.request-checks names a zone use configure did not \
                 register with rate-limit-zone"
                    .to_owned(),
            );
        }
        let max = self.store.data().shared.limits.max_key_bytes;
        checks
            .client_bans
            .iter()
            .find(|jail| jail.is_empty() || jail.len() > max)
            .map(|jail| {
                format!(
                    "plugin bug: plugin-info.request-checks.client-bans names the jail {jail:?}: \
                     a jail name is 1 to {max} bytes"
                )
            })
    }

    /// The request checks of `checks` for a request from `client_ip`, made
    /// on this instance's host state without entering the guest, in order
    /// up to the first that does not pass. True when every one passed;
    /// otherwise the decisions are kept for the hook's own checks (see
    /// [`HostState::pre_checked`]), which must run next on this instance.
    pub(crate) async fn request_checks(
        &mut self,
        checks: &RequestChecks,
        client_ip: IpAddress,
    ) -> Result<bool, PluginFault> {
        let state = self.store.data_mut();
        // Kept apart while checking, so a use declared twice is counted
        // twice, as two checks in the hook would be (the buffer's room is
        // reused from request to request).
        let mut decided = std::mem::take(&mut state.pre_checked);
        decided.clear();
        for check in &checks.checks {
            let decision = host::Host::rate_limit_check(
                state,
                check.zone,
                RateKey::Address(client_ip),
                check.dry_run,
            )
            .await
            .map_err(|e| PluginFault::Trap(format!("request check: {e:#}")))?;
            let passed = decision == RateDecision::Pass;
            decided.push(PreChecked {
                zone: check.zone,
                client_ip,
                dry_run: check.dry_run,
                decision,
            });
            if !passed {
                state.pre_checked = decided;
                return Ok(false);
            }
        }
        decided.clear();
        state.pre_checked = decided;
        if checks.client_bans.is_empty() {
            return Ok(true);
        }
        // The key `ban-check` would get from a plugin keying on the client.
        let key = address_text::ip_text(client_ip.into());
        for jail in &checks.client_bans {
            let ban = host::Host::ban_check(state, jail.clone(), key.clone())
                .await
                .map_err(|e| PluginFault::Trap(format!("request check: {e:#}")))?;
            if ban.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What the guest logged during the last call, for the caller to write
    /// with the request it served.
    pub(crate) fn take_logs(&mut self) -> PluginLogs {
        self.store.data_mut().logs.take()
    }

    /// Whether the instance may serve another call: under `max_calls`, and
    /// its memory has not grown past half of the room it had after
    /// `configure` (a leak or a big request; a fresh one starts small).
    pub(crate) fn reusable(&self, max_calls: u32) -> bool {
        let memory = &self.store.data().memory;
        let headroom = memory.cap().saturating_sub(self.baseline_memory);
        let grown = memory.size().saturating_sub(self.baseline_memory);
        self.calls < max_calls && grown <= headroom / 2
    }
}

/// Writes what instantiation and `configure` logged: no request to name.
fn emit_unserved(recipe: &InstanceRecipe, store: &mut Store<HostState>) {
    let logs = store.data_mut().logs.take();
    logs.emit(&recipe.guest, None, recipe.shared.observer.as_deref());
}

/// The time instantiation and `configure` may take together: the hook
/// budget, but at least one second. `configure` runs once per instance (at
/// load, or when the pool grows), does the heavy lifting (regexes compiled,
/// tables built), and on a loaded machine a wall-clock budget of a few
/// milliseconds would reject a good config; a spinning `configure` is still
/// stopped.
pub(crate) fn configure_budget(limits: &Limits) -> Duration {
    limits.hook_timeout.max(Duration::from_secs(1))
}

/// Names the fault behind a failed call. The memory cap is known from the
/// limiter's record, the time budget from the epoch trap; anything else is
/// a trap, described by its cause and the end of the guest's stderr (where
/// a Rust guest's panic message is).
fn classify(error: &wasmtime::Error, state: &HostState, budget: Duration) -> PluginFault {
    if state.memory.denied() {
        return PluginFault::MemoryLimit(state.memory.cap());
    }
    if state.budget.timed_out() || matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return PluginFault::Timeout(budget);
    }
    let cause = error.root_cause().to_string();
    let stderr = state.stderr_tail.text();
    if stderr.is_empty() {
        PluginFault::Trap(cause)
    } else {
        let stderr: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        PluginFault::Trap(format!("{cause}; guest stderr: {}", stderr.join(" | ")))
    }
}

/// Links what plugins may import: WASI p2 (its async implementation, on an
/// empty context) and the `host` interface. The `host` imports are sync
/// today (in-memory state); one that waits (a Redis round trip) becomes an
/// `async` import in `bindings.rs` and is linked by the same call, with
/// `func_wrap_async` underneath (docs/plugin-runtime.md).
pub(crate) fn link(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}
