//! Each route's plugin chain: the plugins of `[[routes.plugins]]`, loaded
//! into the `tailgate-runtime` at startup and run by the pipeline at three
//! phases — request hooks in chain order before the upstream, response hooks
//! in reverse order (like nginx/Envoy response filters), and the log hook of
//! the last plugin that has one. Each entry's fail policy (`on_failure`, by
//! default the route's `plugin_failure`) decides what a fault does. One more
//! chain, `[access_log] plugins`, shapes the lines of requests no route took.

mod edits;
mod fixed;
mod load;

pub use edits::{apply_to_map, check_immediate_response, InvalidOutput, WireEdit};

use edits::{apply_to_list, check_header_edits, check_path, set_target};
use fixed::PreparedFixedEdits;
pub use load::UNROUTED_CHAIN;
use load::{configure_entries, unrouted_chain};

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use tailgate_runtime::{
    ConfigureError, ConfiguredPlugin, FixedEdits, HeaderFilter, HookSet, ImmediateResponse, Limits,
    LoadError, LogFieldSet, LogLine, LogRecord, PluginFault, RequestAction, RequestEdits,
    RequestHead, ResponseEdits, ResponseHead, Runtime, Var,
};

use crate::config::model::{Config, FailurePolicy, RouteName};

/// Why the chains could not be loaded; names the plugin and, where it
/// applies, the route.
#[derive(Debug, thiserror::Error)]
pub enum ChainLoadError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Configure(#[from] ConfigureError),
    #[error("route {route}, plugin {plugin}: not defined in [plugins]")]
    UndefinedPlugin { route: String, plugin: String },
    #[error("[access_log] plugin {plugin}: it has no log hook, and only the log hook runs for lines without a route")]
    NoLogHook { plugin: String },
    #[error("route {route}, plugin {plugin}: its fixed edits cannot go on the wire: {reason}")]
    InvalidFixedEdits {
        route: String,
        plugin: String,
        reason: InvalidOutput,
    },
}

/// Why a plugin's hook gave nothing usable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HookFault {
    /// The call trapped, timed out, ran out of memory or could not start.
    #[error(transparent)]
    Plugin(#[from] PluginFault),
    /// The call returned something that cannot go on the wire.
    #[error("returned {0}")]
    InvalidOutput(#[from] InvalidOutput),
}

/// The hook surface of one configured plugin, as the chain calls it. The
/// runtime's [`ConfiguredPlugin`] implements it; tests use scripted plugins.
/// The heads are `&mut` so the runtime can narrow their header lists to the
/// fields the plugin declared for the call; they are whole again when a
/// hook returns.
pub trait PluginHooks: Send + Sync {
    fn name(&self) -> &str;
    /// The hooks that enter the plugin.
    fn hooks(&self) -> HookSet;
    /// The header edits the plugin makes to every request and response
    /// (`plugin-info.fixed-edits`), which the chain makes itself at the
    /// plugin's place, without a call. None by default.
    fn fixed_edits(&self) -> FixedEdits {
        FixedEdits::none()
    }
    /// The request hook alone (the chain adds the fixed edits). Called only
    /// when [`PluginHooks::hooks`] has it.
    fn on_request(&self, req: &mut RequestHead) -> Result<RequestAction, PluginFault>;
    /// The response hook alone, as [`PluginHooks::on_request`].
    fn on_response(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<ResponseEdits, PluginFault>;
    fn on_log(&self, rec: &mut LogRecord) -> Result<Option<LogLine>, PluginFault>;
    /// The request header fields the hooks read (`plugin-info`).
    fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::All
    }
    /// The response header fields the hooks read (`plugin-info`).
    fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::All
    }
    /// The optional log-record fields the log hook reads (`plugin-info`).
    fn log_record_fields(&self) -> LogFieldSet {
        LogFieldSet::all()
    }
}

