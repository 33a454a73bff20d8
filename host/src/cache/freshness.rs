//! Whether an upstream response may be stored, and for how long it is
//! fresh: RFC 9111 for a shared cache through `http-cache-semantics`
//! (`no-store`, `private`, `Authorization`, `s-maxage` / `max-age` /
//! `Expires`, heuristic freshness from `Last-Modified`), with the route's
//! nginx-style overrides on top: ignored upstream headers
//! (`proxy_ignore_headers`) and validity per status (`proxy_cache_valid`,
//! used when the upstream gives no explicit freshness). Also freshens a
//! stored response from a 304 (RFC 9111 4.3.4). Runs in the cache step of
//! the upstream phase, when a response head arrives.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use http_cache_semantics::{CacheOptions, CachePolicy};

use super::entry::CachedResponse;
use crate::config::model::RouteCache;

/// Why a response is not stored (for debug logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotStorable {
    #[error("status {0} is not cached")]
    Status(u16),
    #[error("Vary: *")]
    VaryAny,
    #[error("Set-Cookie (not ignored)")]
    SetCookie,
    #[error("RFC 9111 forbids storing it (no-store, private, Authorization, or no freshness)")]
    Forbidden,
    #[error("zero freshness and no validator")]
    NothingToKeep,
}

/// A storable response head: everything of the entry but its body.
#[derive(Debug)]
pub struct StoragePlan {
    status: StatusCode,
    headers: HeaderMap,
    vary: Vec<HeaderName>,
    policy: CachePolicy,
    fresh_until: SystemTime,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    may_serve_stale: bool,
}

impl StoragePlan {
    pub fn into_entry(mut self, body: Bytes) -> CachedResponse {
        self.headers
            .insert(header::CONTENT_LENGTH, body.len().into());
        CachedResponse {
            status: self.status,
            headers: self.headers,
            body,
            vary: self.vary,
            policy: self.policy,
            fresh_until: self.fresh_until,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            may_serve_stale: self.may_serve_stale,
        }
    }
}

/// The request a stored response answers, as the policy sees it: a GET
/// (HEAD is converted) with the client's header fields.
pub fn policy_request(uri: &Uri, request_headers: &HeaderMap) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = uri.clone();
    parts.headers = request_headers.clone();
    parts
}

