//! The declarative cases runner behind `tailgate plugin test PLUGIN.wasm
//! CASES.toml`: reads a cases file, runs each case on a fresh harness, and
//! prints one `ok` / `FAIL` line per case (with what was wrong and the
//! plugin's log under a failure) and a `N passed, N failed` summary.
//! The format is documented in `docs/writing-a-plugin.md`.

mod check;
pub mod file;
mod run;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use file::CasesFile;
pub use run::CaseResult;

/// Why a cases file could not be run at all (distinct from failing cases).
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: no cases (add `[[case]]` tables)")]
    Empty { path: PathBuf },
    #[error("{0}")]
    Setup(String),
    #[error("writing the report: {0}")]
    Report(std::io::Error),
}

/// The tally of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

impl CasesFile {
    /// Parses cases-file text; errors carry TOML's line and column.
    pub fn parse(text: &str) -> Result<CasesFile, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

/// Reads `cases` and runs it against the plugin at `wasm`, writing the
/// report to `out`.
pub fn run_file(wasm: &Path, cases: &Path, out: &mut dyn Write) -> Result<Summary, CasesError> {
    let text = std::fs::read_to_string(cases).map_err(|source| CasesError::Read {
        path: cases.to_path_buf(),
        source,
    })?;
    let file = CasesFile::parse(&text).map_err(|message| CasesError::Parse {
        path: cases.to_path_buf(),
        message,
    })?;
    if file.cases.is_empty() {
        return Err(CasesError::Empty {
            path: cases.to_path_buf(),
        });
    }
    run(wasm, &file, out)
}

/// Runs every case of `file` against the plugin at `wasm`.
pub fn run(wasm: &Path, file: &CasesFile, out: &mut dyn Write) -> Result<Summary, CasesError> {
    // Check the plugin loads before running cases: one clear error instead
    // of the same failure under every case.
    let cache = tempfile::Builder::new()
        .prefix("tailgate-cases-")
        .tempdir()
        .map_err(|e| CasesError::Setup(format!("creating a compile cache: {e}")))?;
    let settings = run::FileSettings::new(file, wasm, cache.path()).map_err(CasesError::Setup)?;
    let probe = settings
        .builder
        .clone()
        .build()
        .map_err(|e| CasesError::Setup(e.to_string()))?;
    probe
        .load_as(&settings.plugin, wasm)
        .map_err(|e| CasesError::Setup(e.to_string()))?;
    drop(probe);

    let mut summary = Summary {
        passed: 0,
        failed: 0,
    };
    for case in &file.cases {
        let result = run::run_case(&settings, file, wasm, case);
        report(out, &result).map_err(CasesError::Report)?;
        if result.passed() {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
    }
    writeln!(out, "{summary}").map_err(CasesError::Report)?;
    Ok(summary)
}

fn report(out: &mut dyn Write, result: &CaseResult) -> std::io::Result<()> {
    if result.passed() {
        return writeln!(out, "ok   {}", result.name);
    }
    writeln!(out, "FAIL {}", result.name)?;
    for failure in &result.failures {
        for (i, line) in failure.lines().enumerate() {
            let lead = if i == 0 { "     - " } else { "       " };
            writeln!(out, "{lead}{line}")?;
        }
    }
    Ok(())
}
