//! `state` mode: calls every host import on each hook and echoes what came
//! back as headers and vars, so end-to-end tests can observe the host's
//! state primitives (counters, kv, rate limiting, clock, logs, metrics).

use crate::config::Config;
use crate::tailgate::plugin::host;
use crate::tailgate::plugin::types::{
    HeaderEdit, HeaderOp, ImmediateResponse, LogLevel, RateDecision, RateKey, RateLimit,
    RequestAction, RequestEdits, RequestHead, ResponseEdits, Var, ZoneUse,
};
use crate::Header;

std::thread_local! {
    /// The instance's one registered zone use (an instance has one config).
    static ZONE_USE: std::cell::Cell<Option<ZoneUse>> = const { std::cell::Cell::new(None) };
}

/// The config's zone use, registered with the host on the first request.
fn zone_use(config: &Config) -> ZoneUse {
    ZONE_USE.with(|cell| {
        *cell.get().get_or_insert_with(|| {
            let zone = &config.rate_limit;
            let handle = host::rate_limit_zone(&RateLimit {
                zone: zone.zone.clone(),
                rate_milli: zone.rate_milli,
                burst: zone.burst,
                delay: zone.delay,
            });
            cell.set(Some(handle));
            handle
        })
    })
}

/// on-request: count the hit, check the rate limit for the client IP, swap
/// the last path in kv, and report it all.
pub fn on_request(config: &Config, req: &RequestHead) -> RequestAction {
    let path = req.path.as_deref().unwrap_or_default();
    let method = crate::method_name(&req.method);
    host::log(LogLevel::Info, &format!("state probe: {method} {path}"));
    host::counter_add(
        "requests",
        &[("route".to_string(), req.route.clone().unwrap_or_default())],
        1,
    );
    host::histogram_record("path_length", &[], path.len() as f64);

    let hits = host::counter_incr("hits", 1, config.ttl_ms);
    let hits_read = host::counter_get("hits");

    let previous_path = host::kv_get("last-path")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| "-".to_string());
    host::kv_set("last-path", path.as_bytes(), config.ttl_ms);
    host::kv_set("scratch", b"x", 0);
    let deleted = host::kv_delete("scratch");
    let deleted_again = host::kv_delete("scratch");

    let zone = &config.rate_limit;
    let decision = host::rate_limit_check(
        zone_use(config),
        &RateKey::Address(req.client_ip),
        zone.dry_run,
    );
    let now = host::now_ms();

    let (rate_header, status_var, delay_ms) = match decision {
        RateDecision::Pass => ("pass".to_string(), "PASSED", 0),
        RateDecision::Delay(ms) => (format!("delay={ms}"), "DELAYED", ms),
        RateDecision::Reject(ms) => (format!("reject={ms}"), "REJECTED", 0),
    };
    let status_var = if zone.dry_run && status_var != "PASSED" {
        format!("{status_var}_DRY_RUN")
    } else {
        status_var.to_string()
    };
    let vars = vec![
        var("hits", &hits.to_string()),
        var("limit_req_status", &status_var),
    ];

    if let (RateDecision::Reject(retry_ms), false) = (decision, zone.dry_run) {
        let retry_secs = retry_ms.div_ceil(1000).max(1);
        return RequestAction::Respond(ImmediateResponse {
            status: 429,
            headers: vec![
                header("retry-after", &retry_secs.to_string()),
                header("x-ratelimit", &rate_header),
                header("x-hits", &hits.to_string()),
            ],
            body: b"Too Many Requests\n".to_vec(),
            vars,
        });
    }

    let primitives = probe_primitives(config.ttl_ms);
    RequestAction::Continue(RequestEdits {
        headers: vec![
            set("x-primitives", &primitives),
            set("x-hits", &hits.to_string()),
            set("x-hits-read", &hits_read.to_string()),
            set("x-kv-prev", &previous_path),
            set("x-kv-deleted", &format!("{deleted},{deleted_again}")),
            set("x-ratelimit", &rate_header),
            set("x-now-ms", &now.to_string()),
        ],
        path: None,
        delay_ms: if zone.dry_run { 0 } else { delay_ms },
        vars,
    })
}

/// The 0.7.0 state imports, each used once per request and reported as
/// `name=result` pairs: a sliding window (`window=N`, the events within
/// 60 s), set-if-absent on a key (`nx=true` only the first time),
/// compare-and-set from absent and from the value just set, the remaining
/// ttl, a gauge set to the window count.
fn probe_primitives(ttl_ms: u64) -> String {
    let window = host::window_add("probe-window", 60_000, 16);
    let counted = host::window_count("probe-window", 60_000);
    let nx = host::kv_set_if_absent("probe-once", b"1", ttl_ms);
    host::kv_delete("probe-cas");
    let cas_absent = host::kv_compare_and_set("probe-cas", None, b"a", ttl_ms);
    let cas_wrong = host::kv_compare_and_set("probe-cas", Some(b"x"), b"b", ttl_ms);
    let cas_right = host::kv_compare_and_set("probe-cas", Some(b"a"), b"c", ttl_ms);
    let ttl = match host::kv_ttl("probe-cas") {
        None => "none".to_string(),
        Some(ms) => ms.to_string(),
    };
    host::gauge_set("probe_window", &[], f64::from(window));
    format!(
        "window={window},counted={counted},nx={nx},cas={cas_absent}/{cas_wrong}/{cas_right},ttl={ttl}"
    )
}

/// on-response: report the shared hit count and the host clock to the client.
pub fn on_response() -> ResponseEdits {
    ResponseEdits {
        headers: vec![
            set("x-hits", &host::counter_get("hits").to_string()),
            set("x-now-ms", &host::now_ms().to_string()),
        ],
    }
}

fn set(name: &str, value: &str) -> HeaderEdit {
    HeaderEdit {
        op: HeaderOp::Set,
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

fn var(name: &str, value: &str) -> Var {
    Var {
        name: name.to_string(),
        value: value.to_string(),
    }
}
