//! One HTTP(S) upstream: a keep-alive connection pool (hyper-util's client
//! over the [`UpstreamConnector`]) and the send step of the pipeline's
//! upstream phase, with its deadlines: `connect_timeout` (TCP) and
//! `tls_handshake_timeout` (a miss of either is 502) and `response_timeout`,
//! counted from the moment a connection is in hand until the response head
//! arrives (a miss is 504). An upstream with several addresses tries them in
//! the order its [`UpstreamHealth`] gives; a request that can be replayed
//! (idempotent, no body) moves on to the next address when one fails.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_rustls::TlsConnector;

use super::connector::{DialError, DialedPeer, TailnetDialer, UpstreamConnector};
use super::health::UpstreamHealth;
use super::tls;
use crate::config::model::{HostHeader, HttpUpstream, UpstreamName};
use crate::error::ProxyError;
use crate::pipeline::body::{empty_body, BodyCounter, BoxError, ProxyBody};

/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The pool and settings of one HTTP(S) upstream.
#[derive(Debug, Clone)]
pub struct HttpUpstreamClient {
    name: UpstreamName,
    config: HttpUpstream,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without a trailing slash ("" for "/").
    path_prefix: String,
    client: Client<UpstreamConnector, ProxyBody>,
    health: Arc<UpstreamHealth>,
}

/// A response head from the upstream, and where it came from.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub response: Response<Incoming>,
    /// The address of the connection used (`IP:PORT`, or `host:port`
    /// through SOCKS5, where only the proxy knows the address), when known.
    pub peer: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream {upstream}: TLS setup: {reason}")]
    Tls { upstream: String, reason: String },
    #[error("upstream {upstream}: URL {url} has no host")]
    NoHost { upstream: String, url: String },
}

/// The parts of a bodiless idempotent request, to send it again elsewhere.
struct Replay {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl HttpUpstreamClient {
    pub fn new(
        name: &UpstreamName,
        config: &HttpUpstream,
        dialer: &TailnetDialer,
    ) -> Result<Self, UpstreamSetupError> {
        let tls =
            tls::client_config(config.tls_verify, config.ca_file.as_deref()).map_err(|reason| {
                UpstreamSetupError::Tls {
                    upstream: name.0.clone(),
                    reason,
                }
            })?;
        let connector = UpstreamConnector::new(
            name.as_str(),
            &config.endpoints,
            dialer.clone(),
            TlsConnector::from(Arc::new(tls)),
            config.connect_timeout,
            config.tls_handshake_timeout,
        );
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);

        let authority =
            config
                .url
                .authority()
                .cloned()
                .ok_or_else(|| UpstreamSetupError::NoHost {
                    upstream: name.0.clone(),
                    url: config.url.to_string(),
                })?;
        let scheme = if config.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let path_prefix = config.url.path().trim_end_matches('/').to_string();
        Ok(HttpUpstreamClient {
            name: name.clone(),
            health: Arc::new(UpstreamHealth::new(
                name.as_str(),
                &config.health,
                &config.endpoints,
            )),
            config: config.clone(),
            scheme,
            authority,
            path_prefix,
            client,
        })
    }

    pub fn name(&self) -> &UpstreamName {
        &self.name
    }

    pub fn config(&self) -> &HttpUpstream {
        &self.config
    }