impl PluginHooks for ConfiguredPlugin {
    fn name(&self) -> &str {
        ConfiguredPlugin::name(self)
    }
    fn hooks(&self) -> HookSet {
        ConfiguredPlugin::hooks(self)
    }
    fn fixed_edits(&self) -> FixedEdits {
        self.info().fixed_edits.clone()
    }
    fn on_request(&self, req: &mut RequestHead) -> Result<RequestAction, PluginFault> {
        self.request_hook(req)
    }
    fn on_response(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<ResponseEdits, PluginFault> {
        self.response_hook(req, resp)
    }
    fn on_log(&self, rec: &mut LogRecord) -> Result<Option<LogLine>, PluginFault> {
        ConfiguredPlugin::on_log(self, rec)
    }
    fn request_headers(&self) -> HeaderFilter {
        self.info().request_headers.clone()
    }
    fn response_headers(&self) -> HeaderFilter {
        self.info().response_headers.clone()
    }
    fn log_record_fields(&self) -> LogFieldSet {
        self.info().log_fields
    }
}

/// Every route's chain, built once at startup.
pub struct PluginChains {
    chains: HashMap<RouteName, Arc<RouteChain>>,
    /// `[access_log] plugins`: for the lines no route's chain shapes.
    unrouted: Option<Arc<RouteChain>>,
    loaded_plugins: usize,
}

impl PluginChains {
    /// Load every plugin of `[plugins]` once, then configure it for each
    /// route that uses it, with that route's limits. The first plugin that
    /// fails to load or rejects its config fails the whole load.
    pub fn load(config: &Config, runtime: &Runtime) -> Result<PluginChains, ChainLoadError> {
        let mut loaded = BTreeMap::new();
        for (name, wasm) in &config.plugins {
            tracing::debug!(plugin = %name, wasm = %wasm.display(), "loading plugin");
            loaded.insert(name, runtime.load(name.as_str(), wasm)?);
        }
        let mut chains = HashMap::with_capacity(config.routes.len());
        for route in &config.routes {
            let limits = Limits {
                hook_timeout: route.hook_timeout,
                memory_bytes: route.memory_limit,
            };
            let entries = configure_entries(runtime, &loaded, &route.name, &route.plugins, limits)?;
            let chain = RouteChain::new(route.name.clone(), entries);
            chains.insert(route.name.clone(), Arc::new(chain));
        }
        let unrouted = unrouted_chain(config, runtime, &loaded)?;
        Ok(PluginChains {
            chains,
            unrouted,
            loaded_plugins: loaded.len(),
        })
    }

    /// Chains built by hand (tests, or a pipeline without a runtime).
    pub fn from_chains(chains: impl IntoIterator<Item = RouteChain>) -> PluginChains {
        PluginChains {
            chains: chains
                .into_iter()
                .map(|c| (c.route.clone(), Arc::new(c)))
                .collect(),
            unrouted: None,
            loaded_plugins: 0,
        }
    }

    /// The same, with `chain` for the lines of requests no route took.
    pub fn with_unrouted(mut self, chain: RouteChain) -> PluginChains {
        self.unrouted = Some(Arc::new(chain));
        self
    }

    /// The chain of `[access_log] plugins`, whose log hook shapes the lines
    /// of requests no route took; `None` when there are none.
    pub fn unrouted(&self) -> Option<Arc<RouteChain>> {
        self.unrouted.clone()
    }

    /// The chain of a configured route (empty when it has no plugins);
    /// `None` for a route the config does not have.
    pub fn for_route(&self, route: &RouteName) -> Option<Arc<RouteChain>> {
        self.chains.get(route).cloned()
    }

