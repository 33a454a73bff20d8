//! TLS termination through the real binary: `[tls]` listeners choose the
//! certificate by SNI among several, negotiate ALPN `h2` or `http/1.1`,
//! speak TLS 1.2 and 1.3, resume sessions, pick up replaced certificate
//! files without dropping open connections, read a PROXY protocol v2 header
//! for the client address, and redirect plain HTTP to HTTPS per route.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tailgate_e2e::base_config;
use tailgate_e2e::client::{get, proxy_v2_header, raw_exchange};
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::test_pki::{cert_der, tls_get, tls_get_on, IssuedCert, TestCa};
use tailgate_e2e::upstream::TestUpstream;
use tokio::io::AsyncWriteExt;

struct Setup {
    _dir: TempDir,
    ca: TestCa,
    a: IssuedCert,
    b: IssuedCert,
    a_files: (std::path::PathBuf, std::path::PathBuf),
    up: TestUpstream,
    tg: Tailgate,
}

/// Two certificates (a.test, *.b.test + b.test) on one TLS listener; routes
/// for both names and a redirecting one to the echo upstream.
fn setup(extra_server: &str, extra_tls: &str) -> Setup {
    let dir = TempDir::new("tls");
    let ca = TestCa::new("Tailgate TLS test CA");
    let a = ca.issue(&["a.test"]);
    let b = ca.issue(&["b.test", "*.b.test"]);
    let a_files = a.write(dir.path(), "a");
    let b_files = b.write(dir.path(), "b");
    let up = TestUpstream::start();
    let config = base_config(extra_server)
        + &format!(
            r#"
[tls]
listen = ["127.0.0.1:0"]
certificates = [
  {{ cert = "{ac}", key = "{ak}" }},
  {{ cert = "{bc}", key = "{bk}" }},
]
{extra_tls}

[upstreams.echo]
url = "{up}"

[[routes]]
name = "sites"
hosts = ["a.test", "b.test", "*.b.test"]
path = "/"
upstream = "echo"

[[routes]]
name = "secure-only"
hosts = ["secure.b.test"]
path = "/"
upstream = "echo"
https_redirect = true
"#,
            ac = a_files.0.display(),
            ak = a_files.1.display(),
            bc = b_files.0.display(),
            bk = b_files.1.display(),
            up = up.url(),
        );
    let tg = Tailgate::start(&config);
    Setup {
        _dir: dir,
        ca,
        a,
        b,
        a_files,
        up,
        tg,
    }
}

fn tls12_only(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    let base = ca.client_config(&["http/1.1"]);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls12")
    .with_root_certificates(base_root_store(ca))
    .with_no_client_auth();
    config.alpn_protocols = base.alpn_protocols.clone();
    Arc::new(config)
}

