//! The validated `[telemetry]` section: metric naming and constant labels,
//! the Prometheus remote_write pusher and the Loki log pusher. Built by
//! `config::telemetry` at load; read by `crate::telemetry`, which installs
//! the metrics recorder at start and (re)starts the pushers on reloads.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Metric names are `<prefix>_http_requests_total`, ... (default `tailgate`).
    pub metrics_prefix: String,
    /// Constant labels on every metric series (and on `up`), e.g.
    /// `instance = "flyio-proxy"`, `region = "${FLY_REGION}"`.
    pub labels: BTreeMap<String, EnvText>,
    pub remote_write: Option<RemoteWriteConfig>,
    pub loki: Option<LokiConfig>,
}

impl TelemetryConfig {
    /// Send the pushes the way upstreams are dialled: through tailscaled's
    /// SOCKS5 server in `socks5` mode (it forwards public addresses too).
    pub fn dial_like(mut self, tailnet: &super::tailnet::TailnetConfig) -> Self {
        let proxy = match tailnet.dial {
            super::tailnet::DialMode::Socks5(proxy) => Some(proxy),
            super::tailnet::DialMode::System => None,
        };
        if let Some(rw) = &mut self.remote_write {
            rw.endpoint.socks5 = proxy;
        }
        if let Some(loki) = &mut self.loki {
            loki.endpoint.socks5 = proxy;
        }
        self
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics_prefix: DEFAULT_METRICS_PREFIX.to_owned(),
            labels: BTreeMap::new(),
            remote_write: None,
            loki: None,
        }
    }
}

pub const DEFAULT_METRICS_PREFIX: &str = "tailgate";

/// `[telemetry.remote_write]`: Prometheus remote_write 1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    pub endpoint: PushEndpoint,
    /// Time between two snapshots of every series.
    pub interval: Duration,
    /// Snapshots kept while the endpoint cannot take them; the oldest go first.
    pub queue_size: usize,
    pub retry: RetryPolicy,
}

/// `[telemetry.loki]`: Loki's push API.
#[derive(Debug, Clone, PartialEq)]
pub struct LokiConfig {
    pub endpoint: PushEndpoint,
    pub encoding: LokiEncoding,
    /// Stream labels every line carries (plus those the log-shape plugin chose).
    pub labels: BTreeMap<String, EnvText>,
    /// `X-Scope-OrgID`, for multi-tenant Loki.
    pub tenant: Option<EnvText>,
    /// A batch is sent when it reaches this many bytes of log lines...
    pub batch_size: usize,
    /// ... or when its oldest line has waited this long.
    pub batch_wait: Duration,
    /// Lines kept in memory while Loki cannot take them; past this, the
    /// oldest lines are dropped (and counted).
    pub buffer_size: usize,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LokiEncoding {
    /// `PushRequest` protobuf, snappy block compressed (what Promtail and Alloy send).
    Protobuf,
    /// The JSON form of the push API.
    Json,
}

/// Where a pusher sends, and how it authenticates.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEndpoint {
    /// `http` or `https` URL.
    pub url: http::Uri,
    pub auth: Option<PushAuth>,
    /// Time allowed for one push (connect, send, response).
    pub timeout: Duration,
    /// tailscaled's SOCKS5 server the push connects through, when
    /// `[tailnet] dial` is `socks5` (userspace networking: a Loki or
    /// Prometheus on the tailnet is reachable only that way).
    pub socks5: Option<std::net::SocketAddr>,
}

#[derive(Clone, PartialEq)]
pub enum PushAuth {
    Basic {
        username: EnvText,
        password: EnvText,
    },
    Bearer(EnvText),
}

/// Secrets stay out of logs and snapshots.
impl fmt::Debug for PushAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            PushAuth::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
        }
    }
}

/// Retries of a push that failed with a connection error, 429 or 5xx.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Retries of one batch before it is dropped (and counted).
    pub max_retries: u32,
}

