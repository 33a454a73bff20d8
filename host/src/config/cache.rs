//! The response cache's config: the top-level `[cache]` section (size bound,
//! `inactive` expiry) and a route's `cache = { ... }` table (key template,
//! validity per status, ignored upstream headers, methods, bypass and
//! no-store conditions, stale rules, lock, entry size, status header) —
//! raw tables and the build step (the validated types are in
//! `model/cache.rs`). Part of config loading; read by the pipeline's cache
//! phase.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Context, Source};
use super::model::cache::{CacheCondition, CacheConfig, IgnoredHeaders, RouteCache, UseStale};
use super::raw::{RawSize, SpannedKey};
use super::values::parse_duration;
use crate::cache::key::{CacheKeyTemplate, KeyTemplateError, DEFAULT_KEY_TEMPLATE};

/// Default `lock_timeout`: 5 s, as nginx `proxy_cache_lock_timeout`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `max_entry_size`: 8 MiB.
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 8 << 20;
/// Default `use_stale`: keep serving the site when the upstream is down.
pub const DEFAULT_USE_STALE: &[&str] = &[
    "error", "timeout", "updating", "http_500", "http_502", "http_503", "http_504",
];

// === raw ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_size: Option<Spanned<RawSize>>,
    pub inactive: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteCache {
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub valid: BTreeMap<SpannedKey, Spanned<String>>,
    pub ignore_headers: Option<Vec<Spanned<String>>>,
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub bypass: Option<Vec<Spanned<String>>>,
    pub no_store: Option<Vec<Spanned<String>>>,
    pub use_stale: Option<Spanned<Vec<Spanned<String>>>>,
    pub background_update: Option<Spanned<bool>>,
    pub lock: Option<Spanned<bool>>,
    pub lock_timeout: Option<Spanned<String>>,
    pub max_entry_size: Option<Spanned<RawSize>>,
    pub status_header: Option<Spanned<String>>,
}

/// A `cache` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheConfigError {
    #[error("cache key: {0}")]
    Key(#[from] KeyTemplateError),
    #[error("cache valid: status \"{0}\" must be a number between 100 and 599, or \"any\"")]
    ValidStatus(String),
    #[error("cache ignore_headers: \"{0}\" cannot be ignored; use \"Cache-Control\", \"Expires\" or \"Set-Cookie\"")]
    IgnoreHeader(String),
    #[error("cache methods: \"{0}\" is not cached; use \"GET\" and/or \"HEAD\"")]
    Method(String),
    #[error("cache methods must name at least one method")]
    MethodsEmpty,
    #[error("cache condition \"{0}\": use \"header:NAME\", \"cookie:NAME\" or \"query:NAME\"")]
    Condition(String),
    #[error("cache use_stale: unknown \"{0}\"; use \"error\", \"timeout\", \"updating\", \"http_500\", \"http_502\", \"http_503\", \"http_504\", \"http_403\", \"http_404\", \"http_429\" or \"off\"")]
    UseStale(String),
    #[error("cache use_stale: \"off\" cannot be combined with other values")]
    UseStaleOff,
    #[error("cache max_entry_size must be at least 1 byte")]
    MaxEntrySize,
    #[error("invalid header name \"{0}\" for cache status_header")]
    StatusHeader(String),
    #[error("cache max_size must be at least 1 byte")]
    MaxSize,
    #[error("a route with `cache` needs a `url` upstream (static files are not cached)")]
    StaticUpstream,
}

// === build ===

pub(super) fn build_cache(src: &Source<'_>, raw: RawCache) -> Result<CacheConfig, ConfigError> {
    let mut config = CacheConfig::default();
    if let Some(size) = &raw.max_size {
        let bytes = src.at(size.span(), None, size.get_ref().bytes())?;
        if bytes == 0 {
            return Err(src.error(size.span(), None, CacheConfigError::MaxSize.into()));
        }
        config.max_size = bytes;
    }
    if let Some(inactive) = &raw.inactive {
        config.inactive = src.at(inactive.span(), None, parse_duration(inactive.get_ref()))?;
    }
    Ok(config)
}

