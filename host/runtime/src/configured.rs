//! A configured plugin's hook calls, as the pipeline makes them per
//! request: the header lists and text fields narrowed to what the plugin
//! declared, the call admitted by its guard (breaker, bound of slow calls)
//! and made async on an idle instance (or a fresh one) under its limits,
//! its faults reported and its log lines written with the request they
//! served. Blocking forms of the hooks serve tests, tools and the plugin
//! harness.

use std::time::Instant;

use crate::call_guard::{CallEnd, CallGuard, GuardState};
use crate::host_state::GuestIdentity;
use crate::instance::PluginInstance;
use crate::metrics::{CallMetrics, FaultKind};
use crate::plugin_log::{PluginLogs, RequestContext};
use crate::{
    field_filter, header_filter, ConfiguredPlugin, Hook, HookSet, Limits, LogRecord, LogVerdict,
    PluginFault, PluginInfo, RequestAction, RequestHead, ResponseEdits, ResponseHead,
};

/// Most records one `on-log` call takes: a batch's guest memory and time
/// stay small beside the hook budget, which covers the whole call.
pub const MAX_LOG_BATCH: usize = 64;

/// One guarded hook call: admitted by the call guard (or failed fast
/// without entering the guest), made on an idle or fresh instance under the
/// hook budget, its end told to the guard. `$call` gets the hooks interface
/// and the store and returns the bindings' call future. A macro rather than
/// a function taking an async closure: the call future borrows the store
/// and the heads, which a closure's return type cannot name.
macro_rules! call {
    ($plugin:expr, $hook:expr, |$hooks:ident, $store:ident| $call:expr) => {{
        let plugin: &ConfiguredPlugin = $plugin;
        call!(plugin, $hook, plugin.instance(), |$hooks, $store| $call)
    }};
    ($plugin:expr, $hook:expr, $instance:expr, |$hooks:ident, $store:ident| $call:expr) => {{
        let plugin: &ConfiguredPlugin = $plugin;
        match plugin.guard.admit($hook) {
            Err(fault) => (Err(fault), PluginLogs::default()),
            Ok(mut permit) => {
                let (result, logs) = match $instance.await {
                    Err(fault) => (Err(fault), PluginLogs::default()),
                    Ok(mut instance) => {
                        let started = Instant::now();
                        let (bindings, $store) = instance.begin_call(&plugin.recipe);
                        let $hooks = bindings.tailgate_plugin_hooks();
                        let returned = $call.await;
                        let result = instance.end_call(&plugin.recipe, returned);
                        plugin.after_call($hook, instance, started, result)
                    }
                };
                permit.finish(CallEnd::of(&result));
                (result, logs)
            }
        }
    }};
}

impl ConfiguredPlugin {
    pub fn name(&self) -> &str {
        &self.recipe.guest.plugin
    }
    pub fn route(&self) -> &str {
        &self.recipe.guest.route
    }
    /// The hooks the plugin declared in `configure`.
    pub fn hooks(&self) -> HookSet {
        self.info.hooks
    }
    /// What the plugin declared in `configure`: its hooks and the header
    /// fields they read.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
    /// Whether the plugin implements `hook`: whether a call enters the
    /// guest (the pipeline skips it if not).
    pub fn implements(&self, hook: Hook) -> bool {
        hook.is_in(self.info.hooks)
    }
    /// The phases the plugin takes part in: its hooks, and request or
    /// response where it has fixed edits (applied by its chain,
    /// [`ChainedPlugin`](crate::ChainedPlugin), without a call when the
    /// hook is left out).
    pub fn phases(&self) -> HookSet {
        self.info.hooks | self.info.fixed_edits.phases()
    }
    pub fn limits(&self) -> Limits {
        self.recipe.limits
    }
    /// Instances kept idle for the next calls.
    pub fn idle_instances(&self) -> usize {
        self.pool.idle()
    }

    /// How the plugin's calls are guarded (breaker, bound of calls at once).
    pub fn call_guard(&self) -> CallGuard {
        self.guard.settings()
    }
    /// Whether the plugin is tripped: its calls fail fast until a trial
    /// call after the cool-down returns.
    pub fn is_tripped(&self) -> bool {
        self.guard.is_tripped()
    }
    /// The same plugin with its calls guarded by `guard` (by default they
    /// are not, [`CallGuard::OFF`]).
    pub fn with_call_guard(mut self, guard: CallGuard) -> Self {
        self.guard = GuardState::new(
            guard,
            self.recipe.shared.clock.clone(),
            self.recipe.guest.clone(),
            self.recipe.slow_calls.clone(),
        );
        self
    }

