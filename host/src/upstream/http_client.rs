//! One HTTP(S) upstream: a keep-alive connection pool (hyper-util's client
//! over rustls) and the send step of the pipeline's upstream phase, with its
//! two deadlines: `connect_timeout` (TCP + TLS; a miss is 502) and
//! `response_timeout`, counted from the moment a connection is in hand until
//! the response head arrives (a miss is 504).

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{capture_connection, HttpConnector, HttpInfo};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connector::TimeoutConnector;
use super::tls;
use crate::config::model::{HttpUpstream, UpstreamName};
use crate::error::ProxyError;
use crate::pipeline::body::{BodyCounter, ProxyBody};

/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type Connector = TimeoutConnector<HttpsConnector<HttpConnector>>;

/// The pool and settings of one HTTP(S) upstream.
#[derive(Debug, Clone)]
pub struct HttpUpstreamClient {
    name: UpstreamName,
    config: HttpUpstream,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without a trailing slash ("" for "/").
    path_prefix: String,
    client: Client<Connector, ProxyBody>,
}

/// A response head from the upstream, and where it came from.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub response: Response<Incoming>,
    /// The peer address of the connection used, when known.
    pub peer: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream {upstream}: TLS setup: {source}")]
    Tls {
        upstream: String,
        source: rustls::Error,
    },
    #[error("upstream {upstream}: URL {url} has no host")]
    NoHost { upstream: String, url: String },
}

impl HttpUpstreamClient {
    pub fn new(name: &UpstreamName, config: &HttpUpstream) -> Result<Self, UpstreamSetupError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let tls =
            tls::client_config(config.tls_verify).map_err(|source| UpstreamSetupError::Tls {
                upstream: name.0.clone(),
                source,
            })?;
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let connector = TimeoutConnector::new(https, config.connect_timeout);
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

    /// The upstream URI for a request path (and query): the URL's path is
    /// prefixed. `path` must start with '/'.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
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
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// Send a request (its URI from [`Self::uri_for`]) and wait for the
    /// response head under the upstream's deadlines. While the request body
    /// is still streaming, each `response_timeout` window in which `body`
    /// advanced extends the wait (a slow upload is not a silent upstream).
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
        body: &BodyCounter,
    ) -> Result<UpstreamResponse, ProxyError> {
        let mut connection = capture_connection(&mut req);
        let response = self.client.request(req);
        tokio::pin!(response);

        // Phase 1: a connection (pooled, or new within connect_timeout).
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
        let peer = {
            let metadata = connection.connection_metadata();
            metadata.as_ref().and_then(|connected| {
                let mut extensions = http::Extensions::new();
                connected.get_extras(&mut extensions);
                extensions.get::<HttpInfo>().map(HttpInfo::remote_addr)
            })
        };
        match result {
            Ok(response) => Ok(UpstreamResponse { response, peer }),
            Err(e) if e.is_connect() => Err(ProxyError::UpstreamConnect {
                upstream: self.name.0.clone(),
                source: e.into(),
            }),
            Err(e) => Err(ProxyError::UpstreamExchange {
                upstream: self.name.0.clone(),
                source: e.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::HostHeader;

    fn upstream(url: &str) -> HttpUpstreamClient {
        upstream_with(url, true)
    }

    fn upstream_with(url: &str, tls_verify: bool) -> HttpUpstreamClient {
        let url: Uri = url.parse().expect("url");
        let tls = url.scheme_str() == Some("https");
        let config = HttpUpstream {
            host: url.host().unwrap_or_default().to_string(),
            port: url.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            url,
            tls,
            host_header: HostHeader::Upstream,
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(300),
            tls_verify,
        };
        HttpUpstreamClient::new(&UpstreamName("u".into()), &config).expect("client")
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
        assert_eq!(answer.peer.map(|p| p.port()), Some(addr.port()));
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
