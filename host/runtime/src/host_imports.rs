//! The `host` interface of `wit/plugin.wit`, as the guests see it: logging,
//! plugin metrics, rate limiting, counters, window counters, kv, the ban
//! list and the clock. Every call is
//! answered from the calling plugin's own namespace of the shared state
//! (with a shared backend, through `state_imports`).
//! Misuse (a zero rate, an oversized key, a reserved metric name) traps the
//! guest with a message saying what was wrong.

use metrics::Label;

use crate::bindings::host::Host;
use crate::bindings::types::{
    self, Ban, BanOutcome, BanRequest, LogLevel, RateDecision, RateKey, RateLimit,
};
use crate::host_state::HostState;
use crate::metric_handles::{GuestMetric, OUTCOMES};
use crate::state::bans::{self, BanEntry};
use crate::state::rate_limiter::{self, Burst, ZoneSpec};
use crate::state::zone_uses::ZoneUseError;
use crate::wire_values::KeyText;

/// Most event times `window-add` keeps per key.
pub(crate) const MAX_WINDOW_EVENTS: u32 = 1024;
/// Most label pairs a plugin metric may carry (besides `plugin`).
pub(crate) const MAX_METRIC_LABELS: usize = 8;
/// Metric names the runtime itself exports under `tailgate_plugin_`.
const RESERVED_METRIC_NAMES: [&str; 8] = [
    "calls_total",
    "faults_total",
    "call_duration_seconds",
    "state_keys",
    "ratelimit_requests",
    "tripped_total",
    "tripped",
    "fail_fast_total",
];
/// What `rate-limit-check` counts each decision in, by plugin, zone and
/// outcome (nginx's `$limit_req_status`, lower case).
const RATE_LIMIT_METRIC: &str = "tailgate_plugin_ratelimit_requests";

