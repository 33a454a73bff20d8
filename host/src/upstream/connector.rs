//! The upstream connector: the only place Tailgate opens connections to
//! upstreams, for the keep-alive pool of the pipeline's upstream phase. It
//! is asked for one of its upstream's configured addresses by index (there
//! is no way to ask it for any other), and dials it only if the
//! `[tailnet] allow` list admits it — so no route, plugin rewrite, Host
//! header or redirect can point a connection anywhere else. Then, in order:
//! TCP through the tailnet dialer (system resolver with a DNS cache, or the
//! SOCKS5 server) within `connect_timeout`, the optional tailnet identity
//! check, and for `https` the TLS handshake (SNI = the upstream's host name)
//! within its own `tls_handshake_timeout`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::dns::DnsCache;
use super::socks5::{self, Socks5Error};
use super::whois::{IdentityError, Peer, PeerIdentityCheck};
use crate::config::model::tailnet::{allowlist_permits, AllowedTarget, DialMode};
use crate::config::model::{Endpoint, TailnetConfig};

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("the upstream has no address {index}")]
    NoAddress { index: usize },
    #[error("refusing to dial {target}: not in [tailnet] allow")]
    NotAllowed { target: String },
    #[error("resolving {target}: {source}")]
    Resolve { target: String, source: io::Error },
    #[error("connecting to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("connecting to {target}: timed out after {after:?}")]
    ConnectTimeout { target: String, after: Duration },
    #[error("connecting to {target} {source}")]
    Socks5 { target: String, source: Socks5Error },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("TLS handshake with {target}: {source}")]
    TlsHandshake { target: String, source: io::Error },
    #[error("TLS handshake with {target}: timed out after {after:?}")]
    TlsTimeout { target: String, after: Duration },
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(hyper::Error),
    #[error("{host:?} is not a valid TLS server name")]
    ServerName { host: String },
}

/// How upstream connections reach the tailnet, with the allowlist and the
/// identity check. One per active config, shared by its upstreams.
#[derive(Debug, Clone)]
pub struct TailnetDialer {
    mode: DialerMode,
    allow: Option<Arc<[AllowedTarget]>>,
    identity: Option<Arc<PeerIdentityCheck>>,
}

#[derive(Debug, Clone)]
enum DialerMode {
    System(DnsCache),
    Socks5(SocketAddr),
}

impl TailnetDialer {
    pub fn new(tailnet: &TailnetConfig) -> Self {
        TailnetDialer {
            mode: match tailnet.dial {
                DialMode::System => DialerMode::System(DnsCache::system(tailnet.dns_ttl)),
                DialMode::Socks5(proxy) => DialerMode::Socks5(proxy),
            },
            allow: tailnet.allow.as_deref().map(Arc::from),
            identity: tailnet
                .identity
                .clone()
                .map(|check| Arc::new(PeerIdentityCheck::new(check))),
        }
    }