    /// `on-request` alone, blocking (see [`ConfiguredPlugin::request_hook`]):
    /// for tests, tools and the plugin harness; never call it from a task
    /// of an async runtime (the proxy awaits `request_hook`).
    pub fn on_request(&self, req: &mut RequestHead) -> Result<RequestAction, PluginFault> {
        block_on(self.request_hook(req))
    }

    /// `on-request` alone: the plugin's fixed edits are its chain's
    /// ([`ChainedPlugin`](crate::ChainedPlugin) merges them, for the proxy
    /// and the harness alike). A plugin without the hook, or a request
    /// outside its `request-gate`, goes on with no edits, without a call.
    /// The plugin sees only the request fields it asked for: `req` is
    /// narrowed for the call and is whole again when this returns.
    pub async fn request_hook(&self, req: &mut RequestHead) -> Result<RequestAction, PluginFault> {
        if !self.implements(Hook::Request) {
            return Ok(RequestAction::go_on(Vec::new()));
        }
        // Outside the hook's gate, a request without checks goes on as if
        // the hook returned nothing; with checks, they are made all the
        // same and one that does not pass enters the hook.
        let checks = &self.info.request_checks;
        let unchecked = checks.checks.is_empty() && checks.client_bans.is_empty();
        if unchecked && !self.info.request_gate.admits(req) {
            return Ok(RequestAction::go_on(Vec::new()));
        }
        // The request checks first (`plugin-info.request-checks`): when
        // every one passes the plugin is not entered; otherwise the hook
        // runs on the same instance, which holds the decisions.
        // An instance that cannot be made is the hook call's fault below,
        // under the call guard.
        let mut checked = None;
        let instance = if unchecked {
            None
        } else {
            self.instance().await.ok()
        };
        if let Some(mut instance) = instance {
            match instance
                .request_checks(&self.info.request_checks, req.client_ip)
                .await
            {
                Ok(true) => {
                    self.pool.give_back(instance);
                    let vars = self.info.request_checks.passed.clone();
                    return Ok(RequestAction::go_on(vars));
                }
                Ok(false) => checked = Some(instance),
                Err(fault) => {
                    report_fault(&self.metrics, &self.recipe.guest, Hook::Request, &fault);
                    return Err(fault);
                }
            }
        }
        let instance = async {
            match checked {
                Some(instance) => Ok(instance),
                None => self.instance().await,
            }
        };
        let saved = header_filter::narrow(&self.info.request_headers, &mut req.headers);
        let fields = field_filter::narrow_request(self.info.request_fields, req);
        let (result, logs) = call!(self, Hook::Request, instance, |hooks, store| hooks
            .call_on_request(store, req));
        field_filter::restore_request(req, fields);
        header_filter::restore(&mut req.headers, saved);
        self.emit(logs, RequestContext::of_request(req));
        result
    }

