//! The on-disk cache of compiled plugins (`.cwasm`), so a restart or reload
//! loads a plugin in well under a millisecond instead of compiling it again.
//! Files are named by the wasm's SHA-256 and the engine's compatibility
//! hash, written atomically (temp file + rename); a file that fails to load
//! is recompiled and overwritten. The directory must be the proxy's own:
//! loading compiled code from it is trusted.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// How a plugin's compiled form was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache; nothing compiled.
    Hit,
    /// Compiled (not cached before, or the cached file was unusable).
    Compiled(Duration),
}

pub(crate) struct CompileCache {
    dir: PathBuf,
    /// Hex digest of the engine's precompile compatibility hash.
    engine_key: String,
}

/// Temp-file names unique within the process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CompileCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        CompileCache {
            dir,
            engine_key: engine_key(engine),
        }
    }

    /// Where the compiled form of the wasm with `digest` lives.
    pub(crate) fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for `wasm` (whose SHA-256 is `digest`), from
    /// the cache or compiled now and stored. A cache that cannot be written
    /// costs a warning, not the plugin.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        plugin: &str,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.path_for(digest);
        if path.is_file() {
            // SAFETY: `deserialize_file` maps the file as executable code.
            // The cache directory belongs to the proxy (see the module doc),
            // files in it are only ever written whole by `store` below from
            // wasmtime's own `serialize`, and wasmtime checks the header
            // (version, engine settings) before using one.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize_file(engine, &path) };
            match cached {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => tracing::warn!(
                    plugin,
                    path = %path.display(),
                    error = %format!("{error:#}"),
                    "cached compiled plugin is unusable; compiling again"
                ),
            }
        }
        tracing::info!(
            plugin,
            digest,
            wasm_bytes = wasm.len(),
            "compiling plugin (not cached yet; this takes a moment once)"
        );
        let started = Instant::now();
        let component = Component::new(engine, wasm)?;
        let took = started.elapsed();
        tracing::info!(
            plugin,
            digest,
            took_ms = took.as_millis() as u64,
            "compiled plugin (not cached yet)"
        );
        match component.serialize() {
            Ok(bytes) => {
                if let Err(error) = self.store(&path, &bytes) {
                    tracing::warn!(
                        plugin,
                        path = %path.display(),
                        %error,
                        "cannot write the compiled-plugin cache"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(plugin, error = %format!("{error:#}"), "cannot serialize compiled plugin")
            }
        }
        Ok((component, CacheOutcome::Compiled(took)))
    }

    /// Writes `bytes` to `path` atomically: a temp file in the same
    /// directory, synced, then renamed over.
    fn store(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temp = self.dir.join(format!(
            ".{}.{}-{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("plugin"),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }
}

/// A stable digest of the engine's compatibility hash (wasmtime version,
/// target, compiler and memory settings): cached files of another engine
/// configuration get another name.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// SHA-256 as a `std::hash::Hasher`, so the key does not depend on std's
/// unspecified default hasher.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

/// SHA-256 of `bytes`, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(epochs: bool) -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(epochs);
        Engine::new(&config).expect("engine")
    }

    #[test]
    fn key_includes_wasm_digest_and_engine_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = CompileCache::new(dir.path().into(), &engine(true));
        let b = CompileCache::new(dir.path().into(), &engine(false));
        let same = CompileCache::new(dir.path().into(), &engine(true));
        assert_eq!(a.path_for("abc"), same.path_for("abc"));
        assert_ne!(a.path_for("abc"), a.path_for("abd"));
        assert_ne!(a.path_for("abc"), b.path_for("abc"));
        let name = a.path_for("abc");
        let name = name.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(
            name.starts_with("abc-") && name.ends_with(".cwasm"),
            "{name}"
        );
    }

    #[test]
    fn store_is_atomic_and_creates_the_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("nested/cache");
        let cache = CompileCache::new(dir.clone(), &engine(true));
        let path = cache.path_for("d1");
        cache.store(&path, b"first").expect("store");
        cache.store(&path, b"second").expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn sha256_hex_is_the_usual_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