    /// How many plugin components were loaded.
    pub fn loaded_plugins(&self) -> usize {
        self.loaded_plugins
    }
}

/// One plugin of a chain with its fail policy.
pub struct ChainEntry {
    plugin: Box<dyn PluginHooks>,
    /// The hooks that enter the plugin: what reads the heads' fields.
    hooks: HookSet,
    /// The phases it runs in (its hooks and its fixed edits' sides).
    phases: HookSet,
    /// Its fixed edits, parsed at load.
    fixed: PreparedFixedEdits,
    /// Whether a response hook runs after this plugin's response phase (a
    /// plugin earlier in the chain): only then do its response edits go
    /// into the response head's list, for that hook to read.
    response_read_after: bool,
    on_failure: FailurePolicy,
}

impl ChainEntry {
    /// The entry for `plugin`; an error when its fixed edits could not go
    /// on the wire.
    pub fn new(
        plugin: Box<dyn PluginHooks>,
        on_failure: FailurePolicy,
    ) -> Result<ChainEntry, InvalidOutput> {
        let hooks = plugin.hooks();
        let declared = plugin.fixed_edits();
        let fixed = PreparedFixedEdits::new(&declared)?;
        Ok(ChainEntry {
            plugin,
            hooks,
            phases: hooks | declared.phases(),
            fixed,
            response_read_after: true,
            on_failure,
        })
    }
}

/// What the request hooks decided.
#[derive(Debug)]
pub enum RequestDecision {
    /// Forward the (edited) request after `delay_ms` (the sum of every
    /// plugin's delay), carrying the vars the plugins set. `header_edits`
    /// are every applied header edit in order, for the pipeline to apply to
    /// the header map it forwards.
    Continue {
        delay_ms: u32,
        vars: Vec<Var>,
        header_edits: Vec<WireEdit>,
    },
    /// A plugin answered; later request hooks and the upstream are skipped.
    /// The vars are every var set so far, the responding plugin's included
    /// (they are moved out of the `ImmediateResponse`).
    Respond(ImmediateResponse, Vec<Var>),
    /// A fail-closed plugin faulted: the pipeline answers 500.
    Failed { plugin: String, fault: HookFault },
}

/// A fail-closed plugin faulted in a response hook: the pipeline replaces
/// the response with a host-generated 500.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin}: {fault}")]
pub struct ChainFailure {
    pub plugin: String,
    pub fault: HookFault,
}

/// One plugin's request phase, its output checked and applied to the head.
enum RequestStep {
    /// Go on: the hook's answer and its header edits, parsed.
    Continue(RequestEdits, Vec<WireEdit>),
    /// The plugin answered.
    Respond(ImmediateResponse),
}

/// What the log hook decided.
#[derive(Debug)]
pub enum LogDecision {
    /// Write this line instead of the default one.
    Line(LogLine),
    /// The plugin dropped the line.
    Drop,
    /// No plugin of the chain has a log hook: write the default line.
    Default,
    /// The log hook faulted (whatever the policy): write the default line
    /// — a line is never lost — and count the fault.
    Failed { plugin: String, fault: HookFault },
}

/// The plugins of one route, in config order.
pub struct RouteChain {
    route: RouteName,
    entries: Vec<ChainEntry>,
    /// The response fields any response hook reads: what the response
    /// head's list is built with.
    response_fields: HeaderFilter,
    /// The request and response fields the log hook reads (the last
    /// plugin with one): what the log record's lists are built with.
    log_fields: (HeaderFilter, HeaderFilter),
    /// Whether the log hook reads `http-host` (the record gets it then).
    log_reads_http_host: bool,
}

impl RouteChain {
    pub fn new(route: RouteName, mut entries: Vec<ChainEntry>) -> RouteChain {
        // Response phases run last to first: what entry i edits is read by
        // the response hooks of entries 0..i.
        let mut hook_before = false;
        for entry in &mut entries {
            entry.response_read_after = hook_before;
            hook_before |= entry.hooks.contains(HookSet::RESPONSE);
        }
        let response_fields = entries
            .iter()
            .filter(|e| e.hooks.contains(HookSet::RESPONSE))
            .map(|e| e.plugin.response_headers())
            .fold(HeaderFilter::none(), HeaderFilter::union);
        // Without a log hook nobody reads the record's header lists.
        let log_entry = entries.iter().rfind(|e| e.hooks.contains(HookSet::LOG));
        let log_fields = log_entry.map_or((HeaderFilter::none(), HeaderFilter::none()), |e| {
            (e.plugin.request_headers(), e.plugin.response_headers())
        });
        let log_reads_http_host = log_entry.is_some_and(|e| {
            e.plugin
                .log_record_fields()
                .contains(LogFieldSet::HTTP_HOST)
        });
        RouteChain {
            route,
            entries,
            response_fields,
            log_fields,
            log_reads_http_host,
        }
    }

