//! `[access_log]`: where the access log's lines go besides Loki: STDOUT
//! and/or a file (JSON lines, one per request), and the log plugins that
//! shape the lines of requests no route took (unknown host, no path). Read
//! at config load; a reload that changes where lines go starts a new writer
//! (`crate::access_log`); the plugins are loaded with the routes' chains
//! (`crate::plugin_chain`).

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Context, Source};
use super::model::{AccessLogConfig, FailurePolicy};
use super::route::{plugin_entry, RawRoutePlugin};
use super::server::Plugins;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub stdout: Option<bool>,
    pub file: Option<Spanned<String>>,
    #[serde(default)]
    pub plugins: Vec<RawRoutePlugin>,
}

pub(super) fn build_access_log(
    src: &Source<'_>,
    base_dir: &Path,
    plugins: &Plugins,
    raw: RawAccessLog,
) -> Result<AccessLogConfig, ConfigError> {
    // A log hook's fault never fails a request: the default line is written.
    let plugins = raw
        .plugins
        .iter()
        .map(|entry| {
            plugin_entry(
                src,
                Some(&Context::AccessLog),
                plugins,
                entry,
                FailurePolicy::Open,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
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
        plugins,
    })
}
