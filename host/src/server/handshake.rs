//! What happens on a connection between accept and HTTP: the PROXY protocol
//! v2 header when the listener expects one (the client address it carries
//! replaces the socket peer), then the TLS handshake on `[tls]` listeners.
//! Both are bounded in time; a connection failing either is closed, logged
//! at debug level and counted, and the listener keeps serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::connection_table::Registration;
use super::proxy_protocol::read_header;
use super::ConnectionServer;

/// Time for the PROXY header and the TLS handshake together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a listener's connections open.
#[derive(Clone)]
pub struct ConnectionHandshake {
    proxy_protocol: bool,
    tls: Option<TlsAcceptor>,
}

impl ConnectionHandshake {
    /// Plain HTTP, with or without a PROXY header first.
    pub fn plain(proxy_protocol: bool) -> Self {
        ConnectionHandshake {
            proxy_protocol,
            tls: None,
        }
    }

    /// TLS with `acceptor`, with or without a PROXY header first.
    pub fn tls(acceptor: TlsAcceptor, proxy_protocol: bool) -> Self {
        ConnectionHandshake {
            proxy_protocol,
            tls: Some(acceptor),
        }
    }

    /// Connections start with a PROXY protocol v2 header.
    pub fn proxy_protocol(&self) -> bool {
        self.proxy_protocol
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl ConnectionServer {
    /// Run the listener's handshake on an accepted socket, then serve it.
    pub async fn serve_accepted(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        handshake: Arc<ConnectionHandshake>,
        registration: Registration,
    ) {
        let scheme = handshake.scheme();
        if !handshake.proxy_protocol && handshake.tls.is_none() {
            return self.serve(stream, peer, scheme, registration).await;
        }
        let state = registration.state.clone();
        // Boxed: the connection's task keeps no room for the handshake
        // (rustls' state) once it is done.
        let opening = Box::pin(tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let mut stream = stream;
            let mut client = peer;
            if handshake.proxy_protocol {
                let header = read_header(&mut stream).await.map_err(|e| {
                    metrics::counter!("tailgate_proxy_protocol_errors_total").increment(1);
                    e.to_string()
                })?;
                client = header.source.unwrap_or(peer);
            }
            match &handshake.tls {
                None => Ok::<_, String>(Opened::Plain(stream, client)),
                Some(acceptor) => {
                    let tls = acceptor.accept(stream).await.map_err(|e| {
                        metrics::counter!("tailgate_tls_handshake_errors_total").increment(1);
                        format!("TLS handshake: {e}")
                    })?;
                    Ok(Opened::Tls(Box::new(tls), client))
                }
            }
        }));
        // A connection still in its handshake is idle: the table may shed it.
        let opened = tokio::select! {
            opened = opening => opened,
            () = state.shed.wait() => {
                metrics::counter!("tailgate_connections_closed_total", "reason" => "shed")
                    .increment(1);
                return;
            }
        };
        match opened {
            Ok(Ok(Opened::Plain(stream, client))) => {
                self.serve(stream, client, scheme, registration).await
            }
            Ok(Ok(Opened::Tls(stream, client))) => {
                self.serve(stream, client, scheme, registration).await
            }
            Ok(Err(why)) => tracing::debug!(%peer, "connection closed before HTTP: {why}"),
            Err(_) => tracing::debug!(
                %peer,
                "connection closed before HTTP: no handshake within {HANDSHAKE_TIMEOUT:?}"
            ),
        }
    }
}

enum Opened {
    Plain(TcpStream, SocketAddr),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, SocketAddr),
}
