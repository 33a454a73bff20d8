//! The ban list's state file, `<state dir>/bans.json`: loaded once when the
//! runtime starts (expired bans dropped, offence records kept), and written
//! back by a background thread within [`COALESCE`] of a change, a burst of
//! changes making one write. Each write is atomic: a temporary file in the
//! same directory, fsync, rename, fsync of the directory; a `kill -9` leaves
//! the old file or the new one. A file that cannot be read or parsed is set
//! aside as `bans.json.broken-<unix seconds>` with a warning, and the list
//! starts empty.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{BanEntry, Bans, Offences};

/// The file's name in the state directory.
pub const BANS_FILE: &str = "bans.json";
/// The format written; a file of another version is set aside.
const VERSION: u32 = 1;
/// How long the writer waits after a change for more before writing.
const COALESCE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("state directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `bans.json`.
#[derive(Debug, Serialize, Deserialize)]
struct BanFile {
    version: u32,
    saved_unix_ms: u64,
    bans: Vec<BanEntry>,
    offences: Vec<OffenceRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OffenceRecord {
    jail: String,
    key: String,
    #[serde(flatten)]
    offences: Offences,
}

/// What a state file held that is still current.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) bans: Vec<BanEntry>,
    pub(crate) offences: Vec<((String, String), Offences)>,
}

/// Creates `dir` and reads its `bans.json`, keeping what is current at
/// `now_ms`. Only a directory that cannot be created is an error.
pub(crate) fn load(dir: &Path, now_ms: u64) -> Result<Loaded, StateFileError> {
    std::fs::create_dir_all(dir).map_err(|source| StateFileError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(BANS_FILE);
    let file = match read(&path) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(Loaded::default()),
        Err(reason) => {
            set_aside(&path, &reason);
            return Ok(Loaded::default());
        }
    };
    let bans: Vec<BanEntry> = file
        .bans
        .into_iter()
        .filter(|ban| !ban.is_expired(now_ms))
        .collect();
    let offences = file
        .offences
        .into_iter()
        .filter(|record| record.offences.forget_unix_ms > now_ms)
        .map(|record| ((record.jail, record.key), record.offences))
        .collect();
    tracing::info!(path = %path.display(), bans = bans.len(), "bans loaded");
    Ok(Loaded { bans, offences })
}

/// The file, `None` if there is none, or why it cannot be used.
fn read(path: &Path) -> Result<Option<BanFile>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading it: {e}")),
    };
    let file: BanFile = serde_json::from_slice(&bytes).map_err(|e| format!("parsing it: {e}"))?;
    if file.version != VERSION {
        return Err(format!(
            "version {} (this tailgate reads version {VERSION})",
            file.version
        ));
    }
    Ok(Some(file))
}

/// Renames a broken state file out of the way, so it is kept for a look
/// and not overwritten.
fn set_aside(path: &Path, reason: &str) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_file_name(format!("{BANS_FILE}.broken-{secs}"));
    match std::fs::rename(path, &aside) {
        Ok(()) => tracing::warn!(
            "ban list {}: {reason}; moved it to {} and starting with no bans",
            path.display(),
            aside.display()
        ),
        Err(e) => tracing::warn!(
            "ban list {}: {reason}; starting with no bans (could not move it aside: {e}; \
             it will be overwritten at the first change)",
            path.display()
        ),
    }
}

/// The list as written.
fn snapshot(bans: &Bans) -> BanFile {
    let saved_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut file = BanFile {
        version: VERSION,
        saved_unix_ms,
        bans: bans.bans().cloned().collect(),
        offences: bans
            .offence_records()
            .map(|((jail, key), offences)| OffenceRecord {
                jail: jail.clone(),
                key: key.clone(),
                offences: *offences,
            })
            .collect(),
    };
    file.bans
        .sort_by(|a, b| (&a.jail, &a.key).cmp(&(&b.jail, &b.key)));
    file.offences
        .sort_by(|a, b| (&a.jail, &a.key).cmp(&(&b.jail, &b.key)));
    file
}

