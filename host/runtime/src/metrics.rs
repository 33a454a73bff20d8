//! The runtime's own metrics, per (plugin, route, hook): calls, faults by
//! kind, and call duration. Handles are registered once per configured
//! plugin, so the recorder must be installed before [`crate::Runtime::configure`].

use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::hook::Hook;
use crate::PluginFault;

pub(crate) const CALLS_TOTAL: &str = "tailgate_plugin_calls_total";
pub(crate) const FAULTS_TOTAL: &str = "tailgate_plugin_faults_total";
pub(crate) const CALL_DURATION_SECONDS: &str = "tailgate_plugin_call_duration_seconds";

/// The `kind` label of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Trap,
    Timeout,
    Memory,
    Instantiate,
}

impl FaultKind {
    const ALL: [FaultKind; 4] = [
        FaultKind::Trap,
        FaultKind::Timeout,
        FaultKind::Memory,
        FaultKind::Instantiate,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Timeout => "timeout",
            FaultKind::Memory => "memory",
            FaultKind::Instantiate => "instantiate",
        }
    }

    /// The kind of a fault of the guest; `None` for a call that failed
    /// fast without entering it (counted by the call guard instead).
    pub(crate) fn of(fault: &PluginFault) -> Option<FaultKind> {
        match fault {
            PluginFault::Trap(_) => Some(FaultKind::Trap),
            PluginFault::Timeout(_) => Some(FaultKind::Timeout),
            PluginFault::MemoryLimit(_) => Some(FaultKind::Memory),
            PluginFault::Instantiate(_) => Some(FaultKind::Instantiate),
            PluginFault::Tripped(_) | PluginFault::Saturated(_) => None,
        }
    }

    fn index(self) -> usize {
        match self {
            FaultKind::Trap => 0,
            FaultKind::Timeout => 1,
            FaultKind::Memory => 2,
            FaultKind::Instantiate => 3,
        }
    }
}

struct HookMetrics {
    calls: Counter,
    duration: Histogram,
    faults: [Counter; 4],
}

/// Metric handles of one configured plugin.
pub(crate) struct CallMetrics {
    hooks: [HookMetrics; 4],
}

impl CallMetrics {
    pub(crate) fn new(plugin: &str, route: &str) -> Self {
        let hooks = Hook::ALL.map(|hook| {
            let labels = [
                ("plugin", plugin.to_string()),
                ("route", route.to_string()),
                ("hook", hook.as_str().to_string()),
            ];
            HookMetrics {
                calls: metrics::counter!(CALLS_TOTAL, &labels),
                duration: metrics::histogram!(CALL_DURATION_SECONDS, &labels),
                faults: FaultKind::ALL.map(|kind| {
                    metrics::counter!(
                        FAULTS_TOTAL,
                        "plugin" => plugin.to_string(),
                        "route" => route.to_string(),
                        "hook" => hook.as_str(),
                        "kind" => kind.as_str(),
                    )
                }),
            }
        });
        CallMetrics { hooks }
    }

    pub(crate) fn call(&self, hook: Hook, took: Duration) {
        let metrics = &self.hooks[hook.index()];
        metrics.calls.increment(1);
        metrics.duration.record(took.as_secs_f64());
    }

    pub(crate) fn fault(&self, hook: Hook, kind: FaultKind) {
        self.hooks[hook.index()].faults[kind.index()].increment(1);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use metrics_util::debugging::{DebugValue, Snapshotter};

    fn matches(key: &metrics::Key, name: &str, labels: &[(&str, &str)]) -> bool {
        key.name() == name
            && labels
                .iter()
                .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
    }

    /// The value of the metric `name` with (at least) `labels` that `pick`
    /// takes, if recorded.
    fn value_of<T>(
        snapshotter: &Snapshotter,
        name: &str,
        labels: &[(&str, &str)],
        pick: impl Fn(DebugValue) -> Option<T>,
    ) -> Option<T> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, _, _, _)| matches(key.key(), name, labels))
            .find_map(|(_, _, _, value)| pick(value))
    }

    /// The value of gauge `name` with (at least) `labels`, if recorded.
    pub(crate) fn gauge_value(
        snapshotter: &Snapshotter,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        value_of(snapshotter, name, labels, |value| match value {
            DebugValue::Gauge(v) => Some(v.into_inner()),
            _ => None,
        })
    }

    /// The value of counter `name` with (at least) `labels`, if recorded.
    pub(crate) fn counter_value(
        snapshotter: &Snapshotter,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<u64> {
        value_of(snapshotter, name, labels, |value| match value {
            DebugValue::Counter(v) => Some(v),
            _ => None,
        })
    }
}
