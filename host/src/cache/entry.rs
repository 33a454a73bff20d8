//! A stored response and what the cache knows about it: status, header
//! fields, body, its RFC 9111 policy (for `Age`), until when it is fresh and
//! how long it may be served stale. Built by `freshness` from an upstream
//! response; served on a hit (as the body or, for HEAD and the client's own
//! conditional requests, without it) and refreshed by a 304.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_cache_semantics::CachePolicy;

use crate::body::{empty_body, full_body, ProxyBody};

/// A response held by the cache.
#[derive(Debug)]
pub struct CachedResponse {
    pub status: StatusCode,
    /// As served: hop-by-hop fields removed, `Content-Length` set to the
    /// body's length, `Set-Cookie` removed when ignored.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Request header names the response varies on (lower case).
    pub vary: Vec<HeaderName>,
    pub(super) policy: CachePolicy,
    pub fresh_until: SystemTime,
    /// `stale-while-revalidate` of the response: served stale for this long
    /// after expiry while it is refreshed in the background.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error`: served stale for this long after expiry when the
    /// upstream fails.
    pub stale_if_error: Duration,
    /// False when the upstream forbade serving it stale (`must-revalidate`,
    /// `proxy-revalidate`, `s-maxage`, `no-cache`).
    pub may_serve_stale: bool,
}

impl CachedResponse {
    /// Bytes it occupies: body and header fields.
    pub fn stored_bytes(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        (self.body.len() + headers) as u64
    }

    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.fresh_until
    }

    /// Time since it went stale (zero while fresh).
    fn staleness(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or_default()
    }

    /// Within the response's `stale-while-revalidate` window.
    pub fn within_stale_while_revalidate(&self, now: SystemTime) -> bool {
        self.may_serve_stale && self.staleness(now) < self.stale_while_revalidate
    }

    /// Within the response's `stale-if-error` window.
    pub fn within_stale_if_error(&self, now: SystemTime) -> bool {
        self.may_serve_stale && self.staleness(now) < self.stale_if_error
    }

    /// Conditional request fields for revalidating it: `If-None-Match` with
    /// its `ETag`, `If-Modified-Since` with its `Last-Modified`. `None` when
    /// it has no validator.
    pub fn validators(&self) -> Option<HeaderMap> {
        let mut conditions = HeaderMap::new();
        if let Some(etag) = self.headers.get(header::ETAG) {
            conditions.insert(header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = self.headers.get(header::LAST_MODIFIED) {
            conditions.insert(header::IF_MODIFIED_SINCE, modified.clone());
        }
        (!conditions.is_empty()).then_some(conditions)
    }

    /// The response to send, with its current `Age`. Without a body for a
    /// HEAD; a 304 when the client's own `If-None-Match` /
    /// `If-Modified-Since` match.
    pub fn response(
        &self,
        now: SystemTime,
        head_only: bool,
        request_headers: &HeaderMap,
    ) -> Response<ProxyBody> {
        let mut headers = self.headers.clone();
        headers.insert(
            header::AGE,
            HeaderValue::from(self.policy.age(now).as_secs()),
        );
        if self.status == StatusCode::OK && self.client_has_it(request_headers) {
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::CONTENT_TYPE);
            let mut response = Response::new(empty_body());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.headers_mut() = headers;
            return response;
        }
        let body = if head_only {
            empty_body()
        } else {
            full_body(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }

    /// The client's conditional request matches this response (RFC 9110
    /// 13.1.2 weak comparison; `If-Modified-Since` only without `If-None-Match`).
    fn client_has_it(&self, request_headers: &HeaderMap) -> bool {
        if request_headers.contains_key(header::IF_NONE_MATCH) {
            let Some(etag) = self.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
                return false;
            };
            let etag = etag.trim().trim_start_matches("W/");
            return request_headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|t| t.trim())
                .any(|t| t == "*" || t.trim_start_matches("W/") == etag);
        }
        // Most requests are not conditional: parse the stored date only
        // for one that is.
        let Some(since) = request_headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return false;
        };
        let modified = self
            .headers
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        modified.is_some_and(|modified| modified <= since)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry with `len` bytes of body that varies on `vary`.
    pub(crate) fn entry_with_body(len: usize, vary: &[&'static str]) -> CachedResponse {
        let req = http::Request::get("http://example.com/")
            .body(())
            .expect("request");
        let resp = http::Response::builder()
            .status(200)
            .header("cache-control", "max-age=60")
            .body(())
            .expect("response");
        CachedResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; len]),
            vary: vary.iter().map(|v| HeaderName::from_static(v)).collect(),
            policy: CachePolicy::new(&req, &resp),
            fresh_until: SystemTime::now() + Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            may_serve_stale: true,
        }
    }

    #[test]
    fn client_conditionals_get_a_304() {
        let mut entry = entry_with_body(3, &[]);
        entry
            .headers
            .insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        let mut req = HeaderMap::new();
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"v1\""));
        let now = SystemTime::now();
        assert_eq!(entry.response(now, false, &req).status(), 304);
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"v2\""));
        assert_eq!(entry.response(now, false, &req).status(), 200);
        assert_eq!(
            entry.response(now, false, &HeaderMap::new()).headers()["age"],
            "0"
        );
    }
}
