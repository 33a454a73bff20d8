//! Builds the validated `[tls]` section (TLS listeners, their certificate
//! pairs, PROXY protocol, reload on change) from its raw table. Part of
//! config loading; every certificate pair is loaded and checked here, so a
//! missing file or a key that does not match its certificate stops the start.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::model::tls::{CertificatePair, TlsConfig};
use super::resolve_path;
use super::server::build_listen;
use crate::tls::certificates::load_pair;

/// `[tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub certificates: Spanned<Vec<RawCertificatePair>>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub watch: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificatePair {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

pub(super) fn build_tls(
    src: &Source<'_>,
    base_dir: &Path,
    raw: Option<RawTls>,
) -> Result<Option<TlsConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let listen = build_listen(src, raw.listen)?;
    if raw.certificates.get_ref().is_empty() {
        return Err(src.error(
            raw.certificates.span(),
            None,
            ConfigErrorKind::Invalid {
                key: "certificates",
                reason: "name at least one { cert = \"...\", key = \"...\" } pair".into(),
            },
        ));
    }
    let provider = rustls::crypto::ring::default_provider();
    let mut certificates = Vec::new();
    for entry in raw.certificates.get_ref() {
        for file in [&entry.cert, &entry.key] {
            if file.get_ref().is_empty() {
                return Err(src.error(
                    file.span(),
                    None,
                    ConfigErrorKind::EmptyPath("a certificate file"),
                ));
            }
        }
        let pair = CertificatePair {
            cert: resolve_path(base_dir, entry.cert.get_ref()),
            key: resolve_path(base_dir, entry.key.get_ref()),
        };
        if let Err(e) = load_pair(&pair, &provider) {
            let span = if e.path == pair.key {
                entry.key.span()
            } else {
                entry.cert.span()
            };
            return Err(src.error(
                span,
                None,
                ConfigErrorKind::Certificate {
                    path: e.path,
                    reason: e.reason,
                },
            ));
        }
        certificates.push(pair);
    }
    Ok(Some(TlsConfig {
        listen,
        certificates,
        proxy_protocol: raw.proxy_protocol.is_some_and(Spanned::into_inner),
        watch: raw.watch.is_none_or(Spanned::into_inner),
    }))
}
