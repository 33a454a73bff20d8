//! Shared by the harness's integration tests: the shipped plugins' built
//! components (`make plugins`) and harnesses on one compile cache.

#![allow(dead_code)]

use std::path::PathBuf;

use tailgate_harness::{Harness, HarnessBuilder};

/// `plugins/target/wasm32-wasip2/release/<stem>.wasm`, which must exist.
pub fn wasm(stem: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release")
        .join(format!("{stem}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first (or `cd plugins && cargo build --release`)",
        path.display()
    );
    path
}

/// The repository's `plugins/<name>/cases.toml`.
pub fn cases_file(plugin_dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins")
        .join(plugin_dir)
        .join("cases.toml")
}

/// A harness builder on a compile cache shared by this build's tests.
pub fn builder() -> HarnessBuilder {
    Harness::builder().cache_dir(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("harness-cache"))
}

pub fn harness() -> Harness {
    builder().build().expect("harness")
}
