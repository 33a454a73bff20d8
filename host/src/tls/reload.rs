//! Certificate hot reload for the TLS listeners: watches the folders of the
//! certificate and key files (inotify via `notify`; folders, because renewal
//! tools replace files rather than rewrite them) and, after a change settles,
//! loads every pair again and swaps the new set into the [`SniCertResolver`].
//! Open connections are untouched; a pair that fails to load keeps the old
//! set in service and is logged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use rustls::crypto::CryptoProvider;

use super::certificates::load_pair;
use super::sni::{CertificateSet, SniCertResolver};
use crate::config::model::tls::CertificatePair;

/// Changes closer together than this are loaded once.
const SETTLE: Duration = Duration::from_millis(200);

/// Watches the files while alive; dropping it stops the watching.
pub struct CertificateWatcher {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CertificateWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("watching certificate files in {dir}: {source}")]
pub struct WatchError {
    dir: PathBuf,
    source: notify::Error,
}

impl CertificateWatcher {
    /// Start watching `pairs`; reloads go to `resolver`. Needs a tokio runtime.
    pub fn start(
        pairs: Vec<CertificatePair>,
        resolver: Arc<SniCertResolver>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, WatchError> {
        let files: BTreeSet<PathBuf> = pairs
            .iter()
            .flat_map(|p| [p.cert.clone(), p.key.clone()])
            .collect();
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .map(|f| {
                f.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            })
            .collect();
        let names: BTreeSet<_> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
            .collect();

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                let ours = event
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| names.contains(n)));
                if ours {
                    let _ = tx.send(());
                }
            })
            .map_err(|source| WatchError {
                dir: PathBuf::from("."),
                source,
            })?;
        for dir in &dirs {
            let watched = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            watcher
                .watch(watched, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError {
                    dir: watched.to_path_buf(),
                    source,
                })?;
        }

        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let the writer finish (cert and key are often written apart).
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
                reload(&pairs, &resolver, &provider);
            }
        });
        Ok(CertificateWatcher {
            _watcher: watcher,
            task,
        })
    }
}

/// Load every pair; swap them in only if all load.
fn reload(pairs: &[CertificatePair], resolver: &SniCertResolver, provider: &CryptoProvider) {
    let loaded: Result<Vec<_>, _> = pairs.iter().map(|p| load_pair(p, provider)).collect();
    match loaded.map(|l| CertificateSet::new(&l)) {
        Ok(Some(set)) => {
            resolver.replace(set);
            metrics::counter!("tailgate_tls_certificate_reloads_total", "result" => "ok")
                .increment(1);
            tracing::info!(pairs = pairs.len(), "TLS certificates reloaded");
        }
        Ok(None) => {}
        Err(e) => {
            metrics::counter!("tailgate_tls_certificate_reloads_total", "result" => "error")
                .increment(1);
            tracing::error!(
                "TLS certificate reload failed, still serving the previous certificates: {e}"
            );
        }
    }
}
