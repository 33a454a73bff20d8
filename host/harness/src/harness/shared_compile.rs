//! Compiled plugins shared by every [`Harness`](super::Harness) of a
//! process. A harness keeps its compiled-plugin cache in a temporary
//! directory of its own (unless given one), so each test would compile the
//! component again: seconds per test for a large plugin, most of a suite's
//! time. Here the first harness to load a given wasm compiles it as before
//! and its cache file (`<sha256>-<engine>.cwasm`, the runtime's on-disk
//! cache format) is kept in memory; every later harness of the process
//! gets the file written into its own cache directory before it loads, so
//! the runtime finds it there and only deserializes it. Harnesses loading
//! the same wasm at once (parallel tests) wait for the one compiling it.
//!
//! Keyed by the wasm's bytes, compared whole: a rebuilt plugin is a new
//! entry. The bytes are the runtime's own `serialize` output of this
//! process, so loading them is as trusted as the runtime's cache.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// A compiled plugin's cache file: its name and contents.
type CacheFile = (OsString, Arc<[u8]>);

/// Per wasm, the cache files compiled from it (one per engine
/// configuration seen; in practice one).
type Entry = Arc<Mutex<Vec<CacheFile>>>;

fn entries() -> MutexGuard<'static, HashMap<Vec<u8>, Entry>> {
    static ENTRIES: OnceLock<Mutex<HashMap<Vec<u8>, Entry>>> = OnceLock::new();
    ENTRIES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Loads `wasm` with `load` (the runtime's load, caching in `cache_dir`),
/// from the process's compiled form when there is one. `load` returns the
/// loaded plugin and the cache file it used or wrote.
pub(super) fn load<T, E>(
    wasm: &Path,
    cache_dir: &Path,
    load: impl FnOnce() -> Result<(T, std::path::PathBuf), E>,
) -> Result<T, E> {
    // An unreadable file: let the runtime report it.
    let Ok(bytes) = std::fs::read(wasm) else {
        return load().map(|(loaded, _)| loaded);
    };
    let entry = entries().entry(bytes).or_default().clone();
    // Held across the load: a second harness loading the same wasm waits
    // for the first to compile it, then finds it compiled.
    let mut files = entry.lock().unwrap_or_else(PoisonError::into_inner);
    for (name, contents) in files.iter() {
        let path = cache_dir.join(name);
        if !path.exists() {
            // At worst the runtime compiles: a cache miss, not an error.
            let _ = std::fs::write(&path, contents);
        }
    }
    let (loaded, cache_path) = load()?;
    if let Some(name) = cache_path.file_name() {
        if !files.iter().any(|(known, _)| known == name) {
            if let Ok(contents) = std::fs::read(&cache_path) {
                files.push((name.to_owned(), contents.into()));
            }
        }
    }
    Ok(loaded)
}
