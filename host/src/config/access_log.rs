//! `[access_log]`: where the access log's lines go besides Loki: STDOUT
//! and/or a file (JSON lines, one per request). Read at config load; a reload
//! that changes it starts a new writer (`crate::access_log`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub stdout: Option<bool>,
    pub file: Option<Spanned<String>>,
}

/// The validated `[access_log]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Write lines to STDOUT (default true).
    pub stdout: bool,
    /// Also append lines to this file (created if missing; relative to the
    /// config file's folder).
    pub file: Option<PathBuf>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            stdout: true,
            file: None,
        }
    }
}

pub(super) fn build_access_log(
    src: &Source<'_>,
    base_dir: &Path,
    raw: RawAccessLog,
) -> Result<AccessLogConfig, ConfigError> {
    let file = match raw.file {
        None => None,
        Some(f) => {
            let path = base_dir.join(f.get_ref());
            let folder = path.parent().unwrap_or(Path::new("."));
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            if f.get_ref().is_empty() || !folder.is_dir() {
                return Err(src.error(
                    f.span(),
                    None,
                    ConfigErrorKind::AccessLogFile(f.get_ref().clone()),
                ));
            }
            Some(path)
        }
    };
    Ok(AccessLogConfig {
        stdout: raw.stdout.unwrap_or(true),
        file,
    })
}
