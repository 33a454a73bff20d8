//! Building chains from the config: each entry of a route's
//! `[[routes.plugins]]` (or of `[access_log] plugins`) configured from the
//! loaded plugins, at startup and on reload, before any request runs
//! through them ([`PluginChains::load`](super::PluginChains::load)).

use std::collections::BTreeMap;
use std::sync::Arc;

use tailgate_runtime::{CallGuard, HookSet, Limits, LoadedPlugin, Runtime};

use super::{ChainEntry, ChainLoadError, RouteChain};
use crate::config::model::{Config, PluginName, RouteName, RoutePlugin};

/// The chain name of `[access_log] plugins` in faults, metrics and
/// plugin config errors (where a route's name goes).
pub const UNROUTED_CHAIN: &str = "[access_log]";

/// Configure each entry of a chain (a route's, or `[access_log]`'s) from
/// the loaded plugins, its calls guarded by `guard`.
pub(super) fn configure_entries(
    runtime: &Runtime,
    loaded: &BTreeMap<&PluginName, Arc<LoadedPlugin>>,
    owner: &RouteName,
    plugins: &[RoutePlugin],
    limits: Limits,
    guard: CallGuard,
) -> Result<Vec<ChainEntry>, ChainLoadError> {
    let mut entries = Vec::with_capacity(plugins.len());
    for entry in plugins {
        let plugin = loaded
            .get(&entry.plugin)
            .ok_or_else(|| ChainLoadError::UndefinedPlugin {
                route: owner.to_string(),
                plugin: entry.plugin.to_string(),
            })?;
        let configured = runtime
            .configure(plugin, owner.as_str(), &entry.config_json, limits)?
            .with_call_guard(guard);
        let built = ChainEntry::new(Box::new(configured), entry.on_failure);
        entries.push(built.map_err(|reason| ChainLoadError::InvalidFixedEdits {
            route: owner.to_string(),
            plugin: entry.plugin.to_string(),
            reason,
        })?);
    }
    Ok(entries)
}

/// The chain of `[access_log] plugins`, with the runtime's default limits;
/// each of its plugins must have a log hook (nothing else of it runs).
pub(super) fn unrouted_chain(
    config: &Config,
    runtime: &Runtime,
    loaded: &BTreeMap<&PluginName, Arc<LoadedPlugin>>,
) -> Result<Option<Arc<RouteChain>>, ChainLoadError> {
    let plugins = &config.access_log.plugins;
    if plugins.is_empty() {
        return Ok(None);
    }
    let limits = Limits {
        hook_timeout: config.runtime.hook_timeout,
        memory_bytes: config.runtime.memory_limit,
    };
    let owner = RouteName(UNROUTED_CHAIN.to_owned());
    let guard = config.runtime.call_guard(config.server.worker_threads());
    let entries = configure_entries(runtime, loaded, &owner, plugins, limits, guard)?;
    if let Some(entry) = entries
        .iter()
        .find(|e| !e.plugin.hooks().contains(HookSet::LOG))
    {
        return Err(ChainLoadError::NoLogHook {
            plugin: entry.name().to_owned(),
        });
    }
    Ok(Some(Arc::new(RouteChain::new(owner, entries))))
}