/// Why a host import refused a call (the guest traps with this message).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostCallError {
    #[error("{import}: key of {len} bytes is longer than the {max}-byte limit")]
    KeyTooLong {
        import: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{import}: value of {len} bytes is larger than the {max}-byte limit")]
    ValueTooLarge {
        import: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{import}: metric name {name:?} {reason}")]
    MetricName {
        import: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("{import}: {count} label pairs, at most {MAX_METRIC_LABELS} allowed")]
    TooManyLabels { import: &'static str, count: usize },
    #[error("{import}: label name {name:?} is reserved or empty")]
    LabelName { import: &'static str, name: String },
    #[error("value {0} is not finite")]
    NotFinite(f64),
    #[error("window-add: max-events {0} is outside 1..={MAX_WINDOW_EVENTS}")]
    WindowEvents(u32),
    #[error("{import}: window of 0 ms")]
    EmptyWindow { import: &'static str },
    #[error("ban-add: {0}")]
    BanRequest(&'static str),
    #[error("{0}")]
    ZoneUse(#[from] ZoneUseError),
}

type HostResult<T> = wasmtime::Result<T>;

fn refuse<T>(error: HostCallError) -> HostResult<T> {
    Err(wasmtime::Error::new(error))
}

impl HostState {
    fn check_key(&self, import: &'static str, key: &str) -> HostResult<()> {
        let max = self.shared.limits.max_key_bytes;
        if key.len() > max {
            return refuse(HostCallError::KeyTooLong {
                import,
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    fn check_kv(&self, import: &'static str, key: &str, value: &[u8]) -> HostResult<()> {
        self.check_key(import, key)?;
        let max = self.shared.limits.max_kv_value_bytes;
        if value.len() > max {
            return refuse(HostCallError::ValueTooLarge {
                import,
                len: value.len(),
                max,
            });
        }
        Ok(())
    }
}

/// The recorder's name and labels of a plugin metric the guest named
/// `name` with `labels`: checked, renamed to `tailgate_plugin_<name>`, and
/// labelled with the plugin.
fn plugin_metric(
    import: &'static str,
    plugin: &str,
    (name, labels): &GuestMetric,
) -> HostResult<(String, Vec<Label>)> {
    let sanitized = sanitize_metric_name(name);
    if sanitized.is_empty() {
        return refuse(HostCallError::MetricName {
            import,
            name: name.clone(),
            reason: "is empty",
        });
    }
    if RESERVED_METRIC_NAMES.contains(&sanitized.as_str()) {
        return refuse(HostCallError::MetricName {
            import,
            name: name.clone(),
            reason: "is reserved for the runtime's own metrics",
        });
    }
    if labels.len() > MAX_METRIC_LABELS {
        return refuse(HostCallError::TooManyLabels {
            import,
            count: labels.len(),
        });
    }
    let mut out = Vec::with_capacity(labels.len() + 1);
    for (key, value) in labels {
        let key = sanitize_metric_name(key);
        if key.is_empty() || key == "plugin" {
            return refuse(HostCallError::LabelName { import, name: key });
        }
        out.push(Label::new(key, value.clone()));
    }
    out.push(Label::new("plugin", plugin.to_string()));
    Ok((format!("tailgate_plugin_{sanitized}"), out))
}

/// The index (below [`OUTCOMES`]) and `outcome` label of a decision.
fn outcome_label(decision: rate_limiter::RateDecision, dry_run: bool) -> (usize, &'static str) {
    use rate_limiter::RateDecision::{Delay, Pass, Reject};
    let labels: [&'static str; OUTCOMES] = [
        "passed",
        "delayed",
        "rejected",
        "delayed_dry_run",
        "rejected_dry_run",
    ];
    let index = match (decision, dry_run) {
        (Pass, _) => 0,
        (Delay(_), false) => 1,
        (Reject(_), false) => 2,
        (Delay(_), true) => 3,
        (Reject(_), true) => 4,
    };
    (index, labels[index])
}

/// A ban-list entry as the contract's record.
fn wire_ban(ban: BanEntry) -> Ban {
    Ban {
        jail: ban.jail,
        key: ban.key,
        since_unix_ms: ban.since_unix_ms,
        expires_unix_ms: ban.expires_unix_ms,
        failures: ban.failures,
        offences: ban.offences,
    }
}

/// `[a-zA-Z0-9_]` only: every other character becomes `_`.
pub(crate) fn sanitize_metric_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl types::Host for HostState {}

impl Host for HostState {
    /// Kept for the caller to write after the call, with the request it
    /// served (`plugin_log`).
    fn log(&mut self, level: LogLevel, message: String) -> HostResult<()> {
        self.logs.push(level, message);
        Ok(())
    }

    fn counter_add(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: u64,
    ) -> HostResult<()> {
        let plugin = &self.guest.plugin;
        let counter = self.metric_handles.counter((name, labels), |metric| {
            let (name, labels) = plugin_metric("counter-add", plugin, metric)?;
            HostResult::Ok(metrics::counter!(name, labels))
        })?;
        counter.increment(value);
        Ok(())
    }

    fn histogram_record(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> HostResult<()> {
        if !value.is_finite() {
            return refuse(HostCallError::NotFinite(value));
        }
        let plugin = &self.guest.plugin;
        let histogram = self.metric_handles.histogram((name, labels), |metric| {
            let (name, labels) = plugin_metric("histogram-record", plugin, metric)?;
            HostResult::Ok(metrics::histogram!(name, labels))
        })?;
        histogram.record(value);
        Ok(())
    }

    fn gauge_set(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> HostResult<()> {
        if !value.is_finite() {
            return refuse(HostCallError::NotFinite(value));
        }
        let plugin = &self.guest.plugin;
        let gauge = self.metric_handles.gauge((name, labels), |metric| {
            let (name, labels) = plugin_metric("gauge-set", plugin, metric)?;
            HostResult::Ok(metrics::gauge!(name, labels))
        })?;
        gauge.set(value);
        Ok(())
    }

    fn rate_limit_zone(&mut self, limit: RateLimit) -> HostResult<u32> {
        self.check_key("rate-limit-zone", &limit.zone)?;
        let spec = ZoneSpec {
            name: limit.zone,
            rate_milli: limit.rate_milli,
        };
        let by = Burst {
            burst: limit.burst,
            delay: limit.delay,
        };
        self.zone_uses
            .register(spec, by)
            .map_err(|e| wasmtime::Error::new(HostCallError::from(e)))
    }

    async fn rate_limit_check(
        &mut self,
        zone: u32,
        key: RateKey,
        dry_run: bool,
    ) -> HostResult<RateDecision> {
        if let RateKey::Address(ip) = &key {
            // The host checked this use for this request already
            // (`plugin-info.request-checks`): its decision, not a second
            // count.
            if let Some(at) = self
                .pre_checked
                .iter()
                .position(|p| p.zone == zone && p.client_ip == *ip && p.dry_run == dry_run)
            {
                return Ok(self.pre_checked.swap_remove(at).decision);
            }
        }
        let (zone, by) = self
            .zone_uses
            .resolve(zone, &self.plugin_state.rate_limits)
            .map_err(|e| wasmtime::Error::new(HostCallError::from(e)))?;
        let mut address = KeyText::default();
        let key = match &key {
            RateKey::Address(ip) => address.of(*ip),
            RateKey::Text(text) => {
                self.check_key("rate-limit-check", text)?;
                text.as_str()
            }
        };
        let call = self.state_call();
        let decision = self.budget.unbilled(call.decide_rate(&zone, key, by)).await;
        if dry_run && decision != rate_limiter::RateDecision::Pass {
            tracing::debug!(
                plugin = %self.guest.plugin,
                route = %self.guest.route,
                ?decision,
                "rate limit (dry run)"
            );
        }
        let (index, outcome) = outcome_label(decision, dry_run);
        let plugin = &self.guest.plugin;
        self.metric_handles
            .rate_limit_outcome(zone.name(), index, || {
                metrics::counter!(
                    RATE_LIMIT_METRIC,
                    "zone" => zone.name().to_owned(),
                    "outcome" => outcome,
                    "plugin" => plugin.to_string(),
                )
            })
            .increment(1);
        Ok(match decision {
            rate_limiter::RateDecision::Pass => RateDecision::Pass,
            rate_limiter::RateDecision::Delay(ms) => RateDecision::Delay(ms),
            rate_limiter::RateDecision::Reject(ms) => RateDecision::Reject(ms),
        })
    }

    async fn counter_incr(&mut self, key: String, delta: i64, ttl_ms: u64) -> HostResult<i64> {
        self.check_key("counter-incr", &key)?;
        Ok(self
            .budget
            .unbilled(self.state_call().incr_counter(&key, delta, ttl_ms))
            .await)
    }

    async fn counter_get(&mut self, key: String) -> HostResult<i64> {
        self.check_key("counter-get", &key)?;
        Ok(self
            .budget
            .unbilled(self.state_call().read_counter(&key))
            .await)
    }

    async fn kv_get(&mut self, key: String) -> HostResult<Option<Vec<u8>>> {
        self.check_key("kv-get", &key)?;
        Ok(self.budget.unbilled(self.state_call().kv_get(&key)).await)
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> HostResult<()> {
        self.check_kv("kv-set", &key, &value)?;
        self.budget
            .unbilled(self.state_call().kv_set(&key, value, ttl_ms))
            .await;
        Ok(())
    }

    async fn kv_delete(&mut self, key: String) -> HostResult<bool> {
        self.check_key("kv-delete", &key)?;
        Ok(self
            .budget
            .unbilled(self.state_call().kv_delete(&key))
            .await)
    }

    async fn window_add(
        &mut self,
        key: String,
        window_ms: u64,
        max_events: u32,
    ) -> HostResult<u32> {
        self.check_key("window-add", &key)?;
        if !(1..=MAX_WINDOW_EVENTS).contains(&max_events) {
            return refuse(HostCallError::WindowEvents(max_events));
        }
        if window_ms == 0 {
            return refuse(HostCallError::EmptyWindow {
                import: "window-add",
            });
        }
        Ok(self
            .budget
            .unbilled(self.state_call().add_to_window(&key, window_ms, max_events))
            .await)
    }

    async fn window_count(&mut self, key: String, window_ms: u64) -> HostResult<u32> {
        self.check_key("window-count", &key)?;
        if window_ms == 0 {
            return refuse(HostCallError::EmptyWindow {
                import: "window-count",
            });
        }
        Ok(self
            .budget
            .unbilled(self.state_call().count_window(&key, window_ms))
            .await)
    }

    async fn window_reset(&mut self, key: String) -> HostResult<()> {
        self.check_key("window-reset", &key)?;
        self.budget
            .unbilled(self.state_call().reset_window(&key))
            .await;
        Ok(())
    }

    async fn kv_set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> HostResult<bool> {
        self.check_kv("kv-set-if-absent", &key, &value)?;
        Ok(self
            .budget
            .unbilled(self.state_call().kv_set_if_absent(&key, value, ttl_ms))
            .await)
    }

    async fn kv_compare_and_set(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> HostResult<bool> {
        self.check_kv("kv-compare-and-set", &key, &value)?;
        Ok(self
            .budget
            .unbilled(self.state_call().kv_compare_and_set(
                &key,
                expected.as_deref(),
                value,
                ttl_ms,
            ))
            .await)
    }

    async fn kv_ttl(&mut self, key: String) -> HostResult<Option<u64>> {
        self.check_key("kv-ttl", &key)?;
        Ok(self.budget.unbilled(self.state_call().kv_ttl(&key)).await)
    }

    async fn ban_add(
        &mut self,
        jail: String,
        key: String,
        request: BanRequest,
    ) -> HostResult<BanOutcome> {
        self.check_key("ban-add", &jail)?;
        self.check_key("ban-add", &key)?;
        if request.duration_ms == 0 {
            return refuse(HostCallError::BanRequest("duration-ms is 0"));
        }
        if !(request.increment_factor.is_finite() && request.increment_factor >= 1.0) {
            return refuse(HostCallError::BanRequest(
                "increment-factor must be a finite number >= 1.0",
            ));
        }
        let request = bans::BanRequest {
            duration_ms: request.duration_ms,
            failures: request.failures,
            increment_factor: request.increment_factor,
            max_duration_ms: request.max_duration_ms,
        };
        Ok(
            match self
                .budget
                .unbilled(self.shared.clone().ban_add(&jail, &key, &request))
                .await
            {
                bans::BanOutcome::Banned(ban) => BanOutcome::Banned(wire_ban(ban)),
                bans::BanOutcome::Already(ban) => BanOutcome::Already(wire_ban(ban)),
            },
        )
    }

    async fn ban_check(&mut self, jail: String, key: String) -> HostResult<Option<Ban>> {
        self.check_key("ban-check", &jail)?;
        self.check_key("ban-check", &key)?;
        let shared = self.shared.clone();
        Ok(self
            .budget
            .unbilled(shared.ban_check(&jail, &key))
            .await
            .map(wire_ban))
    }

    async fn ban_remove(&mut self, jail: String, key: String) -> HostResult<bool> {
        self.check_key("ban-remove", &jail)?;
        self.check_key("ban-remove", &key)?;
        let shared = self.shared.clone();
        Ok(self.budget.unbilled(shared.ban_remove(&jail, &key)).await)
    }

    fn now_ms(&mut self) -> HostResult<u64> {
        Ok(self.shared.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_sanitized() {
        assert_eq!(sanitize_metric_name("cache-hits.total"), "cache_hits_total");
        assert_eq!(sanitize_metric_name("ok_9"), "ok_9");
        assert_eq!(sanitize_metric_name("é"), "_");
    }
}