    /// The response header fields the response hooks read.
    pub fn response_fields(&self) -> &HeaderFilter {
        &self.response_fields
    }

    /// The request and response header fields the log hook reads.
    pub fn log_fields(&self) -> (&HeaderFilter, &HeaderFilter) {
        (&self.log_fields.0, &self.log_fields.1)
    }

    /// Whether the log hook reads the record's `http-host`.
    pub fn log_reads_http_host(&self) -> bool {
        self.log_reads_http_host
    }

    pub fn route(&self) -> &RouteName {
        &self.route
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any plugin of the chain runs in this phase, by a hook or by
    /// fixed edits (lets the pipeline skip building a `LogRecord` or
    /// `ResponseHead` nobody reads).
    pub fn has_hook(&self, hook: HookSet) -> bool {
        self.entries.iter().any(|e| e.phases.contains(hook))
    }

    /// Run the request phase in chain order: each plugin's fixed edits,
    /// then its hook's, are applied to `head` before the next plugin sees
    /// it; a faulting fail-open plugin is skipped and none of its edits
    /// (fixed ones included) are applied.
    pub fn on_request(&self, head: &mut RequestHead) -> RequestDecision {
        let mut delay_ms: u32 = 0;
        let mut vars = Vec::new();
        let mut header_edits = Vec::new();
        for entry in self.with_hook(HookSet::REQUEST) {
            let action = if entry.hooks.contains(HookSet::REQUEST) {
                entry.plugin.on_request(head)
            } else {
                Ok(RequestAction::Continue(RequestEdits {
                    headers: Vec::new(),
                    path: None,
                    delay_ms: 0,
                    vars: Vec::new(),
                }))
            };
            let outcome = action
                .map_err(HookFault::from)
                .and_then(|action| match action {
                    RequestAction::Continue(edits) => {
                        let checked = apply_request_edits(head, entry.fixed.request(), &edits)?;
                        Ok(RequestStep::Continue(edits, checked))
                    }
                    RequestAction::Respond(mut resp) => {
                        check_immediate_response(&mut resp)?;
                        Ok(RequestStep::Respond(resp))
                    }
                });
            match outcome {
                Ok(RequestStep::Continue(edits, checked)) => {
                    delay_ms = delay_ms.saturating_add(edits.delay_ms);
                    vars.extend(edits.vars);
                    header_edits.extend_from_slice(entry.fixed.request());
                    header_edits.extend(checked);
                }
                Ok(RequestStep::Respond(mut resp)) => {
                    vars.append(&mut resp.vars);
                    return RequestDecision::Respond(resp, vars);
                }
                Err(fault) => {
                    if self.fault(entry, "request", &fault) == FailurePolicy::Closed {
                        return RequestDecision::Failed {
                            plugin: entry.plugin.name().to_owned(),
                            fault,
                        };
                    }
                }
            }
        }
        RequestDecision::Continue {
            delay_ms,
            vars,
            header_edits,
        }
    }

    /// Run the response phase in reverse chain order: each plugin's fixed
    /// edits that apply, then its hook's, applied to `resp` before an
    /// earlier plugin's hook reads it. Returns every applied edit in order,
    /// for the pipeline to apply to the response's header map.
    pub fn on_response(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<Vec<WireEdit>, ChainFailure> {
        let mut applied = Vec::new();
        for entry in self.with_hook(HookSet::RESPONSE).rev() {
            let hook_edits = if entry.hooks.contains(HookSet::RESPONSE) {
                entry
                    .plugin
                    .on_response(req, resp)
                    .map_err(HookFault::from)
                    .and_then(|edits| Ok(check_header_edits(&edits.headers)?))
            } else {
                Ok(Vec::new())
            };
            match hook_edits {
                Ok(hook_edits) => {
                    let fixed = entry.fixed.response_for(resp.host_generated);
                    if entry.response_read_after {
                        let list = resp.headers.get_or_insert_default();
                        apply_to_list(list, fixed);
                        apply_to_list(list, &hook_edits);
                    }
                    applied.extend_from_slice(fixed);
                    applied.extend(hook_edits);
                }
                Err(fault) => {
                    if self.fault(entry, "response", &fault) == FailurePolicy::Closed {
                        return Err(ChainFailure {
                            plugin: entry.plugin.name().to_owned(),
                            fault,
                        });
                    }
                }
            }
        }
        Ok(applied)
    }

    /// Ask the last plugin of the chain that has a log hook to shape the line.
    pub fn on_log(&self, rec: &mut LogRecord) -> LogDecision {
        let Some(entry) = self.with_hook(HookSet::LOG).next_back() else {
            return LogDecision::Default;
        };
        match entry.plugin.on_log(rec) {
            Ok(Some(line)) => LogDecision::Line(line),
            Ok(None) => LogDecision::Drop,
            Err(fault) => {
                let fault = HookFault::from(fault);
                self.fault(entry, "log", &fault);
                LogDecision::Failed {
                    plugin: entry.plugin.name().to_owned(),
                    fault,
                }
            }
        }
    }

    fn with_hook(&self, hook: HookSet) -> impl DoubleEndedIterator<Item = &ChainEntry> {
        self.entries.iter().filter(move |e| e.phases.contains(hook))
    }

    /// Report a fault once (log + metric) and return the policy that applies.
    fn fault(&self, entry: &ChainEntry, hook: &'static str, fault: &HookFault) -> FailurePolicy {
        let policy = match entry.on_failure {
            FailurePolicy::Closed => "closed",
            FailurePolicy::Open => "open",
        };
        tracing::warn!(
            route = %self.route,
            plugin = entry.plugin.name(),
            hook,
            policy,
            "plugin {hook} hook failed: {fault}"
        );
        // The runtime counts the fault itself (`tailgate_plugin_faults_total`
        // by kind); this counts what the chain did about it, invalid outputs
        // included, by policy.
        metrics::counter!(
            "tailgate_plugin_failures_total",
            "route" => self.route.to_string(),
            "plugin" => entry.plugin.name().to_owned(),
            "hook" => hook,
            "policy" => policy,
        )
        .increment(1);
        entry.on_failure
    }
}

/// Apply one plugin's request edits to `head`, all or nothing: its fixed
/// edits (checked at load), then its hook's. The hook's path and header
/// edits are checked before anything is touched. Returns the hook's header
/// edits, parsed.
fn apply_request_edits(
    head: &mut RequestHead,
    fixed: &[WireEdit],
    edits: &RequestEdits,
) -> Result<Vec<WireEdit>, InvalidOutput> {
    if let Some(target) = &edits.path {
        check_path(target)?;
    }
    let checked = check_header_edits(&edits.headers)?;
    if !fixed.is_empty() || !checked.is_empty() {
        let list = head.headers.get_or_insert_default();
        apply_to_list(list, fixed);
        apply_to_list(list, &checked);
    }
    if let Some(target) = &edits.path {
        set_target(head, target);
    }
    Ok(checked)
}

#[cfg(test)]
mod tests;