    /// `host[:port]` as written in the upstream URL (its `Host` header).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn health(&self) -> &UpstreamHealth {
        &self.health
    }

    /// The upstream URI for a request path (and query): the URL's path is
    /// prefixed. `path` must start with '/'.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        self.uri_at(&self.authority, path, query)
    }

    fn uri_at(
        &self,
        authority: &Authority,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, http::Error> {
        let mut target = String::with_capacity(self.path_prefix.len() + path.len() + 16);
        target.push_str(&self.path_prefix);
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        let path_and_query = PathAndQuery::try_from(target)?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// Send a request (its URI from [`Self::uri_for`]) and wait for the
    /// response head under the upstream's deadlines. While the request body
    /// is still streaming, each `response_timeout` window in which `body`
    /// advanced extends the wait (a slow upload is not a silent upstream).
    /// With several addresses, a failed attempt of a replayable request
    /// moves on to the next one.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        body: &BodyCounter,
    ) -> Result<UpstreamResponse, ProxyError> {
        let order = self.health.order();
        let replay = replayable(&req).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        });
        let mut first = Some(req);
        for (attempt, &i) in order.iter().enumerate() {
            let request = match (first.take(), &replay) {
                (Some(request), _) => request,
                (None, Some(parts)) => {
                    let mut request = Request::new(empty_body());
                    *request.method_mut() = parts.method.clone();
                    *request.uri_mut() = parts.uri.clone();
                    *request.headers_mut() = parts.headers.clone();
                    request
                }
                (None, None) => break,
            };
            let request = self.aim(request, i)?;
            match self.send_once(request, body).await {
                Ok(answer) => {
                    self.health.success(i);
                    return Ok(answer);
                }
                Err(err) => {
                    self.health.failure(i, &err);
                    let next = order.get(attempt + 1);
                    let retry = replay.is_some()
                        && matches!(
                            err,
                            ProxyError::UpstreamConnect { .. }
                                | ProxyError::UpstreamExchange { .. }
                        );
                    match next {
                        Some(&n) if retry => tracing::warn!(
                            upstream = self.name.as_str(),
                            "{err}; trying the next address, {}",
                            self.config.endpoints[n].authority
                        ),
                        _ => return Err(err),
                    }
                }
            }
        }
        Err(ProxyError::Internal(format!(
            "upstream {} has no address to try",
            self.name
        )))
    }

    /// Point `req` at address `i`: its authority, and its Host when the
    /// upstream sends its own name.
    fn aim(&self, mut req: Request<ProxyBody>, i: usize) -> Result<Request<ProxyBody>, ProxyError> {
        let Some(endpoint) = self.config.endpoints.get(i).filter(|_| i > 0) else {
            return Ok(req);
        };
        let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(endpoint.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| ProxyError::Internal(format!("upstream target: {e}")))?;
        *req.uri_mut() = uri;
        if self.config.host_header == HostHeader::Upstream {
            if let Ok(host) = HeaderValue::from_str(endpoint.authority.as_str()) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        Ok(req)
    }

    async fn send_once(
        &self,
        mut req: Request<ProxyBody>,
        body: &BodyCounter,
    ) -> Result<UpstreamResponse, ProxyError> {
        let mut connection = capture_connection(&mut req);
        let response = self.client.request(req);
        tokio::pin!(response);

        // Phase 1: a connection (pooled, or new within its deadlines).
        let early = tokio::select! {
            result = &mut response => Some(result),
            _ = connection.wait_for_connection_metadata() => None,
        };
        // Phase 2: the response head within response_timeout.
        let result = match early {
            Some(result) => result,
            None => {
                let mut seen = body.bytes();
                loop {
                    match tokio::time::timeout(self.config.response_timeout, &mut response).await {
                        Ok(result) => break result,
                        Err(_) if body.bytes() != seen => seen = body.bytes(),
                        Err(_) => {
                            return Err(ProxyError::UpstreamTimeout {
                                upstream: self.name.0.clone(),
                                after: self.config.response_timeout,
                            })
                        }
                    }
                }
            }
        };
        match result {
            Ok(response) => {
                // The client puts the connection's extras on the response.
                let peer = response
                    .extensions()
                    .get::<DialedPeer>()
                    .map(|p| p.0.clone());
                Ok(UpstreamResponse { response, peer })
            }
            Err(e) if e.is_connect() => {
                let source = connect_failure(&e);
                if let Some(DialError::Identity(_)) = find_dial_error(&e) {
                    metrics::counter!(
                        "tailgate_upstream_identity_refused_total",
                        "upstream" => self.name.0.clone()
                    )
                    .increment(1);
                }
                Err(ProxyError::UpstreamConnect {
                    upstream: self.name.0.clone(),
                    source,
                })
            }
            Err(e) => Err(ProxyError::UpstreamExchange {
                upstream: self.name.0.clone(),
                source: e.into(),
            }),
        }
    }

    /// Probe every address with `GET path` every `interval`, marking each up
    /// or down, until the returned task is aborted.
    pub fn spawn_active_checks(&self) -> Option<tokio::task::JoinHandle<()>> {
        let check = self.config.health.active.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let this = self.clone();
        Some(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(check.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                for (i, endpoint) in this.config.endpoints.iter().enumerate() {
                    let outcome = this
                        .probe(&endpoint.authority, &check.path, check.timeout)
                        .await;
                    match outcome {
                        Ok(()) => this.health.success(i),
                        Err(why) => this.health.failure(i, &format!("health check: {why}")),
                    }
                }
            }
        }))
    }

    async fn probe(
        &self,
        authority: &Authority,
        path: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let uri = self
            .uri_at(authority, path, None)
            .map_err(|e| e.to_string())?;
        let mut req = Request::get(uri)
            .body(empty_body())
            .map_err(|e| e.to_string())?;
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(format!("no answer within {timeout:?}")),
            Ok(Err(e)) => Err(connect_failure(&e).to_string()),
            Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection() => Ok(()),
            Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
        }
    }
}

/// Idempotent (RFC 9110 9.2.2) and without a body: safe to send again.
fn replayable(req: &Request<ProxyBody>) -> bool {
    use http_body::Body as _;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    idempotent
        && req.body().is_end_stream()
        && req
            .extensions()
            .get::<hyper::upgrade::OnUpgrade>()
            .is_none()
        && !req.headers().contains_key(header::UPGRADE)
}

fn find_dial_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a DialError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(dial) = err.downcast_ref::<DialError>() {
            return Some(dial);
        }
        current = err.source();
    }
    None
}

