//! The `[tls]` listeners: bound once at start-up beside the plain ones, each
//! accepted connection going through the TLS handshake (after a PROXY
//! header, if configured) before the same HTTP serving as every listener.
//! They stop accepting when shutdown begins; certificates are reloaded by
//! `crate::tls` while they run.

use tokio::net::TcpListener;

use super::handshake::ConnectionHandshake;
use super::{ConnectionServer, Lifecycle, ServerError};
use crate::config::model::TlsConfig;
use crate::tls::TlsTermination;

/// The running TLS listeners; their certificates stay loaded while alive.
pub struct TlsListeners {
    _termination: TlsTermination,
    accepting: tokio::task::JoinSet<()>,
}

impl TlsListeners {
    /// Load the certificates, bind every `[tls] listen` address and start
    /// accepting. Prints `listening on https://ADDR` to stderr for each.
    pub async fn start(
        config: &TlsConfig,
        server: &ConnectionServer,
        lifecycle: &Lifecycle,
    ) -> Result<Self, ServerError> {
        let termination = TlsTermination::start(config)?;
        let server = server.clone().with_handshake(ConnectionHandshake::tls(
            termination.acceptor.clone(),
            config.proxy_protocol,
        ));
        let mut bound = Vec::with_capacity(config.listen.len());
        for &addr in &config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            bound.push((listener, local));
        }
        let mut accepting = tokio::task::JoinSet::new();
        for (listener, addr) in bound {
            eprintln!("listening on https://{addr}");
            tracing::info!(%addr, "listening (TLS)");
            let shutdown = lifecycle.shutdown_token();
            let server = server.clone();
            accepting.spawn(async move {
                tokio::select! {
                    _ = server.accept_loop(listener) => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
        Ok(TlsListeners {
            _termination: termination,
            accepting,
        })
    }

    /// Stop accepting (open connections are drained with the others).
    pub async fn close(&mut self) {
        self.accepting.shutdown().await;
    }
}
