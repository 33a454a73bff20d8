//! Each route's plugin chain: the plugins of `[[routes.plugins]]`, loaded
//! into the `tailgate-runtime` at startup and run by the pipeline at three
//! phases — request hooks in chain order before the upstream, response hooks
//! in reverse order (like nginx/Envoy response filters), and the log hook of
//! the last plugin that has one. Each entry's fail policy (`on_failure`, by
//! default the route's `plugin_failure`) decides what a fault does. One more
//! chain, `[access_log] plugins`, shapes the lines of requests no route took.

mod load;

pub use tailgate_runtime::{
    apply_to_map, check_immediate_response, HookCall, HookFault, InvalidOutput, PluginHooks,
    WireEdit,
};

pub use load::UNROUTED_CHAIN;
use load::{configure_entries, unrouted_chain};

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use tailgate_runtime::{
    ChainedPlugin, ConfigureError, HeaderFilter, HookSet, ImmediateResponse, Limits, LoadError,
    LogFieldSet, LogLine, LogRecord, LogVerdict, RequestHead, RequestStep, ResponseHead, Runtime,
    Var,
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

/// Every route's chain, built once at startup.
pub struct PluginChains {
    chains: HashMap<RouteName, Arc<RouteChain>>,
    /// `[access_log] plugins`: for the lines no route's chain shapes.
    unrouted: Option<Arc<RouteChain>>,
    loaded_plugins: usize,
}

impl PluginChains {
    /// Load every plugin of `[plugins]` once, then configure it for each
    /// route that uses it, with that route's limits and call guard. The
    /// first plugin that fails to load or rejects its config fails the
    /// whole load.
    pub fn load(config: &Config, runtime: &Runtime) -> Result<PluginChains, ChainLoadError> {
        let mut loaded = BTreeMap::new();
        for (name, wasm) in &config.plugins {
            tracing::debug!(plugin = %name, wasm = %wasm.display(), "loading plugin");
            loaded.insert(name, runtime.load(name.as_str(), wasm)?);
        }
        let mut chains = HashMap::with_capacity(config.routes.len());
        let call_guard = config.runtime.call_guard(config.server.worker_threads());
        for route in &config.routes {
            let limits = Limits {
                hook_timeout: route.hook_timeout,
                memory_bytes: route.memory_limit,
            };
            let entries = configure_entries(
                runtime,
                &loaded,
                &route.name,
                &route.plugins,
                limits,
                call_guard,
            )?;
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
    /// The plugin with its hooks, phases and fixed edits (parsed at load):
    /// its request and response phases are the runtime's, the same code
    /// the plugin harness runs.
    plugin: ChainedPlugin<Box<dyn PluginHooks>>,
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
        Ok(ChainEntry {
            plugin: ChainedPlugin::new(plugin)?,
            response_read_after: true,
            on_failure,
        })
    }

    fn name(&self) -> &str {
        self.plugin.plugin().name()
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

/// What the chain's log hooks decided: the last `shape` or `drop` among
/// them; a hook that faulted counts as `keep` (reported and counted by the
/// chain; a line is never lost to a fault).
#[derive(Debug)]
pub enum LogDecision {
    /// Write this line instead of the default one.
    Line(LogLine),
    /// A plugin dropped the line.
    Drop,
    /// No plugin shaped or dropped the line (none has a log hook, every one
    /// kept the line, or those that would have faulted): write the default
    /// line.
    Default,
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
    /// Whether a log hook reads `http-host` (the record gets it then).
    log_reads_http_host: bool,
    /// Whether a log hook reads `path` (the record gets it then).
    log_reads_path: bool,
}

impl RouteChain {
    pub fn new(route: RouteName, mut entries: Vec<ChainEntry>) -> RouteChain {
        // Response phases run last to first: what entry i edits is read by
        // the response hooks of entries 0..i.
        let mut hook_before = false;
        for entry in &mut entries {
            entry.response_read_after = hook_before;
            hook_before |= entry.plugin.hooks().contains(HookSet::RESPONSE);
        }
        let response_fields = entries
            .iter()
            .filter(|e| e.plugin.hooks().contains(HookSet::RESPONSE))
            .map(|e| e.plugin.plugin().response_headers())
            .fold(HeaderFilter::none(), HeaderFilter::union);
        // Without a log hook nobody reads the record's header lists.
        let log_entry = entries
            .iter()
            .rfind(|e| e.plugin.hooks().contains(HookSet::LOG));
        let log_fields = log_entry.map_or((HeaderFilter::none(), HeaderFilter::none()), |e| {
            let plugin = e.plugin.plugin();
            (plugin.request_headers(), plugin.response_headers())
        });
        let log_reads = |field| {
            entries.iter().any(|e| {
                e.plugin.hooks().contains(HookSet::LOG)
                    && e.plugin.plugin().log_record_fields().contains(field)
            })
        };
        let log_reads_http_host = log_reads(LogFieldSet::HTTP_HOST);
        let log_reads_path = log_reads(LogFieldSet::PATH);
        RouteChain {
            route,
            entries,
            response_fields,
            log_fields,
            log_reads_http_host,
            log_reads_path,
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

    /// Whether a log hook reads the record's `http-host`.
    pub fn log_reads_http_host(&self) -> bool {
        self.log_reads_http_host
    }

    /// Whether a log hook reads the record's `path`.
    pub fn log_reads_path(&self) -> bool {
        self.log_reads_path
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
        self.entries
            .iter()
            .any(|e| e.plugin.phases().contains(hook))
    }

    /// Run the request phase in chain order: each plugin's fixed edits,
    /// then its hook's, are applied to `head` before the next plugin sees
    /// it; a faulting fail-open plugin is skipped and none of its edits
    /// (fixed ones included) are applied.
    pub async fn on_request(&self, head: &mut RequestHead) -> RequestDecision {
        let mut delay_ms: u32 = 0;
        let mut vars = Vec::new();
        let mut header_edits = Vec::new();
        for entry in self.with_hook(HookSet::REQUEST) {
            match entry.plugin.request_phase(head, &mut header_edits).await {
                Ok(RequestStep::Continue(edits)) => {
                    delay_ms = delay_ms.saturating_add(edits.delay_ms);
                    vars.extend(edits.vars);
                }
                Ok(RequestStep::Respond(mut resp)) => {
                    vars.append(&mut resp.vars);
                    return RequestDecision::Respond(resp, vars);
                }
                Err(fault) => {
                    if self.fault(entry, "request", &fault) == FailurePolicy::Closed {
                        return RequestDecision::Failed {
                            plugin: entry.name().to_owned(),
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
    pub async fn on_response(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<Vec<WireEdit>, ChainFailure> {
        let mut applied = Vec::new();
        for entry in self.with_hook(HookSet::RESPONSE).rev() {
            let phase = entry
                .plugin
                .response_phase(req, resp, entry.response_read_after, &mut applied)
                .await;
            if let Err(fault) = phase {
                if self.fault(entry, "response", &fault) == FailurePolicy::Closed {
                    return Err(ChainFailure {
                        plugin: entry.name().to_owned(),
                        fault,
                    });
                }
            }
        }
        Ok(applied)
    }

    /// Run every log hook of the chain, in chain order, each on the same
    /// record (observers such as a ban jail, and a shaper, side by side);
    /// the last `shape` or `drop` decides the line.
    pub async fn on_log(&self, rec: &mut LogRecord) -> LogDecision {
        let mut decisions = self.on_log_batch(std::slice::from_mut(rec)).await;
        decisions.pop().unwrap_or(LogDecision::Default)
    }

    /// [`RouteChain::on_log`] for a batch of this route's records: each log
    /// hook takes the whole batch in one call (the crossing is paid per
    /// batch), and each record's decision is made as for one record: a
    /// hook that fails on a record leaves it as the hooks before it
    /// decided (the default line if none did).
    pub async fn on_log_batch(&self, recs: &mut [LogRecord]) -> Vec<LogDecision> {
        let mut decisions: Vec<LogDecision> = recs.iter().map(|_| LogDecision::Default).collect();
        for entry in self.with_hook(HookSet::LOG) {
            let verdicts = entry.plugin.plugin().on_log_batch(recs).await;
            for (decision, verdict) in decisions.iter_mut().zip(verdicts) {
                match verdict {
                    Ok(LogVerdict::Keep) => {}
                    Ok(LogVerdict::Shape(line)) => *decision = LogDecision::Line(line),
                    Ok(LogVerdict::Drop) => *decision = LogDecision::Drop,
                    Err(fault) => {
                        self.fault(entry, "log", &HookFault::from(fault));
                    }
                }
            }
        }
        decisions
    }

    fn with_hook(&self, hook: HookSet) -> impl DoubleEndedIterator<Item = &ChainEntry> {
        self.entries
            .iter()
            .filter(move |e| e.plugin.phases().contains(hook))
    }

    /// Report a fault once (log + metric) and return the policy that applies.
    /// A call that failed fast (the plugin tripped, or at its bound) is
    /// counted, not logged: the trip was logged once, and a fault storm must
    /// not become a log storm.
    fn fault(&self, entry: &ChainEntry, hook: &'static str, fault: &HookFault) -> FailurePolicy {
        let policy = match entry.on_failure {
            FailurePolicy::Closed => "closed",
            FailurePolicy::Open => "open",
        };
        let failed_fast = matches!(fault, HookFault::Plugin(f) if f.is_fail_fast());
        if !failed_fast {
            tracing::warn!(
                route = %self.route,
                plugin = entry.name(),
                hook,
                policy,
                "plugin {hook} hook failed: {fault}"
            );
        }
        // The runtime counts the fault itself (`tailgate_plugin_faults_total`
        // by kind); this counts what the chain did about it, invalid outputs
        // included, by policy.
        metrics::counter!(
            "tailgate_plugin_failures_total",
            "route" => self.route.to_string(),
            "plugin" => entry.name().to_owned(),
            "hook" => hook,
            "policy" => policy,
        )
        .increment(1);
        entry.on_failure
    }
}

#[cfg(test)]
mod tests;
