//! Config loading: `config.toml` -> raw file structs -> the validated
//! [`model::Config`] the router, pipeline and upstreams read. Runs at
//! start-up and on every reload (and in `tailgate check`), before any
//! request uses it.
//!
//! Every section has the same layout (raw -> model -> build):
//!
//! - `config/<section>.rs`: the section's raw table as written (serde,
//!   `deny_unknown_fields`, values `Spanned`), its defaults, and the build
//!   step `build_<section>` that validates it into the model;
//! - `config/model/<section>.rs`: the validated types, re-exported by
//!   [`model`] — the only part the rest of the crate reads.
//!
//! Sections: `server` (`[server]`, `[plugin_runtime]`, `[plugins]`),
//! `upstream` (`[upstreams]`), `route` (`[[routes]]`), `cache` (`[cache]`
//! and a route's `cache`), `tailnet`, `tls`, `telemetry`, `admin`,
//! `access_log`, `state`. [`raw`] holds the whole file (`RawFile`, one field per
//! section) and the raw values sections share; `values` the parsers they
//! share; `error` and `outline` place every error at its file, line and
//! column, with the route or upstream it is about. Relative paths are taken
//! from the config file's folder.

mod access_log;
mod admin;
mod cache;
mod error;
pub mod model;
mod outline;
mod plugin_config;
mod raw;
mod route;
mod server;
mod state;
mod tailnet;
mod telemetry;
mod tls;
mod upstream;
mod values;

pub use error::{ConfigError, ConfigErrorKind, Context, Position};
pub use model::Config;
pub use values::parse_duration;

use std::path::{Path, PathBuf};

use error::Source;
use raw::RawFile;
use route::RouteTargets;

/// Read and validate the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(&read(path)?, path)
}

/// The text of the config file at `path`.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        position: None,
        context: None,
        kind: Box::new(ConfigErrorKind::Read(e)),
    })
}

/// Validate config `text` read from `path` (used for error locations and as
/// the base of relative paths; the file itself is not read).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let src = Source { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&src, &e))?;
    let base_dir = path.parent().unwrap_or(Path::new(""));

    let server = server::build_server(&src, raw.server)?;
    let runtime = server::build_plugin_runtime(&src, base_dir, raw.plugin_runtime)?;
    let plugins = server::build_plugins(&src, base_dir, raw.plugins)?;
    let tailnet = tailnet::build_tailnet(&src, base_dir, raw.tailnet)?;
    let tls = tls::build_tls(&src, base_dir, raw.tls)?;
    let upstreams = upstream::build_upstreams(&src, base_dir, &tailnet, raw.upstreams)?;
    let targets = RouteTargets {
        base_dir,
        runtime: &runtime,
        plugins: &plugins,
        upstreams: &upstreams,
    };
    let routes = route::build_routes(&src, &targets, raw.routes)?;
    let admin = admin::build_admin(&src, raw.admin)?;
    let access_log = access_log::build_access_log(&src, base_dir, &plugins, raw.access_log)?;
    let cache = cache::build_cache(&src, raw.cache)?;
    let telemetry = telemetry::build_telemetry(&src, raw.telemetry)?.dial_like(&tailnet);
    let state = state::build_state(&src, base_dir, &tailnet, raw.state)?;
    Ok(Config {
        source: path.to_path_buf(),
        server,
        runtime,
        plugins: plugins.files,
        upstreams,
        routes,
        tailnet,
        tls,
        admin,
        access_log,
        cache,
        telemetry,
        state,
    })
}

/// The config of an empty file read from `path`: every default, no routes,
/// no upstreams, no plugins. The running state start-up reloads from
/// (`crate::reload`).
pub fn empty(path: &Path) -> Config {
    parse("", path).expect("an empty config file is valid")
}

/// A TOML syntax or shape error, placed and given its route/upstream.
fn toml_error(src: &Source<'_>, e: &toml::de::Error) -> ConfigError {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let kind = ConfigErrorKind::Toml(message);
    match e.span() {
        Some(span) => {
            let context = outline::context_of(src.text, e);
            src.error(span, context.as_ref(), kind)
        }
        None => ConfigError {
            file: src.path.to_path_buf(),
            position: None,
            context: None,
            kind: Box::new(kind),
        },
    }
}

/// A folder key (`cache_dir`, `state.dir`): `default` when absent, taken
/// from the config file's folder when relative; empty is an error.
fn folder_key(
    src: &Source<'_>,
    base_dir: &Path,
    raw: Option<toml::Spanned<String>>,
    key: &'static str,
    default: &str,
) -> Result<PathBuf, ConfigError> {
    match raw {
        None => Ok(resolve_path(base_dir, default)),
        Some(dir) if dir.get_ref().is_empty() => {
            Err(src.error(dir.span(), None, ConfigErrorKind::EmptyPath(key)))
        }
        Some(dir) => Ok(resolve_path(base_dir, dir.get_ref())),
    }
}

/// `relative` taken from the config file's folder; absolute paths unchanged.
fn resolve_path(base_dir: &Path, relative: &str) -> PathBuf {
    let p = Path::new(relative);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_start_at_the_config_folder() {
        assert_eq!(
            resolve_path(Path::new("/etc/tailgate"), "www"),
            PathBuf::from("/etc/tailgate/www")
        );
        assert_eq!(resolve_path(Path::new(""), "www"), PathBuf::from("www"));
        assert_eq!(
            resolve_path(Path::new("/etc/tailgate"), "/srv/www"),
            PathBuf::from("/srv/www")
        );
    }

    #[test]
    fn a_missing_file_is_reported_without_a_position() {
        let err = load(Path::new("/nonexistent/tailgate.toml")).unwrap_err();
        assert!(err.position.is_none());
        assert!(
            err.to_string()
                .starts_with("/nonexistent/tailgate.toml: cannot read the config file: "),
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_gets_every_default() {
        let config = parse("", Path::new("empty.toml")).unwrap();
        assert_eq!(config.server.listen, vec![server::DEFAULT_LISTEN]);
        assert_eq!(config.server.workers, 0);
        assert!(config.server.trusted_proxies.is_empty());
        assert!(config.server.client_ip_header.is_none());
        assert_eq!(
            config.server.unknown_host,
            model::UnknownHost::Status(http::StatusCode::NOT_FOUND)
        );
        assert_eq!(config.runtime.cache_dir, PathBuf::from(".tailgate/cache"));
        assert_eq!(
            config.runtime.hook_timeout,
            std::time::Duration::from_millis(50)
        );
        assert_eq!(config.runtime.memory_limit, 16 << 20);
        assert!(config.routes.is_empty());
    }
}
