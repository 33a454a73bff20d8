//! The whole validated config of one (plugin, route) and what it does in
//! `on-request`: each limit that applies to the request and has a key is
//! checked against the host's shared bucket, in order; an enforced
//! rejection answers the request (status, `Retry-After`, a short body) and
//! stops the checks, like nginx; otherwise the request goes on after the
//! longest enforced delay. The outcome is attached as the var
//! `limit_req_status` for the log phase and logged like nginx's
//! `limit_req_log_level`; the host counts each check in
//! `ratelimit_requests{zone,outcome}`.

use tailgate_plugin_sdk::key::RequestKey;
use tailgate_plugin_sdk::{
    Config, ConfigError, HeaderFilter, ImmediateResponse, LogLevel, RateDecision, RateLimit,
    RequestAction, RequestChecks, RequestEdits, RequestFieldSet, RequestHead, ZoneUse,
};

use crate::config::{RawConfig, RawLogLevel};
use crate::limit::{check_status, Inherited, Limit};
use crate::outcome::{Outcome, Verdict, STATUS_VAR, ZONE_VAR};
use crate::zone::build_zones;

/// Most limits on one route: each is a host call per request.
const MAX_LIMITS: usize = 16;

/// The host imports the policy uses, so the logic is tested natively with
/// a scripted host.
pub trait RateLimitHost {
    /// One request for `key` against `limit`'s zone use (its handle,
    /// [`Limit::zone_use`], or its spec, [`Limit::spec`]).
    fn rate_limit_check(&self, limit: &Limit, key: &RequestKey<'_>, dry_run: bool) -> RateDecision;
    fn log(&self, level: LogLevel, message: &str);
}

#[derive(Debug, Clone)]
pub struct RateLimitPolicy {
    limits: Vec<Limit>,
    /// Body of a rejection, per limit (bodies follow each limit's status).
    bodies: Vec<String>,
    reject_level: LogLevel,
    delay_level: LogLevel,
}

impl RateLimitPolicy {
    pub fn from_config(config: &Config) -> Result<RateLimitPolicy, ConfigError> {
        let raw: RawConfig = config.parse()?;
        RateLimitPolicy::build(&raw)
    }

    pub fn build(raw: &RawConfig) -> Result<RateLimitPolicy, ConfigError> {
        check_status("status", raw.status)?;
        if raw.limits.is_empty() {
            return Err(ConfigError::new(
                "limits",
                "give at least one limit, e.g. limits = [{ zone = \"per_ip\", rate = \"10r/s\", burst = 20 }]",
            ));
        }
        if raw.limits.len() > MAX_LIMITS {
            return Err(ConfigError::new(
                "limits",
                format!(
                    "{} limits; at most {MAX_LIMITS} per route",
                    raw.limits.len()
                ),
            ));
        }
        if let Some(body) = &raw.body {
            if body.len() > 1024 {
                return Err(ConfigError::new("body", "longer than 1024 bytes"));
            }
        }
        let inherited = Inherited {
            status: raw.status,
            dry_run: raw.dry_run,
        };
        let zones = build_zones(&raw.zones)?;
        let mut limits: Vec<Limit> = Vec::with_capacity(raw.limits.len());
        for (i, raw_limit) in raw.limits.iter().enumerate() {
            let limit = Limit::build(i, raw_limit, inherited, &zones)?;
            if let Some(first) = limits.iter().position(|l| l.zone() == limit.zone()) {
                return Err(ConfigError::new(
                    format!("limits[{i}].zone"),
                    format!(
                        "`{}` is already used by limits[{first}]; give each limit of a route its own zone",
                        limit.zone()
                    ),
                ));
            }
            limits.push(limit);
        }
        let bodies = limits
            .iter()
            .map(|limit| match &raw.body {
                Some(body) => body.clone(),
                None => format!("{}\n", reason_phrase(limit.status())),
            })
            .collect();
        let (reject_level, delay_level) = match raw.log_level {
            RawLogLevel::Info => (LogLevel::Info, LogLevel::Debug),
            RawLogLevel::Warn => (LogLevel::Warn, LogLevel::Info),
            RawLogLevel::Error => (LogLevel::Error, LogLevel::Warn),
        };
        Ok(RateLimitPolicy {
            limits,
            bodies,
            reject_level,
            delay_level,
        })
    }

