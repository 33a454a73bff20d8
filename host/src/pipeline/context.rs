//! Per-request state of the pipeline: one [`RequestContext`] is created when
//! a request arrives, filled in by each phase (route, vars, upstream timing)
//! and consumed by the log phase. Also the conversions between hyper's
//! `HeaderMap` and the WIT header lists plugins see.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use tailgate_runtime::{Header, HeaderFilter, RequestHead, Scheme, Var};

use crate::body::BodyCounter;
use crate::config::model::Route;
use crate::forwarding::ClientInfo;
use crate::plugin_chain::{RouteChain, WireEdit};

/// What the pipeline knows about one request so far.
pub struct RequestContext {
    /// When the first byte of the request head was handled.
    pub start: Instant,
    pub started_at: SystemTime,
    pub client: ClientInfo,
    pub method: Method,
    /// Host as routed: lower case, no port.
    pub host: String,
    /// Path and query as received.
    pub uri: String,
    pub version: Version,
    pub user_agent: String,
    pub referer: String,
    /// The Host header as sent (the authority for HTTP/2, else the routed
    /// host), when the log hook reads it; set by
    /// [`RequestContext::request_head`].
    pub http_host: String,
    /// The normalised path, when the log hook reads it; set by
    /// [`RequestContext::keep_logged_fields`].
    pub path: String,
    /// The request header fields the log hook reads, as received (empty
    /// when the route has no log hook); set by [`RequestContext::request_head`].
    pub request_headers: Vec<Header>,
    pub route: Option<Arc<Route>>,
    pub chain: Option<Arc<RouteChain>>,
    /// Vars set by request hooks (nginx-variable style), for the log.
    pub vars: Vec<Var>,
    /// The header edits the request hooks applied, in order (checked).
    pub request_header_edits: Vec<WireEdit>,
    /// Request body bytes read from the client.
    pub body: Arc<BodyCounter>,
    /// The body was read whole before the upstream phase (request
    /// buffering): it is counted already and goes upstream as it is.
    pub body_buffered: bool,
    pub upstream_time: Option<Duration>,
    pub upstream_addr: Option<String>,
    /// Set on routes with a cache (`crate::cache`): HIT, MISS, ...
    pub cache_status: Option<crate::cache::CacheStatus>,
}

impl RequestContext {
    pub fn new<B>(req: &Request<B>, host: String, client: ClientInfo, start: Instant) -> Self {
        let header_text = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        RequestContext {
            start,
            started_at: SystemTime::now(),
            client,
            method: req.method().clone(),
            host,
            uri: req.uri().path_and_query().map_or_else(
                || req.uri().path().to_string(),
                |pq| pq.as_str().to_string(),
            ),
            version: req.version(),
            user_agent: header_text(http::header::USER_AGENT),
            referer: header_text(http::header::REFERER),
            http_host: String::new(),
            path: String::new(),
            request_headers: Vec::new(),
            route: None,
            chain: None,
            vars: Vec::new(),
            request_header_edits: Vec::new(),
            body: Arc::new(BodyCounter::default()),
            body_buffered: false,
            upstream_time: None,
            upstream_addr: None,
            cache_status: None,
        }
    }

    pub fn route_name(&self) -> &str {
        self.route.as_ref().map_or("", |r| r.name.as_str())
    }

    /// Keep the request fields the chain's log hook reads, as received (the
    /// path as it is now: normalised, unless normalising refused it).
    pub fn keep_logged_fields<B>(&mut self, req: &Request<B>) {
        if let Some(chain) = &self.chain {
            self.request_headers = filtered_list(req.headers(), chain.log_fields().0);
            if chain.log_reads_http_host() {
                self.http_host = http_host(req, &self.host);
            }
            if chain.log_reads_path() {
                self.path = req.uri().path().to_owned();
            }
        }
    }

    /// The head the request hooks (and the upstream phase) see; also keeps
    /// the request fields the route's log hook reads, as received. Its
    /// header fields are listed only `with_headers` (a hook or the cache key
    /// reads them; the upstream phase forwards the received map, so a
    /// plugin-free route does not copy every field into strings).
    pub fn request_head<B>(&mut self, req: &Request<B>, with_headers: bool) -> RequestHead {
        self.keep_logged_fields(req);
        RequestHead {
            method: tailgate_runtime::Method::from(&self.method),
            scheme: Scheme::from_text(&self.client.scheme),
            host: Some(self.host.clone()),
            path: Some(req.uri().path().to_string()),
            query: req.uri().query().map(str::to_string),
            headers: with_headers.then(|| plugin_headers(req)),
            client_ip: self.client.client_ip.into(),
            route: Some(self.route_name().to_string()),
            request_id: Some(self.client.request_id.clone()),
        }
    }

    /// `received` with the request hooks' header edits applied: the fields
    /// `head.headers` lists, as a map to forward (no list round trip).
    pub fn edited_headers(&self, mut received: HeaderMap) -> HeaderMap {
        crate::plugin_chain::apply_to_map(&mut received, &self.request_header_edits);
        received
    }
}

