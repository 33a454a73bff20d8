//! One validated jail: which finished exchanges count as failures (status,
//! path regex, methods), how many within which sliding window ban, for how
//! long (and how much longer for repeat offenders), by what key, whom it
//! never touches, and what a banned client gets. Built at configure time
//! from a `jails` entry laid over its `shared_jails` definition and
//! `defaults` (fail2ban: a jail section over `[DEFAULT]`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use tailgate_plugin_sdk::key::{KeySource, KeyUse};
use tailgate_plugin_sdk::{
    validate, ConfigError, LogFieldSet, LogRecord, RequestFieldSet, RequestFilter, RequestHead,
};

use crate::config::{RawAction, RawIncrement, RawJail, DEFAULT_BODY};
use crate::duration::parse_ms;
use crate::network::Network;

/// A jail's key (docs/ban.md): rate-limit's keys minus `"global"` (one ban
/// for everybody is not a jail). An empty key is neither counted nor checked.
pub const KEYS: KeyUse = KeyUse {
    global_refused: Some(
        "would ban every client at once: a jail's key is \"client_ip\", \"header:<name>\" \
         or a template",
    ),
    never: "ban anyone",
};

/// The host keeps at most 1024 events per window key.
const MAX_RETRY: u32 = 1024;
const MAX_BODY: usize = 1024;
const MAX_FACTOR: f64 = 1000.0;

#[derive(Debug, Clone)]
pub struct Jail {
    pub name: String,
    statuses: Vec<u16>,
    /// `path` and `methods`.
    filter: RequestFilter,
    pub max_retry: u32,
    pub find_time_ms: u64,
    pub ban_time_ms: u64,
    /// 1.0: no growth.
    pub increment_factor: f64,
    /// 0: no cap.
    pub max_ban_ms: u64,
    key: KeySource,
    ignore: Vec<Network>,
    pub dry_run: bool,
    pub action: Action,
}

/// What a banned client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// This status and body, with `Retry-After`.
    Status { status: u16, body: String },
    /// The connection closed without an answer (nginx 444).
    Close,
}

/// Where a jail's settings come from, most specific first.
struct Layers<'a> {
    index: usize,
    entry: &'a RawJail,
    shared: Option<(&'a str, &'a RawJail)>,
    defaults: &'a RawJail,
}

impl Layers<'_> {
    /// The first layer that gives `field`, and the config path naming it.
    fn pick<T>(&self, field: &str, get: impl Fn(&RawJail) -> Option<T>) -> Option<(T, String)> {
        if let Some(value) = get(self.entry) {
            return Some((value, format!("jails[{}].{field}", self.index)));
        }
        if let Some((name, shared)) = self.shared {
            if let Some(value) = get(shared) {
                return Some((value, format!("shared_jails.{name}.{field}")));
            }
        }
        get(self.defaults).map(|value| (value, format!("defaults.{field}")))
    }
}

impl Jail {
    pub fn build(
        index: usize,
        entry: &RawJail,
        shared_jails: &BTreeMap<String, RawJail>,
        defaults: &RawJail,
    ) -> Result<Jail, ConfigError> {
        let at_name = format!("jails[{index}].name");
        let Some(name) = entry.name.clone() else {
            return Err(ConfigError::new(
                at_name,
                "required: the jail's name (jails with one name share their counting and bans)",
            ));
        };
        validate::name(&at_name, &name)?;
        let layers = Layers {
            index,
            entry,
            shared: shared_jails
                .get_key_value(&name)
                .map(|(n, j)| (n.as_str(), j)),
            defaults,
        };
        let err = |at: String, message: String| ConfigError::new(at, message);

        let statuses = match layers.pick("statuses", |j| j.statuses.clone()) {
            None => vec![401, 403],
            Some((statuses, at)) => {
                if statuses.is_empty() {
                    return Err(err(at, "must not be empty".to_owned()));
                }
                if let Some(bad) = statuses.iter().find(|s| !(100..=599).contains(*s)) {
                    return Err(err(at, format!("{bad} is not an HTTP status (100-599)")));
                }
                statuses
            }
        };
        let path = layers.pick("path", |j| j.path.clone());
        let methods = layers.pick("methods", |j| j.methods.clone());
        let filter = RequestFilter::new(
            path.as_ref().map(|(p, at)| (p.as_str(), at.as_str())),
            methods.as_ref().map(|(m, at)| (m.as_slice(), at.as_str())),
        )?;
        let max_retry = match layers.pick("max_retry", |j| j.max_retry) {
            None => 5,
            Some((n, at)) => {
                if !(1..=MAX_RETRY).contains(&n) {
                    return Err(err(at, format!("{n}: give 1 to {MAX_RETRY}")));
                }
                n
            }
        };
        let duration = |field: &str, get: fn(&RawJail) -> Option<String>, default: u64| match layers
            .pick(field, get)
        {
            None => Ok(default),
            Some((text, at)) => parse_ms(&text).map_err(|e| err(at, e)),
        };
        let find_time_ms = duration("find_time", |j| j.find_time.clone(), 600_000)?;
        let ban_time_ms = duration("ban_time", |j| j.ban_time.clone(), 3_600_000)?;
        let (increment_factor, max_ban_ms) =
            match layers.pick("ban_time_increment", |j| j.ban_time_increment.clone()) {
                None => (1.0, 0),
                Some((increment, at)) => increment_of(&increment, &at, ban_time_ms)?,
            };
        let key = match layers.pick("key", |j| j.key.clone()) {
            None => KeySource::ClientIp,
            Some((text, at)) => {
                KeySource::parse(&text, KEYS).map_err(|e| err(at, e.to_string()))?
            }
        };
        let ignore = match layers.pick("ignore", |j| j.ignore.clone()) {
            None => Vec::new(),
            Some((networks, at)) => networks
                .iter()
                .enumerate()
                .map(|(i, text)| Network::parse(text).map_err(|e| err(format!("{at}[{i}]"), e)))
                .collect::<Result<_, _>>()?,
        };
        let dry_run = layers
            .pick("dry_run", |j| j.dry_run)
            .is_some_and(|(d, _)| d);
        let status = layers.pick("status", |j| j.status);
        let body = layers.pick("body", |j| j.body.clone());
        let action = match layers.pick("action", |j| j.action).map(|(a, _)| a) {
            Some(RawAction::Close) => {
                let given = status.map(|(_, at)| at).or(body.map(|(_, at)| at));
                if let Some(at) = given {
                    return Err(err(
                        at,
                        "action = \"close\" sends no answer: drop `status` and `body`, or use \
                         action = \"status\""
                            .to_owned(),
                    ));
                }
                Action::Close
            }
            None | Some(RawAction::Status) => {
                let status = match status {
                    None => 403,
                    Some((444, at)) => {
                        return Err(err(
                            at,
                            "444 is not sent: write action = \"close\" to close the connection"
                                .to_owned(),
                        ))
                    }
                    Some((s, at)) if !(400..=599).contains(&s) => {
                        return Err(err(at, format!("{s} is not an error status (400-599)")))
                    }
                    Some((s, _)) => s,
                };
                let body = match body {
                    None => DEFAULT_BODY.to_owned(),
                    Some((body, at)) if body.len() > MAX_BODY => {
                        return Err(err(at, format!("longer than {MAX_BODY} bytes")))
                    }
                    Some((body, _)) => body,
                };
                Action::Status { status, body }
            }
        };
        Ok(Jail {
            name,
            statuses,
            filter,
            max_retry,
            find_time_ms,
            ban_time_ms,
            increment_factor,
            max_ban_ms,
            key,
            ignore,
            dry_run,
            action,
        })
    }