/// Validate a route's `cache` table. `table_span` places errors about the
/// table as a whole (at the route's name).
pub(super) fn build_route_cache(
    src: &Source<'_>,
    context: &Context,
    raw: &RawRouteCache,
) -> Result<RouteCache, ConfigError> {
    let err = |span: Range<usize>, e: CacheConfigError| src.error(span, Some(context), e.into());
    let key = match &raw.key {
        None => CacheKeyTemplate::parse(DEFAULT_KEY_TEMPLATE).map_err(CacheConfigError::Key),
        Some(k) => CacheKeyTemplate::parse(k.get_ref()).map_err(CacheConfigError::Key),
    }
    .map_err(|e| err(raw.key.as_ref().map_or(0..0, Spanned::span), e))?;

    let mut valid = BTreeMap::new();
    let mut valid_any = None;
    for (status, duration) in &raw.valid {
        let ttl = src.at(
            duration.span(),
            Some(context),
            parse_duration(duration.get_ref()),
        )?;
        if status.get_ref() == "any" {
            valid_any = Some(ttl);
            continue;
        }
        let code = status
            .get_ref()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| {
                err(
                    status.span(),
                    CacheConfigError::ValidStatus(status.get_ref().clone()),
                )
            })?;
        valid.insert(code, ttl);
    }

    let mut ignore_headers = IgnoredHeaders::default();
    for name in raw.ignore_headers.iter().flatten() {
        match name.get_ref().to_ascii_lowercase().as_str() {
            "cache-control" => ignore_headers.cache_control = true,
            "expires" => ignore_headers.expires = true,
            "set-cookie" => ignore_headers.set_cookie = true,
            _ => {
                return Err(err(
                    name.span(),
                    CacheConfigError::IgnoreHeader(name.get_ref().clone()),
                ))
            }
        }
    }

    let (mut cache_get, mut cache_head) = (true, true);
    if let Some(methods) = &raw.methods {
        if methods.get_ref().is_empty() {
            return Err(err(methods.span(), CacheConfigError::MethodsEmpty));
        }
        (cache_get, cache_head) = (false, false);
        for m in methods.get_ref() {
            match m.get_ref().to_ascii_uppercase().as_str() {
                "GET" => cache_get = true,
                "HEAD" => cache_head = true,
                _ => return Err(err(m.span(), CacheConfigError::Method(m.get_ref().clone()))),
            }
        }
    }

    let conditions = |list: &Option<Vec<Spanned<String>>>| {
        list.iter()
            .flatten()
            .map(|c| parse_condition(c.get_ref()).map_err(|e| err(c.span(), e)))
            .collect::<Result<Vec<_>, _>>()
    };
    let bypass = conditions(&raw.bypass)?;
    let no_store = conditions(&raw.no_store)?;

    let use_stale = match &raw.use_stale {
        None => {
            parse_use_stale(DEFAULT_USE_STALE.iter().copied()).map_err(|(_, e)| err(0..0, e))?
        }
        Some(list) => {
            let items = list.get_ref();
            parse_use_stale(items.iter().map(|s| s.get_ref().as_str()))
                .map_err(|(i, e)| err(items.get(i).map_or(list.span(), Spanned::span), e))?
        }
    };

    let lock_timeout = match &raw.lock_timeout {
        None => DEFAULT_LOCK_TIMEOUT,
        Some(t) => src.at(t.span(), Some(context), parse_duration(t.get_ref()))?,
    };
    let max_entry_size = match &raw.max_entry_size {
        None => DEFAULT_MAX_ENTRY_SIZE,
        Some(size) => {
            let bytes = src.at(size.span(), Some(context), size.get_ref().bytes())?;
            if bytes == 0 {
                return Err(err(size.span(), CacheConfigError::MaxEntrySize));
            }
            bytes
        }
    };
    let status_header = raw
        .status_header
        .as_ref()
        .map(|h| {
            HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
                err(
                    h.span(),
                    CacheConfigError::StatusHeader(h.get_ref().clone()),
                )
            })
        })
        .transpose()?;

    Ok(RouteCache {
        key,
        valid,
        valid_any,
        ignore_headers,
        cache_get,
        cache_head,
        bypass,
        no_store,
        use_stale,
        background_update: raw.background_update.as_ref().is_some_and(|b| *b.get_ref()),
        lock: raw.lock.as_ref().is_none_or(|b| *b.get_ref()),
        lock_timeout,
        max_entry_size,
        status_header,
    })
}

fn parse_condition(text: &str) -> Result<CacheCondition, CacheConfigError> {
    let bad = || CacheConfigError::Condition(text.to_owned());
    let (kind, name) = text.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad());
    }
    match kind.trim() {
        "header" => HeaderName::from_bytes(name.as_bytes())
            .map(CacheCondition::Header)
            .map_err(|_| bad()),
        "cookie" => Ok(CacheCondition::Cookie(name.to_owned())),
        "query" => Ok(CacheCondition::Query(name.to_owned())),
        _ => Err(bad()),
    }
}

/// The `use_stale` list; an error carries the index of the bad item.
fn parse_use_stale<'a>(
    items: impl Iterator<Item = &'a str>,
) -> Result<UseStale, (usize, CacheConfigError)> {
    let mut stale = UseStale::default();
    let mut off = None;
    let mut count = 0;
    for (i, item) in items.enumerate() {
        count += 1;
        match item {
            "off" => off = Some(i),
            "error" => stale.error = true,
            "timeout" => stale.timeout = true,
            "updating" => stale.updating = true,
            other => {
                let status = other
                    .strip_prefix("http_")
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|s| matches!(s, 403 | 404 | 429 | 500 | 502 | 503 | 504))
                    .ok_or_else(|| (i, CacheConfigError::UseStale(other.to_owned())))?;
                stale.statuses.push(status);
            }
        }
    }
    match off {
        Some(i) if count > 1 => Err((i, CacheConfigError::UseStaleOff)),
        _ => Ok(stale),
    }
}

impl From<CacheConfigError> for ConfigErrorKind {
    fn from(e: CacheConfigError) -> Self {
        ConfigErrorKind::Cache(e)
    }
}