    /// The policy with each limit's zone use registered with the host
    /// (`rate-limit-zone`, in `configure`), so a check sends a handle.
    pub fn registered(self, mut register: impl FnMut(RateLimit<'_>) -> ZoneUse) -> Self {
        let limits = self
            .limits
            .into_iter()
            .map(|limit| limit.registered(&mut register))
            .collect();
        RateLimitPolicy { limits, ..self }
    }

    /// The request headers the limits read: those their keys name.
    pub fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::only(self.limits.iter().flat_map(Limit::header_names))
    }

    /// The request fields `on-request` reads: each limit's (its key's
    /// fields, the method and path its filters read). The log line names
    /// none: the host adds the client, request and host to it.
    pub fn request_fields(&self) -> RequestFieldSet {
        self.limits
            .iter()
            .fold(RequestFieldSet::empty(), |set, limit| {
                set | limit.request_fields()
            })
    }

    /// The checks the host makes itself before entering the hook: when
    /// every limit checks every request by the client's address, the hook
    /// would check each in order and, when all pass, go on with
    /// `limit_req_status = PASSED` and nothing else, so the host does that
    /// without a call (and the hook, entered for any other outcome, gets
    /// the host's decisions from its own checks). With a `path` or
    /// `methods` filter or another key: none, the hook runs every time.
    pub fn request_checks(&self) -> RequestChecks {
        if !self.limits.iter().all(Limit::checks_every_client) {
            return RequestChecks::none();
        }
        self.limits
            .iter()
            .fold(RequestChecks::none(), |checks, limit| {
                checks.client(limit.zone_use(), limit.dry_run())
            })
            .passed_var(STATUS_VAR, Outcome::Passed.var_value())
    }

    pub fn on_request(&self, req: &RequestHead, host: &impl RateLimitHost) -> RequestAction {
        let mut verdict = Verdict::default();
        for (index, limit) in self.limits.iter().enumerate() {
            if !limit.applies_to(req) {
                continue;
            }
            let Some(key) = limit.key(req) else {
                continue;
            };
            let decision = host.rate_limit_check(limit, &key, limit.dry_run());
            let outcome = Outcome::of(decision, limit.dry_run());
            self.log(host, limit, outcome, decision);
            verdict.add(index, decision, limit.dry_run());
            if outcome == Outcome::Rejected {
                // nginx stops at the first rejecting limit: later ones are
                // neither checked nor charged.
                break;
            }
        }
        self.action(&verdict)
    }

    fn action(&self, verdict: &Verdict) -> RequestAction {
        let (Some(outcome), Some(index)) = (verdict.outcome(), verdict.decided_by()) else {
            return RequestAction::proceed();
        };
        let limit = &self.limits[index];
        if outcome == Outcome::Rejected {
            let resp = ImmediateResponse::new(limit.status())
                .header("retry-after", verdict.retry_after_secs().to_string())
                .header("content-type", "text/plain; charset=utf-8")
                .body(self.bodies[index].as_str())
                .var(STATUS_VAR, outcome.var_value())
                .var(ZONE_VAR, limit.zone());
            return RequestAction::Respond(resp);
        }
        let mut edits = RequestEdits::new()
            .delay_ms(verdict.delay_ms())
            .var(STATUS_VAR, outcome.var_value());
        if outcome != Outcome::Passed {
            edits = edits.var(ZONE_VAR, limit.zone());
        }
        edits.into()
    }

    /// nginx's error-log lines: rejections at the configured level, delays
    /// one level lower, dry runs marked. The host appends the client, the
    /// request and the host, as nginx does.
    fn log(
        &self,
        host: &impl RateLimitHost,
        limit: &Limit,
        outcome: Outcome,
        decision: RateDecision,
    ) {
        let (level, what, ms) = match decision {
            RateDecision::Pass => return,
            RateDecision::Delay(ms) => (self.delay_level, "delaying request", ms),
            RateDecision::Reject(ms) => (self.reject_level, "limiting requests", ms),
        };
        let dry_run = if matches!(outcome, Outcome::DelayedDryRun | Outcome::RejectedDryRun) {
            ", dry run,"
        } else {
            ""
        };
        let timing = match decision {
            RateDecision::Delay(_) => format!("delay {ms} ms"),
            _ => format!("retry after {ms} ms"),
        };
        host.log(
            level,
            &format!("{what}{dry_run} by zone \"{}\" ({timing})", limit.zone()),
        );
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        403 => "Forbidden",
        _ => "Request rate limit exceeded",
    }
}

#[cfg(test)]
pub(crate) mod tests;