/// A config string that may name environment variables as `${NAME}`,
/// expanded when telemetry starts (so Fly's `FLY_REGION` or a secret can be
/// used without writing it in the file).
#[derive(Clone, PartialEq, Eq)]
pub struct EnvText {
    parts: Vec<EnvPart>,
}

impl fmt::Debug for EnvText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EnvText").field(&self.to_string()).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvPart {
    Text(String),
    Var(String),
}

/// A `${NAME}` whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct UnsetVariable(pub String);

impl EnvText {
    /// Parse `text`; `$$` is a literal `$`. Errors say what is malformed.
    pub fn parse(text: &str) -> Result<EnvText, &'static str> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body.find('}').ok_or("`${` without a closing `}`")?;
                let name = &body[..end];
                let valid = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err("`${NAME}` needs a variable name of letters, digits and '_'");
                }
                if !literal.is_empty() {
                    parts.push(EnvPart::Text(std::mem::take(&mut literal)));
                }
                parts.push(EnvPart::Var(name.to_owned()));
                rest = &body[end + 1..];
            } else {
                return Err("a `$` must start `${NAME}` (write `$$` for a literal `$`)");
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(EnvPart::Text(literal));
        }
        Ok(EnvText { parts })
    }

    /// A literal text (no variables).
    pub fn literal(text: &str) -> EnvText {
        EnvText {
            parts: vec![EnvPart::Text(text.to_owned())],
        }
    }

    /// The text with every variable replaced by its value from `lookup`.
    pub fn expand_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, UnsetVariable> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                EnvPart::Text(t) => out.push_str(t),
                EnvPart::Var(name) => {
                    out.push_str(&lookup(name).ok_or_else(|| UnsetVariable(name.clone()))?)
                }
            }
        }
        Ok(out)
    }

    /// The text with the process environment's values.
    pub fn expand(&self) -> Result<String, UnsetVariable> {
        self.expand_with(|name| std::env::var(name).ok())
    }
}

impl fmt::Display for EnvText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                EnvPart::Text(t) => f.write_str(&t.replace('$', "$$"))?,
                EnvPart::Var(name) => write!(f, "${{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// A Prometheus metric name without colons: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Prometheus/Loki label name a user may set (not `__`-reserved).
pub fn is_label_name(name: &str) -> bool {
    is_metric_name(name) && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "FLY_REGION" => Some("ams".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_text_expands_variables_and_keeps_literals() {
        let t = EnvText::parse("fly-${FLY_REGION}-$$5").unwrap();
        assert_eq!(t.expand_with(env).unwrap(), "fly-ams-$5");
        assert_eq!(t.to_string(), "fly-${FLY_REGION}-$$5");
        assert_eq!(
            EnvText::parse("plain").unwrap().expand_with(env).unwrap(),
            "plain"
        );
        assert_eq!(
            EnvText::parse("${EMPTY}")
                .unwrap()
                .expand_with(env)
                .unwrap(),
            ""
        );
        assert_eq!(
            EnvText::parse("${MISSING}").unwrap().expand_with(env),
            Err(UnsetVariable("MISSING".into()))
        );
    }

    #[test]
    fn names_follow_prometheus_rules() {
        assert!(is_metric_name("flyio_nginx"));
        assert!(is_metric_name("_x1"));
        assert!(!is_metric_name("1x"));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name("a:b"));
        assert!(!is_metric_name(""));
        assert!(is_label_name("instance"));
        assert!(!is_label_name("__name__"));
    }

    #[test]
    fn env_text_rejects_malformed_references() {
        assert!(EnvText::parse("${OPEN").is_err());
        assert!(EnvText::parse("${}").is_err());
        assert!(EnvText::parse("${1X}").is_err());
        assert!(EnvText::parse("${A-B}").is_err());
        assert!(EnvText::parse("cost $5").is_err());
    }
}
