//! TLS for the end-to-end tests: a test certificate authority (rcgen) that
//! issues server certificates, an HTTPS upstream on loopback serving one of
//! them (it answers with the SNI name and request it got, as JSON), and a
//! TLS client that talks HTTP/1.1 or HTTP/2 (by ALPN) to Tailgate's TLS
//! listeners and reports what was negotiated.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate authority for tests.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate and key, as PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl IssuedCert {
    /// Write `NAME.pem` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa { cert, key }
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Write the CA certificate to `dir/NAME.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.cert_pem()).expect("write ca");
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .expect("add root");
        roots
    }

    /// A client config trusting this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(self.roots())
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}

fn server_config(cert: &IssuedCert) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    Arc::new(config)
}

/// An HTTPS/1.1 upstream on 127.0.0.1 serving `cert`. Answers every request
/// with JSON: `sni`, `method`, `uri`, `host`. Stops when dropped.
pub struct HttpsUpstream {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpsUpstream {
    pub fn start(cert: &IssuedCert) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((socket, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(socket).await else {
                                return;
                            };
                            let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                                let body = serde_json::json!({
                                    "sni": sni,
                                    "method": req.method().as_str(),
                                    "uri": req.uri().to_string(),
                                    "host": req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or(""),
                                });
                                async move {
                                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                        body.to_string(),
                                    ))))
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tls), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = rx => {}
                }
            });
        });
        HttpsUpstream {
            addr,
            shutdown: Some(tx),
        }
    }
}

impl Drop for HttpsUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// What a TLS request to Tailgate saw.
#[derive(Debug)]
pub struct TlsReply {
    pub status: u16,
    pub version: http::Version,
    pub alpn: Option<String>,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
    pub resumed: bool,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// One GET over TLS to `addr` with SNI `sni` (the Host too), speaking
/// HTTP/2 when ALPN picks `h2`, else HTTP/1.1.
pub async fn tls_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
    path: &str,
) -> Result<TlsReply, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tls_get_on(tcp, config, sni, path).await
}

/// [`tls_get`] on an already connected stream (e.g. after a PROXY header).
pub async fn tls_get_on(
    tcp: tokio::net::TcpStream,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
    path: &str,
) -> Result<TlsReply, String> {
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let peer_cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let io = TokioIo::new(tls);
    let response = if alpn.as_deref() == Some("h2") {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(format!("https://{sni}{path}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", sni)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        sender.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = response.status().as_u16();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(TlsReply {
        status,
        version,
        alpn,
        peer_cert,
        resumed,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The DER of an issued certificate (to compare with [`TlsReply::peer_cert`]).
pub fn cert_der(cert: &IssuedCert) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())
        .expect("pem")
        .to_vec()
}