    /// `on-response` alone, blocking, like [`ConfiguredPlugin::on_request`].
    pub fn on_response(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<ResponseEdits, PluginFault> {
        block_on(self.response_hook(req, resp))
    }

    /// `on-response` alone, both header lists narrowed for the call like
    /// [`ConfiguredPlugin::request_hook`]'s; no edits, without a call, when
    /// the plugin has no response hook or the request is outside its
    /// `response-gate`.
    pub async fn response_hook(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<ResponseEdits, PluginFault> {
        if !self.implements(Hook::Response) || !self.info.response_gate.admits(req) {
            return Ok(ResponseEdits {
                headers: Vec::new(),
            });
        }
        let saved_req = header_filter::narrow(&self.info.request_headers, &mut req.headers);
        let saved_resp = header_filter::narrow(&self.info.response_headers, &mut resp.headers);
        let fields = field_filter::narrow_request(self.info.request_fields, req);
        let (result, logs) = call!(self, Hook::Response, |hooks, store| hooks
            .call_on_response(store, req, resp));
        field_filter::restore_request(req, fields);
        header_filter::restore(&mut req.headers, saved_req);
        header_filter::restore(&mut resp.headers, saved_resp);
        self.emit(logs, RequestContext::of_request(req));
        result
    }

    /// `on-log` for one record, blocking (see
    /// [`ConfiguredPlugin::on_request`]); the proxy's log phase awaits
    /// [`ConfiguredPlugin::log_batch_hook`].
    pub fn on_log(&self, rec: &mut LogRecord) -> Result<LogVerdict, PluginFault> {
        block_on(self.log_hook(rec))
    }

    /// `on-log` for one record: a batch of one.
    pub async fn log_hook(&self, rec: &mut LogRecord) -> Result<LogVerdict, PluginFault> {
        let mut verdicts = self.log_batch_hook(std::slice::from_mut(rec)).await;
        verdicts.pop().unwrap_or(Ok(LogVerdict::Keep))
    }

    /// `on-log` for a batch of records (at most [`MAX_LOG_BATCH`] per call:
    /// a longer slice is called in chunks): one verdict or fault per
    /// record, in order. Each record's two header lists and its text
    /// fields are narrowed for the call and whole again when this returns.
    /// Every record is `Keep` when the plugin does not implement `on-log`.
    /// A call that faults is made again one record at a time, so only the
    /// record that faults alone (a header too big for the instance's
    /// memory) loses its shaping; a call that failed fast (tripped,
    /// saturated) fails its records without entering the guest again.
    /// What the guest logs names the request when a call holds one. A
    /// record outside the plugin's `log-gate` is `Keep` without a call.
    pub async fn log_batch_hook(
        &self,
        recs: &mut [LogRecord],
    ) -> Vec<Result<LogVerdict, PluginFault>> {
        if !self.implements(Hook::Log) {
            return recs.iter().map(|_| Ok(LogVerdict::Keep)).collect();
        }
        let gate = &self.info.log_gate;
        if recs.iter().all(|rec| gate.admits(rec)) {
            return self.log_calls(recs).await;
        }
        let mut verdicts: Vec<_> = recs.iter().map(|_| Ok(LogVerdict::Keep)).collect();
        let inside: Vec<usize> = (0..recs.len())
            .filter(|&at| gate.admits(&recs[at]))
            .collect();
        if inside.is_empty() {
            return verdicts;
        }
        let mut gathered = Gathered::new(recs, &inside);
        let made = self.log_calls(gathered.front()).await;
        drop(gathered);
        for (&at, verdict) in inside.iter().zip(made) {
            verdicts[at] = verdict;
        }
        verdicts
    }

    /// [`ConfiguredPlugin::log_batch_hook`] for records that all enter.
    async fn log_calls(&self, recs: &mut [LogRecord]) -> Vec<Result<LogVerdict, PluginFault>> {
        let mut verdicts = Vec::with_capacity(recs.len());
        for chunk in recs.chunks_mut(MAX_LOG_BATCH) {
            match self.log_chunk(chunk).await {
                Ok(made) => verdicts.extend(made.into_iter().map(Ok)),
                Err(fault) if chunk.len() == 1 || fault.is_fail_fast() => {
                    verdicts.extend(chunk.iter().map(|_| Err(fault.clone())));
                }
                Err(_) => {
                    for rec in chunk.iter_mut() {
                        let alone = self.log_chunk(std::slice::from_mut(rec)).await;
                        verdicts.push(alone.map(|mut made| made.pop().unwrap_or(LogVerdict::Keep)));
                    }
                }
            }
        }
        verdicts
    }

    async fn log_chunk(&self, recs: &mut [LogRecord]) -> Result<Vec<LogVerdict>, PluginFault> {
        let info = &self.info;
        let saved: Vec<_> = recs
            .iter_mut()
            .map(|rec| {
                (
                    header_filter::narrow(&info.request_headers, &mut rec.request_headers),
                    header_filter::narrow(&info.response_headers, &mut rec.response_headers),
                    field_filter::narrow_log(info.log_fields, rec),
                )
            })
            .collect();
        let (result, logs) = call!(self, Hook::Log, |hooks, store| hooks
            .call_on_log(store, recs));
        for (rec, (saved_req, saved_resp, fields)) in recs.iter_mut().zip(saved) {
            field_filter::restore_log(rec, fields);
            header_filter::restore(&mut rec.request_headers, saved_req);
            header_filter::restore(&mut rec.response_headers, saved_resp);
        }
        match recs {
            [rec] => self.emit(logs, RequestContext::of_record(rec)),
            _ => logs.emit(
                &self.recipe.guest,
                None,
                self.recipe.shared.observer.as_deref(),
            ),
        }
        let verdicts = result?;
        if verdicts.len() != recs.len() {
            let fault = PluginFault::Trap(format!(
                "on-log returned {} verdicts for {} records",
                verdicts.len(),
                recs.len()
            ));
            report_fault(&self.metrics, &self.recipe.guest, Hook::Log, &fault);
            return Err(fault);
        }
        Ok(verdicts)
    }

    /// An instance for a call: an idle one, or a fresh one (made at most
    /// `INSTANTIATIONS_AT_ONCE` at a time, see `instance_pool`).
    async fn instance(&self) -> Result<PluginInstance, PluginFault> {
        if let Some(instance) = self.pool.take() {
            return Ok(instance);
        }
        // A few new instances at a time; a call that waited for its turn
        // mostly finds an instance another call gave back.
        let _turn = self.pool.turn_to_instantiate().await;
        match self.pool.take() {
            Some(instance) => Ok(instance),
            None => self.fresh_instance().await,
        }
    }

    /// After a call on `instance`: records metrics, and keeps the instance
    /// if it is still fit for reuse (a faulted one is dropped). Returns what
    /// the guest logged too, for the caller to write with the request once
    /// its fields are whole again.
    fn after_call<R>(
        &self,
        hook: Hook,
        mut instance: PluginInstance,
        started: Instant,
        result: Result<R, PluginFault>,
    ) -> (Result<R, PluginFault>, PluginLogs) {
        self.metrics.call(hook, started.elapsed());
        let logs = instance.take_logs();
        match &result {
            Ok(_) => {
                if instance.reusable(self.max_calls_per_instance) {
                    self.pool.give_back(instance);
                }
            }
            Err(fault) => {
                drop(instance);
                report_fault(&self.metrics, &self.recipe.guest, hook, fault);
            }
        }
        (result, logs)
    }

    /// Writes a call's log lines, naming the request it served.
    fn emit(&self, logs: PluginLogs, request: RequestContext<'_>) {
        logs.emit(
            &self.recipe.guest,
            Some(request),
            self.recipe.shared.observer.as_deref(),
        );
    }

    /// A new instance, configured like the first; its faults are reported
    /// under the `configure` hook.
    async fn fresh_instance(&self) -> Result<PluginInstance, PluginFault> {
        let started = Instant::now();
        let made = PluginInstance::new(&self.recipe).await;
        self.metrics.call(Hook::Configure, started.elapsed());
        let fault = match made {
            Ok((instance, Ok(_))) => return Ok(instance),
            Ok((_, Err(message))) => PluginFault::Instantiate(format!(
                "configure rejected the config on a new instance: {message}"
            )),
            Err(fault) => fault,
        };
        report_fault(&self.metrics, &self.recipe.guest, Hook::Configure, &fault);
        Err(fault)
    }
}

/// Drives a hook call (or an instantiation, or a chain's phase) to its end
/// on this thread, for blocking callers (the blocking hook methods, tests,
/// the plugin harness): polled here, the thread parked while the guest has
/// yielded and woken when it may go on. Inside the ambient tokio runtime
/// (the caller's, or wasmtime-wasi's own outside one), so a guest's WASI
/// clock can still wait on a timer.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| park_until_ready(future))
}

fn park_until_ready<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }

    let mut future = std::pin::pin!(future);
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

