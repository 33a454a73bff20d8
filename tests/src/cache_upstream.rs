//! The test upstream's `/cache/NAME` paths: responses whose caching headers
//! the test controls, for the response-cache tests. Parameters come from the
//! query string and, overriding it, from an `x-upstream` request header in
//! the same `a=b&c=d` form (so a test can change the upstream's answer for
//! a URL the cache keys without the query, or for a background refresh):
//!
//! - `cc=...` the `Cache-Control` value (percent-encoded);
//! - `etag=V` answers with `ETag: "V"`, and 304 to a matching `If-None-Match`;
//! - `lm=SECS` answers `Last-Modified` SECS seconds before the first
//!   `/cache` request of the test process, and 304 to an
//!   `If-Modified-Since` not older than it;
//! - `expires=SECS` answers `Expires` SECS seconds from now;
//! - `vary=NAME` answers `Vary: NAME` and puts the request's NAME value in the body;
//! - `status=N`, `delay=MS`, `size=N` (body of N bytes of `x`), `cookie=1`
//!   (a `Set-Cookie`), `chunked=1` (no `Content-Length`).
//!
//! The default body is `NAME #K`, K counting requests for that path (1, 2, ...),
//! so a test sees which upstream answer it got.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};

use crate::upstream::{Body, UpstreamStats};

/// Answer a `/cache/NAME` request.
pub async fn respond<B>(req: &Request<B>, name: &str, stats: &UpstreamStats) -> Response<Body> {
    let count = stats.count_path(req.uri().path());
    let mut params = parse_params(req.uri().query().unwrap_or(""));
    if let Some(extra) = req
        .headers()
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
    {
        params.extend(parse_params(extra));
    }
    let param = |k: &str| params.get(k).map(String::as_str);

    if let Some(ms) = param("delay").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = param("status")
        .and_then(|v| v.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let etag = param("etag").map(|v| format!("\"{v}\""));
    let last_modified = param("lm")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|secs| started() - Duration::from_secs(secs));

    let mut headers = http::HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    if let Some(cc) = param("cc") {
        set(header::CACHE_CONTROL, cc);
    }
    if let Some(etag) = &etag {
        set(header::ETAG, etag);
    }
    if let Some(lm) = last_modified {
        set(header::LAST_MODIFIED, &httpdate::fmt_http_date(lm));
    }
    if let Some(secs) = param("expires").and_then(|v| v.parse::<u64>().ok()) {
        let at = SystemTime::now() + Duration::from_secs(secs);
        set(header::EXPIRES, &httpdate::fmt_http_date(at));
    }
    if let Some(vary) = param("vary") {
        set(header::VARY, vary);
    }
    if param("cookie").is_some() {
        set(header::SET_COOKIE, "session=abc; Path=/");
    }
    set(header::CONTENT_TYPE, "text/plain");

    if status == StatusCode::OK && not_modified(req, etag.as_deref(), last_modified) {
        let mut resp = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        *resp.headers_mut() = headers;
        resp.headers_mut().remove(header::CONTENT_TYPE);
        return resp;
    }

    let body: Bytes = match param("size").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => vec![b'x'; n].into(),
        None => {
            let mut text = format!("{name} #{count}");
            if let Some(vary) = param("vary") {
                let value = req
                    .headers()
                    .get(vary)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                text.push_str(&format!(" {vary}={value}"));
            }
            text.into()
        }
    };
    let mut resp = if param("chunked").is_some() {
        // Two frames and no size hint: sent chunked, no Content-Length.
        let half = body.len() / 2;
        let frames: Vec<Result<http_body::Frame<Bytes>, hyper::Error>> = vec![
            Ok(http_body::Frame::data(body.slice(..half))),
            Ok(http_body::Frame::data(body.slice(half..))),
        ];
        Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
    } else {
        Response::new(Full::new(body).map_err(|e| match e {}).boxed())
    };
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// When this process first answered a `/cache` request: `lm` counts back
/// from it, so one path's `Last-Modified` stays the same between requests.
fn started() -> SystemTime {
    static STARTED: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    *STARTED.get_or_init(SystemTime::now)
}

/// The request's conditional fields match the current representation.
fn not_modified<B>(req: &Request<B>, etag: Option<&str>, modified: Option<SystemTime>) -> bool {
    if let Some(wanted) = req.headers().get(header::IF_NONE_MATCH) {
        let wanted = wanted.to_str().unwrap_or("");
        return etag.is_some_and(|etag| wanted.split(',').any(|t| t.trim() == etag));
    }
    let since = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        (Some(since), Some(modified)) => modified <= since + Duration::from_secs(1),
        _ => false,
    }
}

fn parse_params(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` percent-encoded for a query value (for `cc=` and the like).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
