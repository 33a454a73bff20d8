//! The request the cache sends upstream to fill or refresh an entry: always
//! a bodyless GET (a HEAD is converted, nginx `proxy_cache_convert_head`),
//! with the route's forwarding headers, and without the client's own
//! conditional and range fields, so the answer is the whole response the
//! cache can store (the cache answers the client's conditionals itself).
//! Owned, so a background refresh can send it after the client is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};

use crate::body::{empty_body, BodyCounter};
use crate::error::ProxyError;
use crate::pipeline::context::RequestContext;
use crate::pipeline::upstream_phase::upstream_request_fields;
use crate::upstream::keepalive::UpstreamBody;
use crate::upstream::{HttpUpstreamClient, UpstreamResponse};

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
    /// The request to `uri` (`upstream_uri`) with the client's request
    /// `fields` as the hooks left them. Built only when the cache goes
    /// upstream: a hit needs none of it.
    pub fn new(
        client: &Arc<HttpUpstreamClient>,
        ctx: &RequestContext,
        uri: Uri,
        fields: http::HeaderMap,
        client_host: Option<HeaderValue>,
    ) -> Self {
        let mut headers = upstream_request_fields(client, ctx, fields, client_host, None);
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
