//! Certificate selection by SNI for the TLS listeners: [`SniCertResolver`]
//! picks the certificate whose names cover the name the client asked for
//! (exact names before `*.` wildcards), or the first configured one when the
//! client sent no name or one no certificate covers. The set is swapped as a
//! whole on certificate reload; handshakes in progress keep the one they got.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certificates::LoadedCertificate;

/// The certificates of the TLS listeners, by name.
pub struct CertificateSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    fallback: Arc<CertifiedKey>,
}

impl CertificateSet {
    /// The set of `loaded` (non-empty; the first is the fallback). When two
    /// certificates claim a name, the first listed keeps it.
    pub fn new(loaded: &[LoadedCertificate]) -> Option<Self> {
        let fallback = loaded.first()?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in loaded {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| cert.key.clone());
            }
        }
        Some(CertificateSet {
            exact,
            wildcard,
            fallback,
        })
    }

    /// The certificate for `server_name` (lower case), or the fallback.
    pub fn select(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.fallback.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.fallback)
            .clone()
    }
}

/// rustls' hook into the current [`CertificateSet`].
pub struct SniCertResolver {
    current: ArcSwap<CertificateSet>,
}

impl SniCertResolver {
    pub fn new(set: CertificateSet) -> Self {
        SniCertResolver {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// New handshakes use `set` from now on.
    pub fn replace(&self, set: CertificateSet) {
        self.current.store(Arc::new(set));
    }
}

impl fmt::Debug for SniCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current.load();
        f.debug_struct("SniCertResolver")
            .field("names", &set.exact.keys().collect::<Vec<_>>())
            .field("wildcards", &set.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ResolvesServerCert for SniCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().select(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    fn loaded(names: &[&str]) -> LoadedCertificate {
        let certified = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("certificate");
        let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let key = CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
            .expect("certified key");
        LoadedCertificate {
            key: Arc::new(key),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn exact_names_then_wildcards_then_the_first_certificate() {
        let a = loaded(&["a.test"]);
        let b = loaded(&["b.test", "*.b.test"]);
        let c = loaded(&["x.b.test"]);
        let set = CertificateSet::new(&[a.clone(), b.clone(), c.clone()]).expect("set");
        let is = |got: Arc<CertifiedKey>, want: &LoadedCertificate| Arc::ptr_eq(&got, &want.key);
        assert!(is(set.select(Some("a.test")), &a));
        assert!(is(set.select(Some("B.TEST.")), &b));
        assert!(is(set.select(Some("y.b.test")), &b));
        assert!(is(set.select(Some("x.b.test")), &c));
        assert!(
            is(set.select(Some("deep.y.b.test")), &a),
            "wildcards cover one label"
        );
        assert!(is(set.select(Some("other.test")), &a));
        assert!(is(set.select(None), &a));
        assert!(CertificateSet::new(&[]).is_none());
    }
}
