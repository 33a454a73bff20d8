//! Tests of the HTTP(S) upstream client: URLs, deadlines, TLS checks and
//! the keep-alive pool, against servers on loopback.
use super::*;
use std::net::SocketAddr;

/// A bodiless GET of `path` on `client`.
fn get(client: &HttpUpstreamClient, path: &str) -> Request<ProxyBody> {
    Request::get(client.uri_for(path, None).expect("uri"))
        .body(crate::body::empty_body())
        .expect("request")
}

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
    let req = get(&u, "/");
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
    let req = get(&u, "/");
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
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
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
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
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
    let addr = self_signed_https().await;
    let url = format!("https://localhost:{}", addr.port());

    let verifying = upstream_with(&url, true);
    let err = verifying
        .send(get(&verifying, "/"), &BodyCounter::default())
        .await
        .expect_err("a self-signed certificate is refused");
    assert!(matches!(err, ProxyError::UpstreamConnect { .. }), "{err:?}");
    assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);

    let trusting = upstream_with(&url, false);
    let answer = trusting
        .send(get(&trusting, "/"), &BodyCounter::default())
        .await
        .expect("tls_verify = false accepts it");
    let peer = answer.peer.clone().expect("peer known");
    assert!(peer.ends_with(&format!(":{}", addr.port())), "{peer}");
    assert_eq!(text_of(answer).await, "secure sni=localhost");
}

/// A plain HTTP/1.1 server on loopback that counts the connections it
/// accepted and those that have ended. `/big` streams 4 MiB; `/close`
/// answers with `Connection: close`; anything else answers "ok".
struct CountingServer {
    addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    ended: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingServer {
    async fn start() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (counted, finished) = (accepted.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let finished = finished.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: Request<hyper::body::Incoming>| async move {
                            let mut response = match req.uri().path() {
                                "/big" => Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from(vec![b'x'; 4 << 20]),
                                )),
                                _ => Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from_static(b"ok"),
                                )),
                            };
                            if req.uri().path() == "/close" {
                                response
                                    .headers_mut()
                                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        CountingServer {
            addr,
            accepted,
            ended,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn ended(&self) -> usize {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn get_text(client: &HttpUpstreamClient, path: &str) -> String {
    let answer = client
        .send(get(client, path), &BodyCounter::default())
        .await
        .expect("answer");
    text_of(answer).await
}

/// The whole body of `answer`, as text.
async fn text_of(answer: UpstreamResponse) -> String {
    use http_body_util::BodyExt;
    let body = answer
        .response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn requests_in_turn_share_one_kept_alive_connection() {
    let server = CountingServer::start().await;
    let client = upstream(&format!("http://{}", server.addr));
    for _ in 0..5 {
        assert_eq!(get_text(&client, "/").await, "ok");
    }
    assert_eq!(server.accepted(), 1);
    assert_eq!(client.pool.idle_count(0), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    use http_body_util::BodyExt;
    let server = CountingServer::start().await;
    let client = upstream(&format!("http://{}", server.addr));
    let req = get(&client, "/big");
    let answer = client
        .send(req, &BodyCounter::default())
        .await
        .expect("answer");
    let mut body = answer.response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    drop(body);
    assert_eq!(
        client.pool.idle_count(0),
        0,
        "a half-read connection is not kept"
    );

    // The next request gets a connection of its own, and its answer.
    assert_eq!(get_text(&client, "/").await, "ok");
    assert_eq!(server.accepted(), 2);
    for _ in 0..50 {
        if server.ended() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.ended(), 1, "the abandoned connection was closed");
}

#[tokio::test]
async fn a_connection_the_upstream_closes_is_not_reused() {
    let server = CountingServer::start().await;
    let client = upstream(&format!("http://{}", server.addr));
    assert_eq!(get_text(&client, "/close").await, "ok");
    assert_eq!(get_text(&client, "/").await, "ok");
    assert_eq!(get_text(&client, "/").await, "ok");
    assert_eq!(server.accepted(), 2);
}

/// An upstream that answers one request per connection and then closes it
/// without saying so (as one whose keep-alive timeout just ran out).
async fn one_answer_per_connection() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn an_upstream_closing_kept_alive_connections_loses_no_request() {
    let (addr, accepted) = one_answer_per_connection().await;
    let client = upstream(&format!("http://{addr}"));
    for _ in 0..5 {
        assert_eq!(get_text(&client, "/").await, "ok");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let server = CountingServer::start().await;
    let pool = KeepAlivePool::with_idle_timeout(1, Duration::from_millis(200));
    let client = upstream(&format!("http://{}", server.addr));
    let connection = client.connection(0).await.expect("connection");
    pool.put(0, connection);
    assert_eq!(pool.idle_count(0), 1);
    // No request comes: the pool's reaper closes it.
    for _ in 0..100 {
        if server.ended() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.ended(), 1, "the idle connection was closed");
    assert_eq!(pool.idle_count(0), 0);
    assert!(pool.checkout(0).is_none());
}
