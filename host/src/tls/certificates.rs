//! Certificate files for TLS termination: a PEM chain and its PEM private
//! key become a rustls `CertifiedKey`, with the DNS names the certificate is
//! valid for (its subject alternative names) — the names SNI selects it by.
//! Used at config load (to reject a bad pair early), at listener start-up
//! and on every certificate reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::model::tls::CertificatePair;

/// A certificate pair that cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("certificate {path}: {reason}")]
pub struct CertificateError {
    pub path: PathBuf,
    pub reason: String,
}

/// A loaded pair: what rustls serves, and the names it is for.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names from the certificate, `*.example.com` included as written.
    pub names: Vec<String>,
}

/// Read, parse and check one pair (the key must belong to the certificate).
pub fn load_pair(
    pair: &CertificatePair,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, CertificateError> {
    let bad = |path: &Path, reason: String| CertificateError {
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = std::fs::read(&pair.cert).map_err(|e| bad(&pair.cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&pair.cert, format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(bad(&pair.cert, "no CERTIFICATE in the file".into()));
    };
    let names = dns_names(leaf).map_err(|reason| bad(&pair.cert, reason))?;
    if names.is_empty() {
        return Err(bad(
            &pair.cert,
            "the certificate names no DNS host (subjectAltName)".into(),
        ));
    }
    let key_pem = std::fs::read(&pair.key).map_err(|e| bad(&pair.key, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(&pair.key, format!("not a PEM private key: {e}")))?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        bad(
            &pair.key,
            format!("cannot be used with {}: {e}", pair.cert.display()),
        )
    })?;
    Ok(LoadedCertificate {
        key: Arc::new(key),
        names,
    })
}

fn dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    Ok(cert
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn write_pair(dir: &Path, tag: &str, names: &[&str]) -> CertificatePair {
        let certified = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("certificate");
        let cert = dir.join(format!("{tag}.pem"));
        let key = dir.join(format!("{tag}.key"));
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
        CertificatePair { cert, key }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tailgate-certs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn a_pair_loads_with_its_names() {
        let dir = temp_dir("ok");
        let pair = write_pair(&dir, "a", &["A.example.test", "*.b.example.test"]);
        let loaded = load_pair(&pair, &provider()).expect("loads");
        assert_eq!(loaded.names, vec!["a.example.test", "*.b.example.test"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn mismatched_missing_and_garbled_files_are_named() {
        let dir = temp_dir("bad");
        let a = write_pair(&dir, "a", &["a.test"]);
        let b = write_pair(&dir, "b", &["b.test"]);
        let crossed = CertificatePair {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let err = load_pair(&crossed, &provider()).unwrap_err();
        assert_eq!(err.path, b.key);
        assert!(err.to_string().contains("cannot be used with"), "{err}");

        let missing = CertificatePair {
            cert: dir.join("nope.pem"),
            key: a.key.clone(),
        };
        let err = load_pair(&missing, &provider()).unwrap_err();
        assert_eq!(err.path, dir.join("nope.pem"));

        std::fs::write(dir.join("garbage.pem"), "hello").expect("write");
        let garbled = CertificatePair {
            cert: dir.join("garbage.pem"),
            key: a.key.clone(),
        };
        let err = load_pair(&garbled, &provider()).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
