//! Config snapshot tests: every `fixtures/config/valid/*.toml` must load and
//! its parsed form must match `*.expected`; every
//! `fixtures/config/invalid/*.toml` must fail with exactly the error text in
//! `*.expected`. `UPDATE_SNAPSHOTS=1 cargo test -p tailgate --test
//! config_snapshots` rewrites the `.expected` files (review the diff).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const FIXTURES: &str = "tests/fixtures/config";

/// Fixture paths are relative to the crate root (cargo's working directory
/// for tests), so the paths inside errors and dumps are the same everywhere.
fn fixtures(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        std::env::current_dir().ok().as_deref(),
        Some(root),
        "run from the crate root (cargo test does)"
    );
    let dir = Path::new(FIXTURES).join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Compare `actual` with the fixture's `.expected` file (or write it).
fn check_snapshot(fixture: &Path, actual: &str, mismatches: &mut String) {
    let expected_path = fixture.with_extension("expected");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, actual)
            .unwrap_or_else(|e| panic!("writing {}: {e}", expected_path.display()));
        return;
    }
    match std::fs::read_to_string(&expected_path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let _ = write!(
                mismatches,
                "\n=== {}\n--- expected\n{expected}\n+++ actual\n{actual}\n",
                fixture.display()
            );
        }
        Err(e) => {
            let _ = write!(
                mismatches,
                "\n=== {}: no {} ({e}); run with UPDATE_SNAPSHOTS=1\n+++ actual\n{actual}\n",
                fixture.display(),
                expected_path.display()
            );
        }
    }
}

fn fail_on(mismatches: String, what: &str) {
    assert!(
        mismatches.is_empty(),
        "{what} snapshots differ (UPDATE_SNAPSHOTS=1 to accept):{mismatches}"
    );
}

#[test]
fn valid_configs_parse_to_their_snapshot() {
    let mut mismatches = String::new();
    for fixture in fixtures("valid") {
        match tailgate::config::load(&fixture) {
            Ok(config) => check_snapshot(&fixture, &format!("{config:#?}\n"), &mut mismatches),
            Err(e) => {
                let _ = write!(mismatches, "\n=== {}: rejected: {e}\n", fixture.display());
            }
        }
    }
    fail_on(mismatches, "valid config");
}

#[test]
fn invalid_configs_fail_with_their_exact_error() {
    let mut mismatches = String::new();
    for fixture in fixtures("invalid") {
        match tailgate::config::load(&fixture) {
            Ok(_) => {
                let _ = write!(mismatches, "\n=== {}: was accepted\n", fixture.display());
            }
            Err(e) => {
                let text = e.to_string();
                let file_line_col = format!("{}:", fixture.display());
                if !text.starts_with(&file_line_col) || e.position.is_none() {
                    let _ = write!(
                        mismatches,
                        "\n=== {}: error lacks file:line:col: {text}\n",
                        fixture.display()
                    );
                }
                check_snapshot(&fixture, &format!("{text}\n"), &mut mismatches);
            }
        }
    }
    fail_on(mismatches, "invalid config");
}

#[test]
fn every_snapshot_has_its_fixture() {
    for kind in ["valid", "invalid"] {
        let dir = Path::new(FIXTURES).join(kind);
        for entry in std::fs::read_dir(&dir).expect("fixture folder") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "expected") {
                assert!(
                    path.with_extension("toml").exists(),
                    "{} has no .toml fixture",
                    path.display()
                );
            }
        }
    }
}
