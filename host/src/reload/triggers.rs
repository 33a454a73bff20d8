//! What starts a reload besides `POST /reload`: the config file or a plugin
//! file changing on disk (notify; folders are watched, not files, so editors
//! that save by writing a new file and renaming it over the old one work),
//! and `SIGHUP`. Both run beside the server until shutdown.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ReloadTrigger, Reloader};

/// Quiet time after the last change before reloading: an editor's save (or
/// a deploy copying several files) is many events.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("watching the config file for changes: {0}")]
pub struct WatchError(#[from] notify::Error);

/// The `SIGHUP` listener, registered before the listeners are announced (a
/// `SIGHUP` before that would end the process by its default action, or go
/// unseen); [`SighupListener::reload_until`] acts on it once there is a
/// running config.
pub struct SighupListener {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl SighupListener {
    /// Listen for `SIGHUP` from now on.
    pub fn register() -> SighupListener {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let hangup = signal(SignalKind::hangup())
                .map_err(|e| tracing::warn!("cannot listen for SIGHUP, reload by it is off: {e}"))
                .ok();
            SighupListener { hangup }
        }
        #[cfg(not(unix))]
        SighupListener {}
    }

    /// Reload on each `SIGHUP` until `stop` is cancelled.
    pub async fn reload_until(self, reloader: Arc<Reloader>, stop: CancellationToken) {
        #[cfg(unix)]
        {
            let Some(mut hangup) = self.hangup else {
                stop.cancelled().await;
                return;
            };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    got = hangup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP: reloading the config");
                        // The outcome is logged and counted by `reload`.
                        let _ = reloader.reload(ReloadTrigger::Signal).await;
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = reloader;
            stop.cancelled().await;
        }
    }
}

/// The files to watch, as (canonical folder, file name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct WatchSet {
    files: BTreeSet<PathBuf>,
    folders: BTreeSet<PathBuf>,
}

impl WatchSet {
    fn of(files: &[PathBuf]) -> WatchSet {
        let mut set = WatchSet::default();
        for file in files {
            let Some(name) = file.file_name() else {
                continue;
            };
            let folder = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            // A missing folder cannot be watched; a reload reports the
            // missing file anyway.
            let Ok(folder) = std::fs::canonicalize(&folder) else {
                continue;
            };
            set.files.insert(folder.join(name));
            set.folders.insert(folder);
        }
        set
    }

    fn matches(&self, path: &Path) -> bool {
        self.files.contains(path)
    }
}

/// Watch the config file and every plugin file; reload (after [`SETTLE`])
/// when one is written, created, renamed into place or removed. The watch
/// list follows the config: a reload that adds a plugin watches it too.
///
/// Made in two steps so the watch is in place before the listeners are
/// announced: [`FileWatch::start`] watches (events queue from then on), and
/// [`FileWatch::spawn`] acts on them once there is a running config to
/// reload. A save made while start-up is still loading is reloaded then.
pub struct FileWatch {
    watcher: notify::RecommendedWatcher,
    set: WatchSet,
    changes: mpsc::UnboundedReceiver<PathBuf>,
}

impl FileWatch {
    /// Watch the folders of `files` from now on.
    pub fn start(files: &[PathBuf]) -> Result<FileWatch, WatchError> {
        let (tx, changes) = mpsc::unbounded_channel::<PathBuf>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else {
                return;
            };
            if event.kind.is_access() {
                return;
            }
            for path in event.paths {
                let _ = tx.send(path);
            }
        })?;
        let mut watch = FileWatch {
            watcher,
            set: WatchSet::default(),
            changes,
        };
        watch.update(files)?;
        Ok(watch)
    }

    /// Reload on the changes seen (since [`FileWatch::start`]) until `stop`.
    pub fn spawn(
        self,
        reloader: Arc<Reloader>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(reloader, stop))
    }

    /// Watch the folders of `files` (and stop watching folders no longer needed).
    fn update(&mut self, files: &[PathBuf]) -> Result<(), notify::Error> {
        let next = WatchSet::of(files);
        for gone in self.set.folders.difference(&next.folders) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in next.folders.difference(&self.set.folders) {
            self.watcher.watch(new, RecursiveMode::NonRecursive)?;
        }
        self.set = next;
        Ok(())
    }

    async fn run(mut self, reloader: Arc<Reloader>, stop: CancellationToken) {
        loop {
            let path = tokio::select! {
                _ = stop.cancelled() => return,
                path = self.changes.recv() => match path {
                    Some(path) => path,
                    None => return,
                },
            };
            if !self.set.matches(&path) {
                continue;
            }
            // Let the burst of events of one save settle.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(SETTLE) => break,
                    more = self.changes.recv() => if more.is_none() { return },
                }
            }
            // A save that truncates before it writes (`std::fs::write`, many
            // editors) can be seen in between on a loaded machine: the
            // reload finds the file empty and skips it (`ReloadError::
            // EmptyFile`); the write comes with an event of its own.
            tracing::info!(file = %path.display(), "changed on disk: reloading the config");
            if reloader.reload(ReloadTrigger::FileChange).await.is_ok() {
                if let Err(e) = self.update(&reloader.watched_files()) {
                    tracing::warn!("updating the watched files: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_set_holds_canonical_folders_and_file_paths() {
        let dir = std::env::temp_dir().join(format!("tg-watchset-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("plugins")).expect("mkdir");
        let set = WatchSet::of(&[
            dir.join("config.toml"),
            dir.join("plugins/../plugins/a.wasm"),
            PathBuf::from("/nonexistent-folder/x.wasm"),
        ]);
        let canonical = std::fs::canonicalize(&dir).expect("canonical");
        assert!(set.matches(&canonical.join("config.toml")));
        assert!(set.matches(&canonical.join("plugins/a.wasm")));
        assert!(!set.matches(&canonical.join("config.toml.swp")));
        assert_eq!(set.folders.len(), 2, "{set:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
