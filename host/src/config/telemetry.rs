//! Builds the validated `[telemetry]` section (metric prefix and constant
//! labels, `[telemetry.remote_write]`, `[telemetry.loki]`) from its raw
//! file structs, defined here. Part of config loading, before any request.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::model::telemetry::{
    is_label_name, is_metric_name, EnvText, LokiConfig, LokiEncoding, PushAuth, PushEndpoint,
    RemoteWriteConfig, RetryPolicy, TelemetryConfig, DEFAULT_METRICS_PREFIX,
};
use super::raw::{RawSize, SpannedKey};
use super::values::parse_duration;

pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_QUEUE_SIZE: usize = 40;
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(500);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RETRIES: u32 = 10;
pub const DEFAULT_BATCH_SIZE: usize = 1 << 20;
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_BUFFER_SIZE: usize = 16 << 20;
/// Upper bounds that keep a typo from reserving the machine's memory.
const MAX_QUEUE_SIZE: usize = 10_000;
const MAX_BUFFER_SIZE: u64 = 1 << 30;
const MAX_BATCH_SIZE: u64 = 64 << 20;

/// What is wrong in `[telemetry]`.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryConfigError {
    #[error("metrics_prefix \"{0}\" must match [a-zA-Z_][a-zA-Z0-9_]*")]
    MetricsPrefix(String),
    #[error(
        "invalid label name \"{0}\": must match [a-zA-Z_][a-zA-Z0-9_]* and not start with \"__\""
    )]
    LabelName(String),
    #[error("label \"{0}\" is reserved for histograms and summaries")]
    ReservedLabel(String),
    #[error("invalid value \"{value}\": {reason}")]
    EnvText { value: String, reason: &'static str },
    #[error("invalid url \"{value}\": {reason}")]
    Url { value: String, reason: &'static str },
    #[error("set either `basic_auth` or `bearer_token`, not both")]
    AuthBoth,
    #[error("queue_size must be between 1 and {MAX_QUEUE_SIZE}")]
    QueueSize,
    #[error("{key} {value} is out of range: must be between 1KiB and {max}MiB")]
    SizeRange {
        key: &'static str,
        value: String,
        max: u64,
    },
    #[error("batch_size {batch} is larger than buffer_size {buffer}")]
    BatchOverBuffer { batch: String, buffer: String },
    #[error("min_backoff must not exceed max_backoff")]
    Backoff,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub metrics_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<SpannedKey, Spanned<String>>,
    pub remote_write: Option<RawRemoteWrite>,
    pub loki: Option<RawLoki>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteWrite {
    pub url: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub queue_size: Option<Spanned<usize>>,
    pub timeout: Option<Spanned<String>>,
    pub min_backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub max_retries: Option<Spanned<u32>>,
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoki {
    pub url: Spanned<String>,
    pub encoding: Option<Spanned<RawLokiEncoding>>,
    #[serde(default)]
    pub labels: BTreeMap<SpannedKey, Spanned<String>>,
    pub tenant: Option<Spanned<String>>,
    pub batch_size: Option<Spanned<RawSize>>,
    pub batch_wait: Option<Spanned<String>>,
    pub buffer_size: Option<Spanned<RawSize>>,
    pub timeout: Option<Spanned<String>>,
    pub min_backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub max_retries: Option<Spanned<u32>>,
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token: Option<Spanned<String>>,
}

/// Keys both pushers share (the serde structs repeat them: `Spanned` values
/// do not survive `#[serde(flatten)]`).
#[derive(Debug)]
struct RawPushSettings {
    timeout: Option<Spanned<String>>,
    min_backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    max_retries: Option<Spanned<u32>>,
    basic_auth: Option<RawBasicAuth>,
    bearer_token: Option<Spanned<String>>,
}

macro_rules! push_settings {
    ($raw:expr) => {
        RawPushSettings {
            timeout: $raw.timeout,
            min_backoff: $raw.min_backoff,
            max_backoff: $raw.max_backoff,
            max_retries: $raw.max_retries,
            basic_auth: $raw.basic_auth,
            bearer_token: $raw.bearer_token,
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: Spanned<String>,
    pub password: Spanned<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLokiEncoding {
    Protobuf,
    Json,
}

pub(super) fn build_telemetry(
    src: &Source<'_>,
    raw: RawTelemetry,
) -> Result<TelemetryConfig, ConfigError> {
    let metrics_prefix = match raw.metrics_prefix {
        None => DEFAULT_METRICS_PREFIX.to_owned(),
        Some(p) if is_metric_name(p.get_ref()) => p.into_inner(),
        Some(p) => {
            let kind = TelemetryConfigError::MetricsPrefix(p.get_ref().clone());
            return Err(error(src, p.span(), kind));
        }
    };
    let labels = build_labels(src, raw.labels)?;
    let remote_write = raw
        .remote_write
        .map(|rw| build_remote_write(src, rw))
        .transpose()?;
    let loki = raw.loki.map(|l| build_loki(src, l)).transpose()?;
    Ok(TelemetryConfig {
        metrics_prefix,
        labels,
        remote_write,
        loki,
    })
}

fn build_remote_write(
    src: &Source<'_>,
    raw: RawRemoteWrite,
) -> Result<RemoteWriteConfig, ConfigError> {
    let url_span = raw.url.span();
    let interval = duration_or(src, raw.interval, DEFAULT_PUSH_INTERVAL)?;
    let queue_size = match raw.queue_size {
        None => DEFAULT_QUEUE_SIZE,
        Some(n) if (1..=MAX_QUEUE_SIZE).contains(n.get_ref()) => n.into_inner(),
        Some(n) => return Err(error(src, n.span(), TelemetryConfigError::QueueSize)),
    };
    let (endpoint, retry) = build_push(src, raw.url, push_settings!(raw), url_span)?;
    Ok(RemoteWriteConfig {
        endpoint,
        interval,
        queue_size,
        retry,
    })
}

fn build_loki(src: &Source<'_>, raw: RawLoki) -> Result<LokiConfig, ConfigError> {
    let url_span = raw.url.span();
    let encoding = match raw.encoding.map(Spanned::into_inner) {
        None | Some(RawLokiEncoding::Protobuf) => LokiEncoding::Protobuf,
        Some(RawLokiEncoding::Json) => LokiEncoding::Json,
    };
    let labels = build_labels(src, raw.labels)?;
    let tenant = raw.tenant.map(|t| env_text(src, &t)).transpose()?;
    let batch_size = size_or(
        src,
        "batch_size",
        raw.batch_size.as_ref(),
        DEFAULT_BATCH_SIZE,
        MAX_BATCH_SIZE,
    )?;
    let buffer_size = size_or(
        src,
        "buffer_size",
        raw.buffer_size.as_ref(),
        DEFAULT_BUFFER_SIZE,
        MAX_BUFFER_SIZE,
    )?;
    if batch_size > buffer_size {
        let span = raw
            .batch_size
            .as_ref()
            .or(raw.buffer_size.as_ref())
            .map_or(url_span.clone(), Spanned::span);
        let kind = TelemetryConfigError::BatchOverBuffer {
            batch: raw
                .batch_size
                .as_ref()
                .map_or_else(|| "1MiB".into(), |s| s.get_ref().to_string()),
            buffer: raw
                .buffer_size
                .as_ref()
                .map_or_else(|| "16MiB".into(), |s| s.get_ref().to_string()),
        };
        return Err(error(src, span, kind));
    }
    let batch_wait = duration_or(src, raw.batch_wait, DEFAULT_BATCH_WAIT)?;
    let (endpoint, retry) = build_push(src, raw.url, push_settings!(raw), url_span)?;
    Ok(LokiConfig {
        endpoint,
        encoding,
        labels,
        tenant,
        batch_size,
        batch_wait,
        buffer_size,
        retry,
    })
}

fn build_push(
    src: &Source<'_>,
    url: Spanned<String>,
    raw: RawPushSettings,
    table_span: std::ops::Range<usize>,
) -> Result<(PushEndpoint, RetryPolicy), ConfigError> {
    let parsed = parse_url(url.get_ref()).map_err(|reason| {
        let kind = TelemetryConfigError::Url {
            value: url.get_ref().clone(),
            reason,
        };
        error(src, url.span(), kind)
    })?;
    let auth = match (raw.basic_auth, raw.bearer_token) {
        (Some(_), Some(token)) => {
            return Err(error(src, token.span(), TelemetryConfigError::AuthBoth));
        }
        (Some(basic), None) => Some(PushAuth::Basic {
            username: env_text(src, &basic.username)?,
            password: env_text(src, &basic.password)?,
        }),
        (None, Some(token)) => Some(PushAuth::Bearer(env_text(src, &token)?)),
        (None, None) => None,
    };
    let timeout = duration_or(src, raw.timeout, DEFAULT_PUSH_TIMEOUT)?;
    let min_backoff = duration_or(src, raw.min_backoff, DEFAULT_MIN_BACKOFF)?;
    let max_span = raw.max_backoff.as_ref().map_or(table_span, Spanned::span);
    let max_backoff = duration_or(src, raw.max_backoff, DEFAULT_MAX_BACKOFF)?;
    if min_backoff > max_backoff {
        return Err(error(src, max_span, TelemetryConfigError::Backoff));
    }
    let max_retries = raw
        .max_retries
        .map_or(DEFAULT_MAX_RETRIES, Spanned::into_inner);
    Ok((
        PushEndpoint {
            url: parsed,
            auth,
            timeout,
            // Set from `[tailnet]` once both are read (`dial_like`).
            socks5: None,
        },
        RetryPolicy {
            min_backoff,
            max_backoff,
            max_retries,
        },
    ))
}

fn build_labels(
    src: &Source<'_>,
    raw: BTreeMap<SpannedKey, Spanned<String>>,
) -> Result<BTreeMap<String, EnvText>, ConfigError> {
    let mut labels = BTreeMap::new();
    for (name, value) in raw {
        if !is_label_name(name.get_ref()) {
            let kind = TelemetryConfigError::LabelName(name.get_ref().clone());
            return Err(error(src, name.span(), kind));
        }
        if matches!(name.get_ref().as_str(), "le" | "quantile") {
            let kind = TelemetryConfigError::ReservedLabel(name.get_ref().clone());
            return Err(error(src, name.span(), kind));
        }
        labels.insert(name.into_inner(), env_text(src, &value)?);
    }
    Ok(labels)
}

fn env_text(src: &Source<'_>, raw: &Spanned<String>) -> Result<EnvText, ConfigError> {
    EnvText::parse(raw.get_ref()).map_err(|reason| {
        let kind = TelemetryConfigError::EnvText {
            value: raw.get_ref().clone(),
            reason,
        };
        error(src, raw.span(), kind)
    })
}

fn duration_or(
    src: &Source<'_>,
    raw: Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(d) => src.at(d.span(), None, parse_duration(d.get_ref())),
    }
}

fn size_or(
    src: &Source<'_>,
    key: &'static str,
    raw: Option<&Spanned<RawSize>>,
    default: usize,
    max: u64,
) -> Result<usize, ConfigError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let bytes = src.at(raw.span(), None, raw.get_ref().bytes())?;
    if !(1024..=max).contains(&bytes) {
        let kind = TelemetryConfigError::SizeRange {
            key,
            value: raw.get_ref().to_string(),
            max: max >> 20,
        };
        return Err(error(src, raw.span(), kind));
    }
    usize::try_from(bytes).map_err(|_| {
        let kind = TelemetryConfigError::SizeRange {
            key,
            value: raw.get_ref().to_string(),
            max: max >> 20,
        };
        error(src, raw.span(), kind)
    })
}

fn parse_url(text: &str) -> Result<http::Uri, &'static str> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| "not a URL (e.g. \"https://logs.example.com/loki/api/v1/push\")")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the scheme must be http or https"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host");
    }
    Ok(uri)
}

fn error(
    src: &Source<'_>,
    span: std::ops::Range<usize>,
    kind: TelemetryConfigError,
) -> ConfigError {
    src.error(span, None, ConfigErrorKind::Telemetry(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retries_outlast_a_one_minute_outage() {
        let policy = RetryPolicy {
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_retries: DEFAULT_MAX_RETRIES,
        };
        let mut backoff = crate::telemetry::retry::Backoff::new(policy);
        let mut waited = Duration::ZERO;
        while let Some(wait) = backoff.next_delay(None) {
            waited += wait;
        }
        assert!(waited >= Duration::from_secs(60), "{waited:?}");
    }

    #[test]
    fn urls_need_http_and_a_host() {
        assert!(parse_url("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(parse_url("https://logs.example.com/loki/api/v1/push").is_ok());
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("/loki/api/v1/push").is_err());
        assert!(parse_url("not a url").is_err());
    }
}