    /// The request headers the jail reads (its key's).
    pub fn header_names(&self) -> Vec<&str> {
        self.key.header_names()
    }

    /// The request fields the jail reads: its key's and its filter's.
    pub fn request_fields(&self) -> RequestFieldSet {
        self.key.request_fields() | self.filter.request_fields()
    }

    /// Whether the jail leaves this client alone (`ignore`).
    pub fn ignores(&self, client: IpAddr) -> bool {
        self.ignore.iter().any(|net| net.contains(client))
    }

    pub fn key<'r>(&self, req: &'r RequestHead) -> Option<Cow<'r, str>> {
        self.key.key(req)
    }

    /// Whether a failure of this request would count: its path and method
    /// pass the jail's filters (the status is known in the log phase).
    pub fn watches(&self, req: &RequestHead) -> bool {
        self.filter.matches(req)
    }

    /// Whether the jail is keyed by the client's address: the host looks
    /// the address up in its ban list before the request hook (a request
    /// check), and the log hook counts a failure from the record's address,
    /// method and path, with no var from the request hook.
    pub fn by_client(&self) -> bool {
        self.key == KeySource::ClientIp
    }

    /// [`Jail::watches`] for a finished exchange of a jail keyed by the
    /// client: its method and normalised path.
    pub fn watches_record(&self, rec: &LogRecord) -> bool {
        self.filter.matches_parts(&rec.method, || &rec.path)
    }

    /// The log-record fields the jail's log side reads: the path, for a
    /// jail keyed by the client with a path filter.
    pub fn log_fields(&self) -> LogFieldSet {
        if self.by_client() && self.filter.reads_path() {
            LogFieldSet::PATH
        } else {
            LogFieldSet::empty()
        }
    }

    /// Whether a finished exchange's status is a failure.
    pub fn fails(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }

    /// The statuses counted as failures.
    pub fn statuses(&self) -> &[u16] {
        &self.statuses
    }

    /// The window key of `key` (jails of one name count together).
    pub fn window_key(&self, key: &str) -> String {
        format!("{}|{key}", self.name)
    }
}

fn increment_of(raw: &RawIncrement, at: &str, ban_time_ms: u64) -> Result<(f64, u64), ConfigError> {
    let factor = raw.factor.unwrap_or(2.0);
    if !(factor.is_finite() && (1.0..=MAX_FACTOR).contains(&factor)) {
        return Err(ConfigError::new(
            format!("{at}.factor"),
            format!("{factor}: give a number from 1.0 (no growth) to {MAX_FACTOR}"),
        ));
    }
    let max = match &raw.max {
        None => 0,
        Some(text) => {
            let max = parse_ms(text).map_err(|e| ConfigError::new(format!("{at}.max"), e))?;
            if max < ban_time_ms {
                return Err(ConfigError::new(
                    format!("{at}.max"),
                    format!(
                        "\"{text}\" is shorter than ban_time: a ban never lasts less than ban_time"
                    ),
                ));
            }
            max
        }
    };
    Ok((factor, max))
}
