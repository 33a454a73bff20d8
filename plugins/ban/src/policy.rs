//! The whole validated config of one (plugin, route) and what its hooks do.
//!
//! `on-request`: for each jail that does not ignore the client and has a
//! key for the request, a banned key is answered at once (the jail's
//! action: status + body + `Retry-After`, or 444), so the upstream never
//! sees it; otherwise, for a jail keyed by a header or a template whose
//! path and method filters match, the key is left as the var
//! `ban_key.<jail>` for the log phase. When every jail is keyed by the
//! client's address, the host makes those lookups itself (request checks,
//! `client-bans`) and enters `on-request` only for a banned client.
//!
//! `on-log` (an observer: the line is kept as it is): a failed exchange
//! (status in the jail's `statuses`) that was not blocked counts for a
//! jail keyed by the client when it does not ignore the record's address
//! and the record's method and normalised path pass its filters, and for
//! another jail when `on-request` left its `ban_key.<jail>` var: one event
//! in the host's sliding window `<jail>|<key>`; the `max_retry`-th within
//! `find_time` bans the key in the host's ban list (a parallel burst bans
//! once: the host answers `already` to the others).

use tailgate_plugin_sdk::template::push_ip;
use tailgate_plugin_sdk::{
    host, validate, Ban, BanOutcome, BanRequest, Config, ConfigError, HeaderFilter,
    ImmediateResponse, LogFieldSet, LogGate, LogRecord, LogVerdict, RequestAction, RequestChecks,
    RequestEdits, RequestFieldSet, RequestHead,
};

use crate::config::RawConfig;
use crate::duration::display;
use crate::jail::{Action, Jail};

/// Most jails on one route: each is a host call per request.
const MAX_JAILS: usize = 16;

/// The var carrying a watched request's key to the log phase.
pub const KEY_VAR_PREFIX: &str = "ban_key.";
/// `PASSED` on a request no jail blocked (set by the host's request
/// checks, or by the hook), `BLOCKED` on a blocked one, `BLOCKED_DRY_RUN`
/// when a dry-run jail found the key banned and let it through. The log
/// hook counts only requests that went through this plugin's request
/// phase (not one an earlier plugin answered) and were not blocked.
pub const BAN_VAR: &str = "ban";
const PASSED: &str = "PASSED";
const BLOCKED_DRY_RUN: &str = "BLOCKED_DRY_RUN";
/// The jail that blocked the request.
pub const JAIL_VAR: &str = "ban_jail";

#[derive(Debug, Clone)]
pub struct BanPolicy {
    jails: Vec<Jail>,
}

impl BanPolicy {
    pub fn from_config(config: &Config) -> Result<BanPolicy, ConfigError> {
        let raw: RawConfig = config.parse()?;
        BanPolicy::build(&raw)
    }

    pub fn build(raw: &RawConfig) -> Result<BanPolicy, ConfigError> {
        if raw.defaults.name.is_some() {
            return Err(ConfigError::new(
                "defaults.name",
                "a name belongs to each jail, not to the defaults",
            ));
        }
        for (name, shared) in &raw.shared_jails {
            validate::name(&format!("shared_jails.{name}"), name)?;
            if shared.name.is_some() {
                return Err(ConfigError::new(
                    format!("shared_jails.{name}.name"),
                    "the table's key is the jail's name",
                ));
            }
        }
        if raw.jails.is_empty() {
            return Err(ConfigError::new(
                "jails",
                "give at least one jail, e.g. jails = [{ name = \"login\", statuses = [401, 403], \
                 path = \"^/user/login\" }]",
            ));
        }
        if raw.jails.len() > MAX_JAILS {
            return Err(ConfigError::new(
                "jails",
                format!("{} jails; at most {MAX_JAILS} per route", raw.jails.len()),
            ));
        }
        let mut jails: Vec<Jail> = Vec::with_capacity(raw.jails.len());
        for (i, entry) in raw.jails.iter().enumerate() {
            let jail = Jail::build(i, entry, &raw.shared_jails, &raw.defaults)?;
            if let Some(first) = jails.iter().position(|j| j.name == jail.name) {
                return Err(ConfigError::new(
                    format!("jails[{i}].name"),
                    format!(
                        "`{}` is already jails[{first}]: give one jail per name on a route \
                         (routes share a jail by naming it)",
                        jail.name
                    ),
                ));
            }
            jails.push(jail);
        }
        Ok(BanPolicy { jails })
    }