pub(crate) fn report_fault(
    metrics: &CallMetrics,
    guest: &GuestIdentity,
    hook: Hook,
    fault: &PluginFault,
) {
    let Some(kind) = FaultKind::of(fault) else {
        return;
    };
    metrics.fault(hook, kind);
    tracing::warn!(
        plugin = %guest.plugin,
        route = %guest.route,
        hook = hook.as_str(),
        kind = kind.as_str(),
        error = %fault,
        "plugin fault; instance discarded"
    );
}

/// A batch's records that enter a log hook, moved to the front of the
/// batch in their order (the hook takes one contiguous list) and put back
/// where they were when this is dropped, even if the call's future is.
struct Gathered<'a> {
    recs: &'a mut [LogRecord],
    /// Ascending indices of the records moved to the front.
    inside: &'a [usize],
}

impl<'a> Gathered<'a> {
    fn new(recs: &'a mut [LogRecord], inside: &'a [usize]) -> Self {
        // `inside` ascends, so index `at` still holds its own record when
        // its turn comes: every earlier swap wrote below `at` or at an
        // earlier index of `inside`.
        for (to, &at) in inside.iter().enumerate() {
            recs.swap(to, at);
        }
        Gathered { recs, inside }
    }

    fn front(&mut self) -> &mut [LogRecord] {
        &mut self.recs[..self.inside.len()]
    }
}

impl Drop for Gathered<'_> {
    fn drop(&mut self) {
        for (to, &at) in self.inside.iter().enumerate().rev() {
            self.recs.swap(to, at);
        }
    }
}
