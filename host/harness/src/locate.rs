//! Finding a plugin crate's built component from its own `cargo test`:
//! `target/wasm32-wasip2/{release,debug}/<crate>.wasm` (or `wasm32-wasip1`,
//! where `cargo component build` puts it) under the crate or its workspace,
//! the newest one, refused when older than the crate's sources so a test
//! never runs stale code.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::HarnessError;

const TARGETS: [&str; 2] = ["wasm32-wasip2", "wasm32-wasip1"];
const PROFILES: [&str; 2] = ["release", "debug"];

/// The built component of the plugin crate in `manifest_dir` (pass
/// `env!("CARGO_MANIFEST_DIR")`).
pub fn built_plugin(manifest_dir: impl AsRef<Path>) -> Result<PathBuf, HarnessError> {
    let manifest_dir = manifest_dir.as_ref();
    let crate_name = package_name(manifest_dir).unwrap_or_else(|| {
        manifest_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    let build = format!(
        "cargo build --release --target wasm32-wasip2 (in {})",
        manifest_dir.display()
    );
    let mut target_dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    target_dirs.extend(manifest_dir.ancestors().map(|dir| dir.join("target")));
    let mut looked_for = Vec::new();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for target_dir in &target_dirs {
        for target in TARGETS {
            for profile in PROFILES {
                let path = target_dir.join(target).join(profile).join(&file);
                looked_for.push(path.display().to_string());
                if let Some(modified) = modified(&path) {
                    if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
                        newest = Some((modified, path));
                    }
                }
            }
        }
    }
    let Some((built_at, wasm)) = newest else {
        return Err(HarnessError::NotBuilt {
            path: manifest_dir.to_path_buf(),
            looked_for: looked_for.join(", "),
            build,
        });
    };
    if let Some((changed_at, source_file)) = newest_source(manifest_dir) {
        if changed_at > built_at {
            return Err(HarnessError::Stale {
                wasm,
                source_file,
                build,
            });
        }
    }
    Ok(wasm)
}

fn package_name(manifest_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest_dir.join("Cargo.toml")).ok()?;
    let manifest: toml::Table = text.parse().ok()?;
    manifest
        .get("package")?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

/// The most recently changed of `Cargo.toml` and the files under `src/`.
fn newest_source(manifest_dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut consider = |path: PathBuf| {
        if let Some(time) = modified(&path) {
            if newest.as_ref().is_none_or(|(t, _)| time > *t) {
                newest = Some((time, path));
            }
        }
    };
    consider(manifest_dir.join("Cargo.toml"));
    let mut dirs = vec![manifest_dir.join("src")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                consider(path);
            }
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn finds_the_workspace_build_and_refuses_stale_or_missing_ones() {
        let root = tempfile::tempdir().expect("tempdir");
        let krate = root.path().join("my-plugin");
        touch(
            &krate.join("Cargo.toml"),
            "[package]\nname = \"my-plugin\"\n",
        );
        touch(&krate.join("src/lib.rs"), "// v1\n");
        let err = built_plugin(&krate).expect_err("not built");
        assert!(matches!(err, HarnessError::NotBuilt { .. }), "{err}");
        assert!(err.to_string().contains("my_plugin.wasm"), "{err}");

        std::thread::sleep(std::time::Duration::from_millis(20));
        let wasm = root
            .path()
            .join("target/wasm32-wasip2/release/my_plugin.wasm");
        touch(&wasm, "");
        assert_eq!(built_plugin(&krate).expect("found"), wasm);

        std::thread::sleep(std::time::Duration::from_millis(20));
        touch(&krate.join("src/lib.rs"), "// v2\n");
        let err = built_plugin(&krate).expect_err("stale");
        assert!(matches!(err, HarnessError::Stale { .. }), "{err}");
        assert!(err.to_string().contains("src/lib.rs"), "{err}");
    }
}