    /// TCP to `endpoint` within `timeout`, then the identity check.
    /// Returns the stream and the address reached (`host:port` through SOCKS5).
    pub async fn dial(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<(TcpStream, String), DialError> {
        let target = format!("{}:{}", endpoint.host, endpoint.port);
        // Checked here too (not only at config load): nothing dials outside the list.
        if !allowlist_permits(self.allow.as_deref(), &endpoint.host, endpoint.port) {
            return Err(DialError::NotAllowed { target });
        }
        let host = endpoint.host.trim_start_matches('[').trim_end_matches(']');
        let deadline = Instant::now() + timeout;
        let timed_out = || DialError::ConnectTimeout {
            target: target.clone(),
            after: timeout,
        };
        let (stream, peer, reached) = match &self.mode {
            DialerMode::System(dns) => {
                let addrs =
                    tokio::time::timeout_at(deadline.into(), dns.resolve(host, endpoint.port))
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(|source| DialError::Resolve {
                            target: target.clone(),
                            source,
                        })?;
                let stream = connect_first(&addrs, deadline).await.map_err(|e| match e {
                    None => timed_out(),
                    Some(source) => DialError::Connect {
                        target: target.clone(),
                        source,
                    },
                })?;
                let peer = stream.peer_addr().map_err(|source| DialError::Connect {
                    target: target.clone(),
                    source,
                })?;
                (stream, Peer::Addr(peer), peer.to_string())
            }
            DialerMode::Socks5(proxy) => {
                let stream = tokio::time::timeout_at(
                    deadline.into(),
                    socks5::connect(*proxy, host, endpoint.port),
                )
                .await
                .map_err(|_| timed_out())?
                .map_err(|source| DialError::Socks5 {
                    target: target.clone(),
                    source,
                })?;
                (
                    stream,
                    Peer::Name(host.to_ascii_lowercase()),
                    target.clone(),
                )
            }
        };
        if let Some(identity) = &self.identity {
            identity.verify(peer).await?;
        }
        Ok((stream, reached))
    }
}

/// The first of `addrs` that accepts before `deadline`. `Err(None)` is the
/// deadline; otherwise the last connect error.
async fn connect_first(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<TcpStream, Option<io::Error>> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline.into(), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => return Err(None),
        }
    }
    Err(Some(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "no address to connect to")
    })))
}

/// The dialer of one upstream: connects to one of its configured addresses
/// (by index), within the allowlist and the deadlines.
#[derive(Clone)]
pub struct UpstreamConnector {
    endpoints: Arc<[Endpoint]>,
    dialer: TailnetDialer,
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    tls_handshake_timeout: Duration,
}

impl UpstreamConnector {
    /// `tls`: the client config for an `https` upstream, `None` for `http`.
    pub fn new(
        endpoints: &[Endpoint],
        dialer: TailnetDialer,
        tls: Option<TlsConnector>,
        connect_timeout: Duration,
        tls_handshake_timeout: Duration,
    ) -> Self {
        UpstreamConnector {
            endpoints: endpoints.into(),
            dialer,
            tls,
            connect_timeout,
            tls_handshake_timeout,
        }
    }

    /// Dial address `address` of the upstream. Returns the connection and
    /// the address reached (`IP:PORT`, or `host:port` through SOCKS5).
    pub async fn connect(
        &self,
        address: usize,
    ) -> Result<(UpstreamConnection, Arc<str>), DialError> {
        let endpoint = self
            .endpoints
            .get(address)
            .ok_or_else(|| DialError::NoAddress { index: address })?;
        let (stream, reached) = self.dialer.dial(endpoint, self.connect_timeout).await?;
        let peer = Arc::from(reached);
        let Some(tls) = &self.tls else {
            return Ok((UpstreamConnection::Plain(TokioIo::new(stream)), peer));
        };
        let host = endpoint.host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|_| DialError::ServerName {
            host: host.to_owned(),
        })?;
        let target = format!("{}:{}", endpoint.host, endpoint.port);
        let tls = tokio::time::timeout(self.tls_handshake_timeout, tls.connect(name, stream))
            .await
            .map_err(|_| DialError::TlsTimeout {
                target: target.clone(),
                after: self.tls_handshake_timeout,
            })?
            .map_err(|source| DialError::TlsHandshake { target, source })?;
        Ok((UpstreamConnection::Tls(Box::new(TokioIo::new(tls))), peer))
    }
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("endpoints", &self.endpoints)
            .field("dialer", &self.dialer)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A connection to an upstream, plain or TLS.
#[derive(Debug)]
pub enum UpstreamConnection {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Read for UpstreamConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConnection::Plain(io) => Pin::new(io).poll_read(cx, buf),
            UpstreamConnection::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for UpstreamConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamConnection::Plain(io) => Pin::new(io).poll_write(cx, buf),
            UpstreamConnection::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConnection::Plain(io) => Pin::new(io).poll_flush(cx),
            UpstreamConnection::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConnection::Plain(io) => Pin::new(io).poll_shutdown(cx),
            UpstreamConnection::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}
