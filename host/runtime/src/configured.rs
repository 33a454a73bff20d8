//! A configured plugin's hook calls, as the pipeline makes them per
//! request: the header lists and text fields narrowed to what the plugin
//! declared, the call on an idle instance (or a fresh one) under its limits,
//! its faults reported and its log lines written with the request they
//! served.

use std::time::Instant;

use wasmtime::Store;

use crate::bindings::Plugin;
use crate::host_state::{GuestIdentity, HostState};
use crate::instance::PluginInstance;
use crate::metrics::{CallMetrics, FaultKind};
use crate::plugin_log::{PluginLogs, RequestContext};
use crate::{
    field_filter, header_filter, ConfiguredPlugin, Hook, HookSet, Limits, LogLine, LogRecord,
    PluginFault, PluginInfo, RequestAction, RequestEdits, RequestHead, ResponseEdits, ResponseHead,
};

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

    /// `on-request` alone: the plugin's fixed edits are its chain's
    /// ([`ChainedPlugin`](crate::ChainedPlugin) merges them, for the proxy
    /// and the harness alike). A plugin without the hook goes on with no
    /// edits, without a call. The plugin sees only the request fields it
    /// asked for: `req` is narrowed for the call and is whole again when
    /// this returns.
    pub fn on_request(&self, req: &mut RequestHead) -> Result<RequestAction, PluginFault> {
        if !self.implements(Hook::Request) {
            return Ok(RequestAction::Continue(RequestEdits {
                headers: Vec::new(),
                path: None,
                delay_ms: 0,
                vars: Vec::new(),
            }));
        }
        let saved = header_filter::narrow(&self.info.request_headers, &mut req.headers);
        let fields = field_filter::narrow_request(self.info.request_fields, req);
        let (result, logs) = self.call(Hook::Request, |plugin, store| {
            plugin.tailgate_plugin_hooks().call_on_request(store, req)
        });
        field_filter::restore_request(req, fields);
        header_filter::restore(&mut req.headers, saved);
        self.emit(logs, RequestContext::of_request(req));
        result
    }

    /// `on-response` alone, both header lists narrowed for the call like
    /// [`ConfiguredPlugin::on_request`]'s; no edits, without a call, when
    /// the plugin has no response hook.
    pub fn on_response(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<ResponseEdits, PluginFault> {
        if !self.implements(Hook::Response) {
            return Ok(ResponseEdits {
                headers: Vec::new(),
            });
        }
        let saved_req = header_filter::narrow(&self.info.request_headers, &mut req.headers);
        let saved_resp = header_filter::narrow(&self.info.response_headers, &mut resp.headers);
        let fields = field_filter::narrow_request(self.info.request_fields, req);
        let (result, logs) = self.call(Hook::Response, |plugin, store| {
            plugin
                .tailgate_plugin_hooks()
                .call_on_response(store, req, resp)
        });
        field_filter::restore_request(req, fields);
        header_filter::restore(&mut req.headers, saved_req);
        header_filter::restore(&mut resp.headers, saved_resp);
        self.emit(logs, RequestContext::of_request(req));
        result
    }

    /// `on-log`, the record's two header lists narrowed for the call.
    /// `Ok(None)`: the plugin dropped the line, or does not implement `on-log`
    /// (tell them apart with [`ConfiguredPlugin::implements`]).
    pub fn on_log(&self, rec: &mut LogRecord) -> Result<Option<LogLine>, PluginFault> {
        if !self.implements(Hook::Log) {
            return Ok(None);
        }
        let saved_req = header_filter::narrow(&self.info.request_headers, &mut rec.request_headers);
        let saved_resp =
            header_filter::narrow(&self.info.response_headers, &mut rec.response_headers);
        let fields = field_filter::narrow_log(self.info.log_fields, rec);
        let (result, logs) = self.call(Hook::Log, |plugin, store| {
            plugin.tailgate_plugin_hooks().call_on_log(store, rec)
        });
        field_filter::restore_log(rec, fields);
        header_filter::restore(&mut rec.request_headers, saved_req);
        header_filter::restore(&mut rec.response_headers, saved_resp);
        self.emit(logs, RequestContext::of_record(rec));
        result
    }

    /// Runs one hook on an idle instance (or a fresh one), records metrics,
    /// and keeps the instance if it is still fit for reuse. Returns what the
    /// guest logged too, for the caller to write with the request once its
    /// fields are whole again.
    fn call<R>(
        &self,
        hook: Hook,
        entry: impl FnOnce(&Plugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> (Result<R, PluginFault>, PluginLogs) {
        let mut instance = match self.pool.take() {
            Some(instance) => instance,
            None => match self.fresh_instance() {
                Ok(instance) => instance,
                Err(fault) => return (Err(fault), PluginLogs::default()),
            },
        };
        let started = Instant::now();
        let result = instance.call(&self.recipe, entry);
        self.metrics.call(hook, started.elapsed());
        let logs = instance.take_logs();
        let result = match result {
            Ok(value) => {
                if instance.reusable(self.max_calls_per_instance) {
                    self.pool.give_back(instance);
                }
                Ok(value)
            }
            Err(fault) => {
                drop(instance);
                report_fault(&self.metrics, &self.recipe.guest, hook, &fault);
                Err(fault)
            }
        };
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
    fn fresh_instance(&self) -> Result<PluginInstance, PluginFault> {
        let started = Instant::now();
        let made = PluginInstance::new(&self.recipe);
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

pub(crate) fn report_fault(
    metrics: &CallMetrics,
    guest: &GuestIdentity,
    hook: Hook,
    fault: &PluginFault,
) {
    let kind = FaultKind::of(fault);
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