    /// The request headers the jails' keys read.
    pub fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::only(self.jails.iter().flat_map(Jail::header_names))
    }

    /// The request fields the keys and the path filters read.
    pub fn request_fields(&self) -> RequestFieldSet {
        self.jails
            .iter()
            .fold(RequestFieldSet::empty(), |set, jail| {
                set | jail.request_fields()
            })
    }

    /// The log-record fields `on-log` reads: the vars, and the path when
    /// a jail keyed by the client filters by it.
    pub fn log_fields(&self) -> LogFieldSet {
        self.jails
            .iter()
            .fold(LogFieldSet::VARS, |set, jail| set | jail.log_fields())
    }

    /// With every jail keyed by the client's address, the host's lookups
    /// of it in their ban lists: a request from a client banned in none
    /// goes on without entering the plugin (there is nothing else for
    /// `on-request` to do). Otherwise none: the hook runs for every
    /// request.
    pub fn request_checks(&self) -> RequestChecks {
        if !self.jails.iter().all(Jail::by_client) {
            return RequestChecks::none();
        }
        self.jails
            .iter()
            .fold(RequestChecks::none(), |checks, jail| {
                checks.client_ban(jail.name.as_str())
            })
            .passed_var(BAN_VAR, PASSED)
    }

    /// The records `on-log` is entered for: those of a status some jail
    /// counts as a failure (it has nothing to do for the others).
    pub fn log_gate(&self) -> LogGate {
        LogGate::statuses(
            self.jails
                .iter()
                .flat_map(|jail| jail.statuses().iter().copied()),
        )
    }

    pub fn on_request(&self, req: &RequestHead) -> RequestAction {
        let mut edits = RequestEdits::new();
        let mut dry_run_blocked = false;
        for jail in &self.jails {
            if jail.ignores(req.client_ip) {
                continue;
            }
            let Some(key) = jail.key(req) else {
                continue;
            };
            if let Some(ban) = host::ban_check(&jail.name, &key) {
                let labels = [("jail", jail.name.as_str())];
                if !jail.dry_run {
                    host::counter_add("ban_blocked", &labels, 1);
                    return RequestAction::Respond(answer(jail, &ban));
                }
                host::counter_add("ban_blocked_dry_run", &labels, 1);
                host::info(&format!(
                    "would block {key}, banned in jail \"{}\" (dry run)",
                    jail.name
                ));
                edits = edits
                    .var(BAN_VAR, BLOCKED_DRY_RUN)
                    .var(JAIL_VAR, jail.name.as_str());
                dry_run_blocked = true;
            }
            // A jail keyed by the client counts from the log record.
            if !jail.by_client() && jail.watches(req) {
                edits = edits.var(format!("{KEY_VAR_PREFIX}{}", jail.name), key);
            }
        }
        if !dry_run_blocked {
            edits = edits.var(BAN_VAR, PASSED);
        }
        edits.into()
    }

    pub fn on_log(&self, rec: &LogRecord) -> LogVerdict {
        // Jails keyed by the client count a request that passed this
        // plugin's request phase: not one it blocked (its answer is often a
        // 403, which a jail may count), nor one an earlier plugin answered.
        let passed = rec
            .vars
            .iter()
            .any(|v| v.name == BAN_VAR && (v.value == PASSED || v.value == BLOCKED_DRY_RUN));
        // The key `on-request` would have made (`client_ip`), written once.
        let client = std::cell::OnceCell::new();
        let client_key = || {
            let mut text = Vec::with_capacity(15);
            push_ip(rec.client_ip, &mut text);
            String::from_utf8(text).unwrap_or_default()
        };
        for jail in self.jails.iter().filter(|jail| passed && jail.by_client()) {
            if jail.fails(rec.status) && !jail.ignores(rec.client_ip) && jail.watches_record(rec) {
                failure(jail, client.get_or_init(client_key));
            }
        }
        for var in rec.vars.iter() {
            let Some(name) = var.name.strip_prefix(KEY_VAR_PREFIX) else {
                continue;
            };
            let Some(jail) = self.jails.iter().find(|j| j.name == name && !j.by_client()) else {
                continue;
            };
            if jail.fails(rec.status) {
                failure(jail, &var.value);
            }
        }
        LogVerdict::Keep
    }
}

/// One failure of `key` in `jail`: counted, and the `max_retry`-th within
/// `find_time` bans.
fn failure(jail: &Jail, key: &str) {
    let window_key = jail.window_key(key);
    let failures = host::window_add(&window_key, jail.find_time_ms, jail.max_retry);
    if failures < jail.max_retry {
        return;
    }
    let labels = [("jail", jail.name.as_str())];
    if jail.dry_run {
        host::counter_add("bans_dry_run", &labels, 1);
        host::warn(&format!(
            "would ban {key} in jail \"{}\": {failures} failures within {} (dry run)",
            jail.name,
            display(jail.find_time_ms)
        ));
        host::window_reset(&window_key);
        return;
    }
    let request = BanRequest {
        duration_ms: jail.ban_time_ms,
        failures,
        increment_factor: jail.increment_factor,
        max_duration_ms: jail.max_ban_ms,
    };
    match host::ban_add(&jail.name, key, request) {
        BanOutcome::Banned(ban) => {
            host::counter_add("bans", &labels, 1);
            host::warn(&format!(
                "banned {key} in jail \"{}\": {failures} failures within {}, for {} (offence {})",
                jail.name,
                display(jail.find_time_ms),
                display(ban.expires_unix_ms.saturating_sub(ban.since_unix_ms)),
                ban.offences
            ));
            host::window_reset(&window_key);
        }
        // A parallel failure banned it first: one ban, one line.
        BanOutcome::Already(_) => {}
    }
}

/// The answer to a banned client.
fn answer(jail: &Jail, ban: &Ban) -> ImmediateResponse {
    let response = match &jail.action {
        Action::Close => ImmediateResponse::new(444),
        Action::Status { status, body } => {
            let remaining_ms = ban.expires_unix_ms.saturating_sub(host::now_ms());
            ImmediateResponse::new(*status)
                .header(
                    "retry-after",
                    remaining_ms.div_ceil(1000).max(1).to_string(),
                )
                .header("content-type", "text/plain; charset=utf-8")
                .body(body.as_str())
        }
    };
    response
        .var(BAN_VAR, "BLOCKED")
        .var(JAIL_VAR, jail.name.as_str())
}

#[cfg(test)]
mod tests;