/// Decide whether (and how long) the response with `status` and `headers`
/// (hop-by-hop fields already removed) may be stored.
pub fn assess(
    settings: &RouteCache,
    request: &http::request::Parts,
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<StoragePlan, NotStorable> {
    if matches!(status.as_u16(), 206 | 304) || status.is_informational() {
        return Err(NotStorable::Status(status.as_u16()));
    }
    let vary = vary_names(headers).ok_or(NotStorable::VaryAny)?;
    let ignored = settings.ignore_headers;
    let mut stored = headers.clone();
    if headers.contains_key(header::SET_COOKIE) {
        if !ignored.set_cookie {
            return Err(NotStorable::SetCookie);
        }
        stored.remove(header::SET_COOKIE);
    }
    // What the RFC rules see: the response without the ignored fields.
    let mut seen = stored.clone();
    if ignored.cache_control {
        seen.remove(header::CACHE_CONTROL);
        seen.remove(header::PRAGMA);
    }
    if ignored.expires {
        seen.remove(header::EXPIRES);
    }

    let configured = settings
        .valid
        .get(&status.as_u16())
        .copied()
        .or(settings.valid_any);
    let options = CacheOptions {
        shared: true,
        ..CacheOptions::default()
    };
    let response = |status: StatusCode| {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.headers = seen.clone();
        parts
    };
    let mut policy = CachePolicy::new_options(request, &response(status), now, options);
    if !policy.is_storable() {
        // The policy knows only the statuses RFC 9110 defines as cacheable;
        // `valid` may name others (nginx caches any status it is told to).
        // Everything else it checks must still pass.
        let as_ok = CachePolicy::new_options(request, &response(StatusCode::OK), now, options);
        if configured.is_none() || !as_ok.is_storable() {
            return Err(NotStorable::Forbidden);
        }
        policy = as_ok;
    }

    let directives = CacheDirectives::parse(&seen);
    let explicit = directives.max_age || directives.s_maxage || seen.contains_key(header::EXPIRES);
    let ttl = match configured {
        Some(ttl) if !explicit => ttl,
        _ => policy.time_to_live(now),
    };
    let has_validator =
        stored.contains_key(header::ETAG) || stored.contains_key(header::LAST_MODIFIED);
    let stale_while_revalidate = directives.stale_while_revalidate.unwrap_or_default();
    let stale_if_error = directives.stale_if_error.unwrap_or_default();
    if ttl.is_zero()
        && !has_validator
        && stale_while_revalidate.is_zero()
        && stale_if_error.is_zero()
    {
        return Err(NotStorable::NothingToKeep);
    }
    Ok(StoragePlan {
        status,
        headers: stored,
        vary,
        policy,
        fresh_until: now + ttl,
        stale_while_revalidate,
        stale_if_error,
        may_serve_stale: !directives.forbids_stale(),
    })
}

/// The stored response freshened by a 304's header fields (RFC 9111
/// 4.3.4): its fields replace the stored ones, except those describing the
/// body. `None` when the freshened response may no longer be stored.
pub fn freshen(
    settings: &RouteCache,
    request: &http::request::Parts,
    stored: &CachedResponse,
    not_modified: &HeaderMap,
    now: SystemTime,
) -> Result<CachedResponse, NotStorable> {
    let mut headers = stored.headers.clone();
    for name in not_modified.keys() {
        if matches!(
            name.as_str(),
            "content-length" | "content-encoding" | "transfer-encoding" | "content-range"
        ) {
            continue;
        }
        headers.remove(name);
        for value in not_modified.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.remove(header::AGE);
    assess(settings, request, stored.status, &headers, now)
        .map(|plan| plan.into_entry(stored.body.clone()))
}

/// Request header names in `Vary` (lower case); `None` for `Vary: *`.
fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for token in headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if token == "*" {
            return None;
        }
        if let Ok(name) = HeaderName::from_bytes(token.to_ascii_lowercase().as_bytes()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

/// The `Cache-Control` directives the policy crate does not act on for us.
#[derive(Debug, Default)]
struct CacheDirectives {
    max_age: bool,
    s_maxage: bool,
    no_cache: bool,
    must_revalidate: bool,
    proxy_revalidate: bool,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
}

impl CacheDirectives {
    fn parse(headers: &HeaderMap) -> Self {
        let mut d = CacheDirectives::default();
        let seconds = |v: Option<&str>| {
            v.and_then(|v| v.trim().trim_matches('"').parse::<u64>().ok())
                .map(Duration::from_secs)
        };
        for directive in headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (directive, None),
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "max-age" => d.max_age = true,
                "s-maxage" => d.s_maxage = true,
                "no-cache" => d.no_cache = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "stale-while-revalidate" => d.stale_while_revalidate = seconds(value),
                "stale-if-error" => d.stale_if_error = seconds(value),
                _ => {}
            }
        }
        d
    }

    /// RFC 9111 4.2.4: a cache must not serve a stale response when the
    /// origin forbids it.
    fn forbids_stale(&self) -> bool {
        self.no_cache || self.must_revalidate || self.proxy_revalidate || self.s_maxage
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cache::key::{CacheKeyTemplate, DEFAULT_KEY_TEMPLATE};
    use crate::config::model::{IgnoredHeaders, UseStale};
    use std::collections::BTreeMap;

    /// A route's cache settings with every default (1 MiB entries).
    pub(crate) fn settings() -> RouteCache {
        RouteCache {
            key: CacheKeyTemplate::parse(DEFAULT_KEY_TEMPLATE).expect("key"),
            valid: BTreeMap::new(),
            valid_any: None,
            ignore_headers: IgnoredHeaders::default(),
            cache_get: true,
            cache_head: true,
            bypass: vec![],
            no_store: vec![],
            use_stale: UseStale::default(),
            background_update: false,
            lock: true,
            lock_timeout: Duration::from_secs(5),
            max_entry_size: 1 << 20,
            status_header: None,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, http::HeaderValue::from_static(v));
        }
        map
    }

    fn request(pairs: &[(&'static str, &'static str)]) -> http::request::Parts {
        policy_request(&Uri::from_static("http://example.com/a"), &headers(pairs))
    }

    fn ttl(plan: &StoragePlan, now: SystemTime) -> u64 {
        plan.fresh_until
            .duration_since(now)
            .expect("fresh")
            .as_secs()
    }

    #[test]
    fn max_age_s_maxage_and_expires() {
        let now = SystemTime::now();
        let s = settings();
        let plan = assess(
            &s,
            &request(&[]),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=60")]),
            now,
        )
        .unwrap();
        assert_eq!(ttl(&plan, now), 60);
        let plan = assess(
            &s,
            &request(&[]),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=60, s-maxage=5")]),
            now,
        )
        .unwrap();
        assert_eq!(ttl(&plan, now), 5);
        assert!(!plan.may_serve_stale, "s-maxage implies proxy-revalidate");
        let plan = assess(
            &s,
            &request(&[]),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=60"), ("age", "50")]),
            now,
        )
        .unwrap();
        assert_eq!(ttl(&plan, now), 10);
    }

    #[test]
    fn forbidden_responses_are_not_stored() {
        let now = SystemTime::now();
        let s = settings();
        for h in [
            headers(&[("cache-control", "no-store, max-age=60")]),
            headers(&[("cache-control", "private, max-age=60")]),
            headers(&[("cache-control", "max-age=60"), ("vary", "*")]),
            headers(&[("cache-control", "max-age=60"), ("set-cookie", "a=1")]),
            headers(&[]), // no freshness, no validator
        ] {
            assert!(
                assess(&s, &request(&[]), StatusCode::OK, &h, now).is_err(),
                "{h:?}"
            );
        }
        // Authorization: only with public / s-maxage / must-revalidate.
        let auth = request(&[("authorization", "Bearer x")]);
        assert_eq!(
            assess(
                &s,
                &auth,
                StatusCode::OK,
                &headers(&[("cache-control", "max-age=60")]),
                now
            )
            .unwrap_err(),
            NotStorable::Forbidden
        );
        assert!(assess(
            &s,
            &auth,
            StatusCode::OK,
            &headers(&[("cache-control", "public, max-age=60")]),
            now
        )
        .is_ok());
    }

    #[test]
    fn heuristic_freshness_from_last_modified() {
        let now = SystemTime::now();
        let ten_days_ago = httpdate::fmt_http_date(now - Duration::from_secs(10 * 86400));
        let mut h = HeaderMap::new();
        h.insert("last-modified", ten_days_ago.parse().unwrap());
        let plan = assess(&settings(), &request(&[]), StatusCode::OK, &h, now).unwrap();
        // 10% of the time since the last modification: one day.
        assert!(
            (86_390..=86_400).contains(&ttl(&plan, now)),
            "{}",
            ttl(&plan, now)
        );
    }

    #[test]
    fn valid_applies_without_explicit_freshness_and_after_ignored_headers() {
        let now = SystemTime::now();
        let mut s = settings();
        s.valid.insert(200, Duration::from_secs(86400));
        s.valid.insert(500, Duration::from_secs(60));
        let plan = assess(&s, &request(&[]), StatusCode::OK, &headers(&[]), now).unwrap();
        assert_eq!(ttl(&plan, now), 86400);
        let plan = assess(
            &s,
            &request(&[]),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=5")]),
            now,
        )
        .unwrap();
        assert_eq!(ttl(&plan, now), 5, "the upstream's explicit freshness wins");
        // A status RFC 9110 does not make cacheable, when configured.
        let plan = assess(
            &s,
            &request(&[]),
            StatusCode::INTERNAL_SERVER_ERROR,
            &headers(&[]),
            now,
        )
        .unwrap();
        assert_eq!(ttl(&plan, now), 60);
        assert!(assess(
            &s,
            &request(&[]),
            StatusCode::BAD_GATEWAY,
            &headers(&[]),
            now
        )
        .is_err());

        s.ignore_headers.cache_control = true;
        s.ignore_headers.set_cookie = true;
        let plan = assess(
            &s,
            &request(&[]),
            StatusCode::OK,
            &headers(&[("cache-control", "no-store"), ("set-cookie", "a=1")]),
            now,
        )
        .unwrap();
        assert_eq!(ttl(&plan, now), 86400);
        let entry = plan.into_entry(Bytes::from_static(b"ok"));
        assert!(!entry.headers.contains_key("set-cookie"));
        assert_eq!(entry.headers["cache-control"], "no-store");
        assert_eq!(entry.headers["content-length"], "2");
    }

    #[test]
    fn stale_directives_and_freshening() {
        let now = SystemTime::now();
        let s = settings();
        let plan = assess(
            &s,
            &request(&[]),
            StatusCode::OK,
            &headers(&[
                (
                    "cache-control",
                    "max-age=1, stale-while-revalidate=30, stale-if-error=60",
                ),
                ("etag", "\"a\""),
            ]),
            now,
        )
        .unwrap();
        let entry = plan.into_entry(Bytes::from_static(b"body"));
        let later = now + Duration::from_secs(5);
        assert!(!entry.is_fresh(later));
        assert!(entry.within_stale_while_revalidate(later));
        assert!(entry.within_stale_if_error(later));
        assert!(!entry.within_stale_while_revalidate(now + Duration::from_secs(40)));
        assert_eq!(entry.validators().unwrap()["if-none-match"], "\"a\"");

        let fresh = freshen(
            &s,
            &request(&[]),
            &entry,
            &headers(&[("cache-control", "max-age=100"), ("content-length", "0")]),
            later,
        )
        .unwrap();
        assert!(fresh.is_fresh(later + Duration::from_secs(99)));
        assert_eq!(&fresh.body[..], b"body");
        assert_eq!(fresh.headers["content-length"], "4");
        assert_eq!(fresh.headers["etag"], "\"a\"");
    }
}
