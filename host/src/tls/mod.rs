//! TLS termination: the listeners of `[tls]` accept TLS themselves (when no
//! edge in front does). Sits between accept (and the PROXY protocol header,
//! if any) and HTTP in the server: rustls with the ring provider, TLS 1.2
//! and 1.3, ALPN `h2` and `http/1.1`, session resumption (tickets and a
//! session cache), the certificate chosen by SNI ([`sni`]) and reloaded when
//! its files change ([`reload`]).

pub mod certificates;
pub mod reload;
pub mod sni;

use std::sync::Arc;

use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use self::certificates::{load_pair, CertificateError};
use self::reload::{CertificateWatcher, WatchError};
use self::sni::{CertificateSet, SniCertResolver};
use crate::config::model::TlsConfig;

/// Sessions remembered for resumption by session id (TLS 1.2).
const SESSION_CACHE_SIZE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("[tls] has no certificates")]
    NoCertificates,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// The TLS side of the `[tls]` listeners, alive while they serve.
pub struct TlsTermination {
    pub acceptor: TlsAcceptor,
    pub resolver: Arc<SniCertResolver>,
    _watcher: Option<CertificateWatcher>,
}

impl TlsTermination {
    /// Load the certificates and build the acceptor; with `watch`, start
    /// reloading them on change (needs a tokio runtime).
    pub fn start(config: &TlsConfig) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = config
            .certificates
            .iter()
            .map(|pair| load_pair(pair, &provider))
            .collect::<Result<Vec<_>, _>>()?;
        let set = CertificateSet::new(&loaded).ok_or(TlsSetupError::NoCertificates)?;
        let resolver = Arc::new(SniCertResolver::new(set));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        server.ticketer = rustls::crypto::ring::Ticketer::new()?;
        server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let watcher = if config.watch {
            Some(CertificateWatcher::start(
                config.certificates.clone(),
                resolver.clone(),
                provider,
            )?)
        } else {
            None
        };
        Ok(TlsTermination {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            resolver,
            _watcher: watcher,
        })
    }
}