fn base_root_store(ca: &TestCa) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
                .expect("pem"),
        )
        .expect("root");
    roots
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_alpn_the_protocol() {
    let s = setup("", "");
    let addr = s.tg.https_addr();

    let h2 = tls_get(
        addr,
        s.ca.client_config(&["h2", "http/1.1"]),
        "a.test",
        "/x",
    )
    .await
    .expect("a.test over h2");
    assert_eq!(h2.status, 200, "{}", h2.body);
    assert_eq!(h2.alpn.as_deref(), Some("h2"));
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert_eq!(h2.peer_cert, cert_der(&s.a));
    let echoed: serde_json::Value = serde_json::from_str(&h2.body).expect("json");
    let forwarded_proto = echoed["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|p| p[0] == "x-forwarded-proto"))
        .map(|p| p[1].clone());
    assert_eq!(forwarded_proto, Some(serde_json::json!("https")));

    let h1 = tls_get(addr, s.ca.client_config(&["http/1.1"]), "www.b.test", "/y")
        .await
        .expect("www.b.test over http/1.1");
    assert_eq!(h1.status, 200);
    assert_eq!(h1.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(h1.version, http::Version::HTTP_11);
    assert_eq!(h1.peer_cert, cert_der(&s.b), "the wildcard certificate");

    let exact_b = tls_get(addr, s.ca.client_config(&[]), "b.test", "/z")
        .await
        .expect("b.test without ALPN");
    assert_eq!(exact_b.peer_cert, cert_der(&s.b));
    assert_eq!(exact_b.version, http::Version::HTTP_11);

    let tls12 = tls_get(addr, tls12_only(&s.ca), "a.test", "/old")
        .await
        .expect("TLS 1.2");
    assert_eq!(tls12.status, 200);

    // A name no certificate covers gets the first one, which the client refuses.
    let err = tls_get(addr, s.ca.client_config(&["h2"]), "c.test", "/")
        .await
        .expect_err("no certificate for c.test");
    assert!(err.contains("certificate not valid for name"), "{err}");
    assert!(s.up.requests() >= 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_resume() {
    let s = setup("", "");
    let addr = s.tg.https_addr();
    for versions in [None, Some(())] {
        let config = match versions {
            None => s.ca.client_config(&["http/1.1"]),
            Some(()) => tls12_only(&s.ca),
        };
        let first = tls_get(addr, config.clone(), "a.test", "/1")
            .await
            .expect("first");
        assert!(!first.resumed);
        let second = tls_get(addr, config, "a.test", "/2").await.expect("second");
        assert!(second.resumed, "the second connection resumes the session");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replaced_certificate_files_are_served_without_dropping_connections() {
    let s = setup("", "");
    let addr = s.tg.https_addr();
    // An HTTP/2 connection opened before the change.
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(s.ca.client_config(&["h2"]))
        .connect(
            rustls::pki_types::ServerName::try_from("a.test").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    tokio::spawn(conn);
    let request = |path: &str| {
        http::Request::get(format!("https://a.test{path}"))
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    assert_eq!(
        sender
            .send_request(request("/before"))
            .await
            .expect("sent")
            .status(),
        200
    );

    // Renewal: new files written in place of the old ones.
    let renewed = s.ca.issue(&["a.test", "renewed.a.test"]);
    std::fs::write(&s.a_files.1, &renewed.key_pem).expect("write key");
    std::fs::write(&s.a_files.0, &renewed.cert_pem).expect("write cert");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = tls_get(addr, s.ca.client_config(&["http/1.1"]), "a.test", "/after")
            .await
            .expect("new connection");
        if r.peer_cert == cert_der(&renewed) {
            break;
        }
        assert_eq!(r.peer_cert, cert_der(&s.a), "old or new, nothing else");
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.tg.stderr
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("TLS certificates reloaded")
        })
        .expect("the reload is logged");

    // The connection from before still serves.
    let resp = sender.send_request(request("/still")).await.expect("sent");
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;

    // A broken file keeps the current certificates in service.
    std::fs::write(&s.a_files.0, "not a certificate").expect("write");
    s.tg.stderr
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("TLS certificate reload failed")
        })
        .expect("the failed reload is logged");
    let r = tls_get(addr, s.ca.client_config(&["http/1.1"]), "a.test", "/broken")
        .await
        .expect("still served");
    assert_eq!(r.peer_cert, cert_der(&renewed));
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_v2_gives_the_client_address_on_tls_and_plain_listeners() {
    let s = setup("proxy_protocol = true", "proxy_protocol = true");
    let addr = s.tg.https_addr();
    let client: SocketAddr = "203.0.113.7:51000".parse().expect("addr");

    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&proxy_v2_header(client, addr))
        .await
        .expect("header");
    let r = tls_get_on(tcp, s.ca.client_config(&["h2"]), "a.test", "/tls-proxied")
        .await
        .expect("served after the header");
    assert_eq!(r.status, 200);
    let rec = s.tg.wait_log("request_uri", "/tls-proxied");
    assert_eq!(rec["client_ip"], "203.0.113.7");
    assert_eq!(rec["scheme"], "https");

    // Plain listener.
    let mut raw = proxy_v2_header("198.51.100.4:40000".parse().expect("addr"), s.tg.addr());
    raw.extend_from_slice(
        b"GET /plain-proxied HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    let out = raw_exchange(s.tg.addr(), &raw).await.expect("exchange");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("198.51.100.4"),
        "X-Forwarded-For names the client: {out}"
    );
    let rec = s.tg.wait_log("request_uri", "/plain-proxied");
    assert_eq!(rec["client_ip"], "198.51.100.4");

    // Without the header the connection is closed unanswered; serving goes on.
    let out = raw_exchange(s.tg.addr(), b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("exchange");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    let err = tls_get(addr, s.ca.client_config(&["h2"]), "a.test", "/")
        .await
        .expect_err("no header, no TLS");
    assert!(err.contains("TLS handshake"), "{err}");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&proxy_v2_header(client, addr))
        .await
        .expect("header");
    assert_eq!(
        tls_get_on(tcp, s.ca.client_config(&["h2"]), "a.test", "/again")
            .await
            .expect("served")
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_redirected_to_https_on_routes_that_ask() {
    let s = setup("", "");
    let addr = s.tg.https_addr();
    let r = get(s.tg.addr(), "secure.b.test", "/page?q=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://secure.b.test/page?q=1")
    );
    let rec = s.tg.wait_log("request_uri", "/page?q=1");
    assert_eq!(rec["status"], 301);
    assert_eq!(
        s.up.requests(),
        0,
        "the upstream never saw the plain request"
    );

    // Other routes still serve plain HTTP; over TLS the redirecting route serves.
    assert_eq!(get(s.tg.addr(), "a.test", "/plain").await.status, 200);
    let r = tls_get(addr, s.ca.client_config(&["h2"]), "secure.b.test", "/page")
        .await
        .expect("TLS");
    assert_eq!(r.status, 200, "{}", r.body);
}