/// nginx's `$http_host`: the Host header as sent, or the request's
/// authority (HTTP/2 has no Host header); the routed host when the request
/// named neither (HTTP/1.0).
fn http_host<B>(req: &Request<B>, routed: &str) -> String {
    if let Some(value) = req.headers().get(http::header::HOST) {
        return String::from_utf8_lossy(value.as_bytes()).into_owned();
    }
    req.uri()
        .authority()
        .map_or_else(|| routed.to_owned(), |a| a.as_str().to_owned())
}

/// The request's header fields as plugins see them. HTTP/2 names the host
/// in `:authority`, not in a Host field: plugins get it as `host`, first,
/// as nginx hands it to `$http_host`, so a `{http_host}` redirect keeps the
/// port over HTTP/2 too.
fn plugin_headers<B>(req: &Request<B>) -> Vec<Header> {
    let authority = req
        .uri()
        .authority()
        .filter(|_| !req.headers().contains_key(http::header::HOST));
    let Some(authority) = authority else {
        return headers_to_list(req.headers());
    };
    let mut list = Vec::with_capacity(req.headers().len() + 1);
    list.push(Header {
        name: "host".to_owned(),
        value: authority.as_str().as_bytes().to_vec(),
    });
    list.extend(headers_to_list(req.headers()));
    list
}

/// "HTTP/1.1" etc., as in logs.
pub fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

/// A `HeaderMap` as the WIT list (names lower case, values as bytes).
pub fn headers_to_list(headers: &HeaderMap) -> Vec<Header> {
    filtered_list(headers, &HeaderFilter::All)
}

/// The fields of `headers` that `filter` lets through, as the WIT list
/// (only those are copied).
pub fn filtered_list(headers: &HeaderMap, filter: &HeaderFilter) -> Vec<Header> {
    if matches!(filter, HeaderFilter::Only(names) if names.is_empty()) {
        return Vec::new();
    }
    headers
        .iter()
        .filter(|(name, _)| filter.lets_through(name.as_str()))
        .map(|(name, value)| Header {
            name: name.as_str().to_string(),
            value: value.as_bytes().to_vec(),
        })
        .collect()
}

/// The WIT list back as a `HeaderMap`, order of repeated fields kept. Fields
/// that are not valid HTTP are dropped (plugin output is checked before it
/// gets here; this is the last guard).
pub fn list_to_headers(list: &[Header]) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(list.len());
    for header in list {
        match (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(&header.value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(header = %header.name, "dropping an invalid header field"),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_round_trip_with_repeats_and_bytes() {
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        map.append(
            "x-b",
            HeaderValue::from_bytes(&[b'c', 0xe9]).expect("obs-text"),
        );
        let list = headers_to_list(&map);
        assert_eq!(list.len(), 3);
        assert_eq!(list[2].value, vec![b'c', 0xe9]);
        assert_eq!(list_to_headers(&list), map);
    }

    #[test]
    fn filtered_lists_copy_only_the_named_fields() {
        let mut map = HeaderMap::new();
        map.append("host", HeaderValue::from_static("a"));
        map.append("cookie", HeaderValue::from_static("1"));
        map.append("cookie", HeaderValue::from_static("2"));
        map.append("accept", HeaderValue::from_static("*/*"));
        let names =
            |list: Vec<Header>| -> Vec<String> { list.into_iter().map(|h| h.name).collect() };
        assert_eq!(names(filtered_list(&map, &HeaderFilter::All)).len(), 4);
        assert!(filtered_list(&map, &HeaderFilter::Only(vec![])).is_empty());
        assert_eq!(
            names(filtered_list(
                &map,
                &HeaderFilter::Only(vec!["cookie".into()])
            )),
            ["cookie", "cookie"]
        );
    }

    #[test]
    fn plugins_see_an_http2_authority_as_the_host_field() {
        let h2 = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://app.test:8443/x")
            .header("accept", "*/*")
            .body(())
            .expect("request");
        let list = plugin_headers(&h2);
        let fields: Vec<(&str, &[u8])> = list
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
            .collect();
        assert_eq!(
            fields,
            [("host", &b"app.test:8443"[..]), ("accept", &b"*/*"[..])]
        );
        // A Host field as sent is left alone, and no second one is made.
        let h1 = Request::builder()
            .uri("http://ignored.test/x")
            .header("host", "app.test:8080")
            .body(())
            .expect("request");
        let list = plugin_headers(&h1);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].value, b"app.test:8080");
    }

    #[test]
    fn invalid_fields_are_dropped() {
        let list = vec![
            Header {
                name: "bad name".into(),
                value: b"x".to_vec(),
            },
            Header {
                name: "ok".into(),
                value: b"a\r\nb".to_vec(),
            },
            Header {
                name: "fine".into(),
                value: b"y".to_vec(),
            },
        ];
        let map = list_to_headers(&list);
        assert_eq!(map.len(), 1);
        assert_eq!(map["fine"], "y");
    }
}
