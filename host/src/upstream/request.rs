//! How the proxy's requests to an HTTP(S) upstream are built, for the
//! pipeline's upstream phase (phase 4) and its cache phase: the upstream URI
//! for the (possibly rewritten) path, the header fields with hop-by-hop
//! fields stripped, the forwarding headers and `Host` set
//! ([`upstream_request_head`]); and [`Origin`], the request the cache phase
//! sends to fill or refresh an entry: always a bodyless GET (a HEAD is
//! converted, nginx `proxy_cache_convert_head`), with the route's
//! forwarding headers, and without the client's own conditional and range
//! fields, so the answer is the whole response the cache can store (the
//! cache answers the client's conditionals itself). Owned, so a background
//! refresh can send it after the client is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use tailgate_runtime::RequestHead;

use super::keepalive::UpstreamBody;
use super::{HttpUpstreamClient, UpstreamResponse};
use crate::body::{empty_body, BodyCounter};
use crate::config::model::HostHeader;
use crate::error::ProxyError;
use crate::forwarding::{strip_hop_by_hop, ClientInfo};

/// The upstream URI and request header fields for `head`: hop-by-hop fields
/// stripped (the upgrade handshake kept), forwarding headers and `Host` set
/// per the upstream's `host_header` (`client_host` is the client's own).
/// `fields` are the request's header fields as the request hooks left them;
/// `client_info` says who the client is (the forwarding headers).
pub fn upstream_request_head(
    client: &HttpUpstreamClient,
    client_info: &ClientInfo,
    head: &RequestHead,
    fields: http::HeaderMap,
    client_host: Option<HeaderValue>,
    upgrade: Option<&HeaderValue>,
) -> Result<(http::Uri, http::HeaderMap), ProxyError> {
    let uri = upstream_uri(client, head)?;
    let headers = upstream_request_fields(client, client_info, fields, client_host, upgrade);
    Ok((uri, headers))
}

/// The upstream URI for `head`'s path and query.
pub fn upstream_uri(
    client: &HttpUpstreamClient,
    head: &RequestHead,
) -> Result<http::Uri, ProxyError> {
    client
        .uri_for(head.path(), head.query.as_deref())
        .map_err(|e| ProxyError::Internal(format!("upstream target for {:?}: {e}", head.path)))
}

/// The header fields of [`upstream_request_head`].
pub fn upstream_request_fields(
    client: &HttpUpstreamClient,
    client_info: &ClientInfo,
    fields: http::HeaderMap,
    client_host: Option<HeaderValue>,
    upgrade: Option<&HeaderValue>,
) -> http::HeaderMap {
    let mut headers = fields;
    strip_hop_by_hop(&mut headers, upgrade);
    client_info.apply_forwarding_headers(&mut headers);
    let host = match client.config().host_header {
        HostHeader::Client => client_host,
        HostHeader::Upstream => HeaderValue::from_str(client.authority().as_str()).ok(),
        HostHeader::Set(ref host) => Some(host.clone()),
    };
    match host {
        Some(host) => headers.insert(header::HOST, host),
        None => headers.remove(header::HOST),
    };
    headers
}

/// The client's `Host` as received (`:authority` for HTTP/2).
pub fn client_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    }
}

// === the cache's fill request ===

/// Request fields dropped before filling the cache.
const CLIENT_CONDITIONALS: [header::HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

/// The upstream request for one cache key.
pub struct Origin {
    client: Arc<HttpUpstreamClient>,
    uri: Uri,
    headers: HeaderMap,
}

/// An upstream answer, and how it was got.
pub struct Fetched {
    pub response: Response<UpstreamBody>,
    /// `IP:PORT` (or `host:port` through SOCKS5) of the connection used.
    pub peer: Option<String>,
    pub took: Duration,
}

impl Origin {
    /// The request to `uri` ([`upstream_uri`]) with the client's request
    /// `fields` as the hooks left them. Built only when the cache goes
    /// upstream: a hit needs none of it.
    pub fn new(
        client: &Arc<HttpUpstreamClient>,
        client_info: &ClientInfo,
        uri: Uri,
        fields: HeaderMap,
        client_host: Option<HeaderValue>,
    ) -> Self {
        let mut headers = upstream_request_fields(client, client_info, fields, client_host, None);
        for name in CLIENT_CONDITIONALS {
            headers.remove(name);
        }
        Origin {
            client: client.clone(),
            uri,
            headers,
        }
    }

    /// `host:port` of the upstream, for the log when no peer is known.
    pub fn address(&self) -> String {
        format!(
            "{}:{}",
            self.client.config().host,
            self.client.config().port
        )
    }

    /// Send the GET, with `conditions` (revalidation) added.
    pub async fn fetch(&self, conditions: Option<&HeaderMap>) -> Result<Fetched, ProxyError> {
        let mut headers = self.headers.clone();
        if let Some(conditions) = conditions {
            for (name, value) in conditions {
                headers.insert(name, value.clone());
            }
        }
        let mut req = Request::new(empty_body());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        let sent = Instant::now();
        let result = self.client.send(req, &BodyCounter::default()).await;
        let took = sent.elapsed();
        metrics::histogram!("tailgate_upstream_response_seconds", "upstream" => self.client.name().0.clone())
            .record(took.as_secs_f64());
        result.map(|UpstreamResponse { response, peer }| Fetched {
            response,
            peer,
            took,
        })
    }
}
