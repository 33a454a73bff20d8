//! How the shared state backend (`[state] backend = "redis"`) reaches
//! Redis: through the same [`TailnetDialer`] as upstreams — the `[tailnet]`
//! mode (system resolver, or the SOCKS5 server of tailscaled's userspace
//! networking), the `allow` list (checked again at each dial) and the
//! identity check — then, for `rediss://`, TLS (web PKI roots, SNI = the
//! url's host). The plugin runtime speaks RESP over the stream.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tailgate_runtime::{RedisDial, RedisDialer, RedisIo};
use tokio_rustls::TlsConnector;

use super::connector::TailnetDialer;
use crate::config::model::{Endpoint, TailnetConfig};

/// The tailnet connector as the runtime's [`RedisDialer`].
pub struct TailnetRedisDialer {
    dialer: TailnetDialer,
    tls: TlsConnector,
}

impl TailnetRedisDialer {
    pub fn new(tailnet: &TailnetConfig) -> Result<Self, String> {
        let mut tls = super::tls::client_config(true, None)?;
        tls.alpn_protocols.clear();
        Ok(TailnetRedisDialer {
            dialer: TailnetDialer::new(tailnet),
            tls: TlsConnector::from(Arc::new(tls)),
        })
    }
}

impl RedisDialer for TailnetRedisDialer {
    fn dial(&self, host: &str, port: u16, tls: bool, timeout: Duration) -> RedisDial {
        let dialer = self.dialer.clone();
        let connector = tls.then(|| self.tls.clone());
        let host = host.to_ascii_lowercase();
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let bracketed = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let authority = format!("{bracketed}:{port}")
                .parse()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
            let endpoint = Endpoint {
                host: bracketed,
                port,
                authority,
            };
            let (stream, _) = dialer
                .dial(&endpoint, timeout)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            let Some(connector) = connector else {
                return Ok(Box::new(stream) as Box<dyn RedisIo>);
            };
            let name = ServerName::try_from(host.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a valid TLS server name"),
                )
            })?;
            let tls = tokio::time::timeout_at(deadline.into(), connector.connect(name, stream))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(Box::new(tls) as Box<dyn RedisIo>)
        })
    }
}