/// Writes `file` to `dir/bans.json` atomically.
fn write_atomically(dir: &Path, file: &BanFile) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let temp = dir.join(format!(".{BANS_FILE}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut out = File::create(&temp)?;
        out.write_all(&json)?;
        out.sync_all()?;
        std::fs::rename(&temp, dir.join(BANS_FILE))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename is durable once the directory is.
    File::open(dir)?.sync_all()
}

/// Changes told to the writer and changes written, for [`BanWriter::flush`].
#[derive(Default)]
struct Progress {
    changes: AtomicU64,
    written: Mutex<u64>,
    advanced: Condvar,
}

/// The background thread that writes `bans.json`. Dropping it writes what
/// is pending and waits for the thread.
pub(crate) struct BanWriter {
    wake: Option<SyncSender<()>>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
}

impl BanWriter {
    pub(crate) fn start(dir: &Path, bans: Arc<RwLock<Bans>>) -> Self {
        // One pending wake-up is enough: the write reads the whole list.
        let (wake, woken) = mpsc::sync_channel(1);
        let progress = Arc::new(Progress::default());
        let dir = dir.to_path_buf();
        let thread = {
            let progress = progress.clone();
            std::thread::Builder::new()
                .name("tailgate-bans".into())
                .spawn(move || write_on_change(&dir, &bans, &woken, &progress))
                .map_err(|e| tracing::warn!("ban list: no writer thread, bans are not saved: {e}"))
                .ok()
        };
        BanWriter {
            wake: Some(wake),
            progress,
            thread,
        }
    }

    /// A change was made: write soon.
    pub(crate) fn notify(&self) {
        self.progress.changes.fetch_add(1, Ordering::SeqCst);
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// Waits until every change told so far is written; false on timeout.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let target = self.progress.changes.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut written = self
            .progress
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while *written < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            written = self
                .progress
                .advanced
                .wait_timeout(written, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Drop for BanWriter {
    fn drop(&mut self) {
        // The thread sees the pending wake-up, writes, then the hang-up.
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_on_change(dir: &Path, bans: &RwLock<Bans>, woken: &Receiver<()>, progress: &Progress) {
    while woken.recv().is_ok() {
        std::thread::sleep(COALESCE);
        while woken.try_recv().is_ok() {}
        let seen = progress.changes.load(Ordering::SeqCst);
        let file = snapshot(&bans.read().unwrap_or_else(|p| p.into_inner()));
        match write_atomically(dir, &file) {
            Ok(()) => {
                let mut written = progress.written.lock().unwrap_or_else(|p| p.into_inner());
                *written = seen.max(*written);
                progress.advanced.notify_all();
            }
            Err(e) => tracing::warn!(
                "ban list: writing {}: {e} (tried again at the next change)",
                dir.join(BANS_FILE).display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BanList, BanRequest};
    use super::*;

    const MINUTE: u64 = 60_000;

    #[test]
    fn bans_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let list = BanList::open(dir.path(), 100, 0).expect("open");
            list.add("ssh", "192.0.2.1", &BanRequest::fixed(10 * MINUTE), 0);
            list.add("ssh", "192.0.2.2", &BanRequest::fixed(MINUTE), 0);
            assert!(list.flush(Duration::from_secs(5)));
            let text = std::fs::read_to_string(dir.path().join(BANS_FILE)).expect("file");
            assert!(text.contains("\"version\": 1"), "{text}");
            assert!(text.contains("192.0.2.1"), "{text}");
        }
        // Two minutes on: the one-minute ban is gone, its offence is not.
        let list = BanList::open(dir.path(), 100, 2 * MINUTE).expect("reopen");
        let bans = list.list(2 * MINUTE);
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].key, "192.0.2.1");
        assert_eq!(bans[0].expires_unix_ms, 10 * MINUTE);
        let escalating = BanRequest {
            increment_factor: 2.0,
            ..BanRequest::fixed(MINUTE)
        };
        let again = list.add("ssh", "192.0.2.2", &escalating, 2 * MINUTE);
        let super::super::BanOutcome::Banned(again) = again else {
            panic!("not banned: {again:?}");
        };
        assert_eq!(again.offences, 2);
        assert_eq!(again.expires_unix_ms, 4 * MINUTE);
    }

    #[test]
    fn dropping_the_list_writes_pending_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let list = BanList::open(dir.path(), 100, 0).expect("open");
            list.add("web", "k", &BanRequest::fixed(MINUTE), 0);
        }
        let list = BanList::open(dir.path(), 100, 0).expect("reopen");
        assert!(list.check("web", "k", 0).is_some());
    }

    #[test]
    fn a_broken_file_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(BANS_FILE), b"{not json").expect("write");
        let list = BanList::open(dir.path(), 100, 0).expect("open");
        assert!(list.is_empty());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("bans.json.broken-")),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n == BANS_FILE), "{names:?}");
    }

    #[test]
    fn another_version_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = r#"{"version": 99, "saved_unix_ms": 0, "bans": [], "offences": []}"#;
        std::fs::write(dir.path().join(BANS_FILE), file).expect("write");
        BanList::open(dir.path(), 100, 0).expect("open");
        assert!(!dir.path().join(BANS_FILE).exists());
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"").expect("write");
        let err = BanList::open(&file.join("state"), 100, 0)
            .err()
            .expect("an error");
        assert!(err.to_string().starts_with("state directory "), "{err}");
    }
}