/// Why connecting failed, in words an operator can act on: the connector's
/// own error (it names the target and the cause), else hyper's chain.
fn connect_failure(e: &hyper_util::client::legacy::Error) -> BoxError {
    let message = match find_dial_error(e) {
        Some(dial) => dial.to_string(),
        None => {
            let mut parts = vec![e.to_string()];
            let mut current = std::error::Error::source(e);
            while let Some(err) = current {
                parts.push(err.to_string());
                current = err.source();
            }
            parts.join(": ")
        }
    };
    message.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn upstream(url: &str) -> HttpUpstreamClient {
        upstream_with(url, true)
    }

    fn upstream_with(url: &str, tls_verify: bool) -> HttpUpstreamClient {
        let url: Uri = url.parse().expect("url");
        let tls = url.scheme_str() == Some("https");
        let host = url.host().unwrap_or_default().to_string();
        let port = url.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let config = HttpUpstream {
            endpoints: vec![crate::config::model::Endpoint {
                host: host.clone(),
                port,
                authority: url.authority().cloned().expect("authority"),
            }],
            host,
            port,
            url,
            tls,
            host_header: HostHeader::Upstream,
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(300),
            tls_verify,
            ca_file: None,
            tls_handshake_timeout: Duration::from_millis(500),
            health: crate::config::model::HealthPolicy {
                max_fails: 1,
                fail_timeout: Duration::from_secs(10),
                active: None,
            },
        };
        let dialer = TailnetDialer::new(&crate::config::model::TailnetConfig::default());
        HttpUpstreamClient::new(&UpstreamName("u".into()), &config, &dialer).expect("client")
    }

    #[test]
    fn url_path_is_prefixed() {
        let u = upstream("http://10.0.0.1:8080/base/");
        let uri = u.uri_for("/x/y", Some("a=1")).expect("uri");
        assert_eq!(uri.to_string(), "http://10.0.0.1:8080/base/x/y?a=1");
        let u = upstream("https://docs.example.ts.net");
        let uri = u.uri_for("/", None).expect("uri");
        assert_eq!(uri.to_string(), "https://docs.example.ts.net/");
        assert_eq!(u.authority().as_str(), "docs.example.ts.net");
        assert!(u.uri_for("/bad path", None).is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        // Bind then drop: nothing listens on that port any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind");
        let u = upstream(&format!("http://{addr}"));
        let req = Request::get(u.uri_for("/", None).expect("uri"))
            .body(crate::pipeline::body::empty_body())
            .expect("request");
        let err = u
            .send(req, &BodyCounter::default())
            .await
            .expect_err("refused");
        assert!(matches!(err, ProxyError::UpstreamConnect { .. }), "{err:?}");
        assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn silent_upstream_times_out_after_the_response_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accept and hold the connection without answering.
        let holder = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let u = upstream(&format!("http://{addr}"));
        let req = Request::get(u.uri_for("/", None).expect("uri"))
            .body(crate::pipeline::body::empty_body())
            .expect("request");
        let started = std::time::Instant::now();
        let err = u
            .send(req, &BodyCounter::default())
            .await
            .expect_err("timeout");
        let took = started.elapsed();
        assert!(matches!(err, ProxyError::UpstreamTimeout { .. }), "{err:?}");
        assert_eq!(err.status(), http::StatusCode::GATEWAY_TIMEOUT);
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{took:?}"
        );
        holder.abort();
    }

    /// An HTTPS server on loopback with a self-signed certificate for
    /// "localhost"; answers with the SNI name it was asked for.
    async fn self_signed_https() -> SocketAddr {
        use std::sync::Arc;
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let cert = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                    let service = hyper::service::service_fn(move |_req| {
                        let body = format!("secure sni={sni}");
                        async move {
                            Ok::<_, std::convert::Infallible>(Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn tls_is_verified_unless_the_upstream_opts_out() {
        use http_body_util::BodyExt;
        let addr = self_signed_https().await;
        let url = format!("https://localhost:{}", addr.port());
        let get = |client: &HttpUpstreamClient| {
            Request::get(client.uri_for("/", None).expect("uri"))
                .body(crate::pipeline::body::empty_body())
                .expect("request")
        };

        let verifying = upstream_with(&url, true);
        let err = verifying
            .send(get(&verifying), &BodyCounter::default())
            .await
            .expect_err("a self-signed certificate is refused");
        assert!(matches!(err, ProxyError::UpstreamConnect { .. }), "{err:?}");
        assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);

        let trusting = upstream_with(&url, false);
        let answer = trusting
            .send(get(&trusting), &BodyCounter::default())
            .await
            .expect("tls_verify = false accepts it");
        let peer = answer.peer.clone().expect("peer known");
        assert!(peer.ends_with(&format!(":{}", addr.port())), "{peer}");
        let body = answer
            .response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"secure sni=localhost");
    }
}
