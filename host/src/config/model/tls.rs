//! The validated `[tls]` section: TLS listeners (termination in Tailgate
//! itself, when no edge in front does it), their certificate files and
//! whether connections open with a PROXY protocol v2 header. Built by
//! `config::tls` at load; read by `crate::tls` and the server at startup.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    /// Certificate chains with their keys; the one served is chosen by SNI
    /// among the names of each certificate; the first one answers clients
    /// that send no (or an unknown) name.
    pub certificates: Vec<CertificatePair>,
    /// Connections open with a PROXY protocol v2 header (Fly's raw TCP
    /// pass-through with `proxy_proto`), read before the TLS handshake.
    pub proxy_protocol: bool,
    /// Reload the certificate files when they change.
    pub watch: bool,
}

/// A PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePair {
    pub cert: PathBuf,
    pub key: PathBuf,
}
