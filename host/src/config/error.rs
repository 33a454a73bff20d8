//! Config errors: what is wrong, and where — file, line, column and the
//! route or upstream concerned. Produced while loading `config.toml`, before
//! any request is served; shown to the operator by `tailgate run`/`check`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A config file that cannot be used, with its location.
///
/// Displays as `config.toml:31:10: route "site": upstream "nope" is not defined`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The config file, as given to `load`.
    pub file: PathBuf,
    /// Where in the file, when the error is about a place in it.
    pub position: Option<Position>,
    /// The route or upstream the error is about, if any.
    pub context: Option<Context>,
    /// Boxed: keeps `Result<_, ConfigError>` small on the happy path.
    pub kind: Box<ConfigErrorKind>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.position {
            write!(f, ":{}:{}", pos.line, pos.column)?;
        }
        write!(f, ": ")?;
        if let Some(ctx) = &self.context {
            write!(f, "{ctx}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

/// 1-based line and column (in characters) of a place in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// The part of the config an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// A route with a valid name.
    Route(String),
    /// A route whose name is missing or invalid, by its index in `routes`.
    RouteIndex(usize),
    Upstream(String),
    /// The `[access_log]` section (its plugin chain).
    AccessLog,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Route(name) => write!(f, "route \"{name}\""),
            Context::RouteIndex(i) => write!(f, "routes[{i}]"),
            Context::Upstream(name) => write!(f, "upstream \"{name}\""),
            Context::AccessLog => f.write_str("[access_log]"),
        }
    }
}

/// What is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigErrorKind {
    #[error("cannot read the config file: {0}")]
    Read(#[source] std::io::Error),
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type.
    #[error("{0}")]
    Toml(String),

    #[error("access_log file \"{0}\": its folder does not exist")]
    AccessLogFile(String),
    #[error("listen address \"{0}\" is not an IP:PORT socket address (e.g. \"0.0.0.0:8080\", \"[::]:8080\")")]
    ListenAddress(String),
    #[error("`listen` must name at least one address")]
    ListenEmpty,
    #[error("listen address {0} is given twice")]
    ListenDuplicate(String),
    #[error("`workers` {0} is too many (at most {max})", max = crate::config::values::MAX_WORKERS)]
    Workers(usize),
    #[error("`max_connections` must be at least 1")]
    MaxConnections,
    #[error(
        "invalid header name \"{0}\": must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~)"
    )]
    HeaderName(String),
    #[error("invalid CIDR \"{value}\": {reason}")]
    Cidr { value: String, reason: String },
    #[error("unknown_host: {0}")]
    UnknownHost(&'static str),
    #[error("unknown_host status {0} must be between 400 and 599")]
    UnknownHostStatus(u16),

    #[error("invalid duration \"{value}\": {reason}")]
    Duration { value: String, reason: &'static str },
    #[error("invalid size \"{value}\": {reason}")]
    Size { value: String, reason: &'static str },
    #[error("memory_limit {value} is out of range: must be between 64KiB and {max}MiB", max = tailgate_runtime::MAX_MEMORY_BYTES >> 20)]
    MemoryLimit { value: String },
    #[error("hook_timeout \"{0}\" {1}")]
    HookTimeout(String, tailgate_runtime::BudgetBelowTick),
    #[error("max_instances must be between 1 and {max}", max = crate::config::values::MAX_INSTANCES)]
    MaxInstances,
    #[error("max_calls_per_instance must be at least 1")]
    MaxCallsPerInstance,
    #[error("{0} must be at least 1")]
    AtLeastOne(&'static str),
    #[error("{0} must not be empty")]
    EmptyPath(&'static str),

    #[error("invalid {what} \"{value}\": use letters, digits, '_', '.' and '-'")]
    Identifier { what: &'static str, value: String },

    #[error("set either `url` or `static`")]
    UpstreamKindMissing,
    #[error("`url` and `static` are exclusive; set one")]
    UpstreamKindBoth,
    #[error("invalid url \"{value}\": {reason}")]
    UpstreamUrl { value: String, reason: String },
    #[error("static folder {path} cannot be used: {reason}")]
    StaticFolder { path: PathBuf, reason: String },
    #[error("`{0}` applies only to `url` upstreams")]
    UrlOnlyKey(&'static str),
    #[error(
        "upstream target {target} is not in [tailnet] allow; add it there to let Tailgate dial it"
    )]
    TargetNotAllowed { target: String },
    #[error("invalid allow entry \"{value}\": {reason}")]
    AllowEntry { value: String, reason: &'static str },
    #[error("certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    /// A key with a value that cannot be used, and why.
    #[error("`{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },

    #[error("telemetry: {0}")]
    Telemetry(#[source] super::telemetry::TelemetryConfigError),

    #[error(transparent)]
    Cache(crate::config::cache::CacheConfigError),

    #[error("`hosts` must name at least one host")]
    HostsEmpty,
    #[error("invalid host \"{value}\": {reason}")]
    HostPattern { value: String, reason: &'static str },
    #[error("host \"{0}\" is listed twice")]
    HostDuplicate(String),
    #[error("set one of `path` (prefix), `path_exact` or `path_regex`")]
    PathMissing,
    #[error("`path`, `path_exact` and `path_regex` are exclusive; set one")]
    PathExclusive,
    #[error("path \"{0}\" must start with \"/\"")]
    PathNotAbsolute(String),
    #[error("invalid path_regex: {0}")]
    PathRegex(String),
    #[error("upstream \"{name}\" is not defined in [upstreams]")]
    UndefinedUpstream { name: String },
    #[error("plugin \"{name}\" is not defined in [plugins]")]
    UndefinedPlugin { name: String },
    #[error("error page status \"{0}\" must be a number between 400 and 599")]
    ErrorPageStatus(String),
    #[error("error page status {0} is given twice")]
    ErrorPageDuplicate(u16),
    #[error("error page {path}: {reason}")]
    ErrorPageFile { path: PathBuf, reason: String },
    #[error("internal path \"{0}\" is outside the route's path match: its requests never reach this route")]
    InternalOutsideRoute(String),
    #[error("plugin config cannot be passed as JSON: {0}")]
    PluginConfigJson(String),
    #[error("duplicate route name \"{name}\" (first defined at line {first_line})")]
    DuplicateRoute { name: String, first_line: usize },
    #[error(
        "host \"{host}\" with {path} is already routed by route \"{other}\" (line {other_line})"
    )]
    DuplicateHostPath {
        host: String,
        path: String,
        other: String,
        other_line: usize,
    },
}

/// The text being loaded and its path: turns byte spans into `ConfigError`s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at byte span `span`, about `context`.
    pub fn error(
        &self,
        span: Range<usize>,
        context: Option<&Context>,
        kind: ConfigErrorKind,
    ) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            position: Some(self.position(span)),
            context: context.cloned(),
            kind: Box::new(kind),
        }
    }

    /// `result`, with its error placed at `span`.
    pub fn at<T>(
        &self,
        span: Range<usize>,
        context: Option<&Context>,
        result: Result<T, ConfigErrorKind>,
    ) -> Result<T, ConfigError> {
        result.map_err(|kind| self.error(span, context, kind))
    }

    pub fn position(&self, span: Range<usize>) -> Position {
        Position::of_offset(self.text, span.start)
    }

    pub fn line_of(&self, span: Range<usize>) -> usize {
        self.position(span).line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_characters_from_one() {
        let text = "a = 1\n\u{e9}t\u{e9} = \"x\"\n";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 4),
            Position { line: 1, column: 5 }
        );
        assert_eq!(
            Position::of_offset(text, 6),
            Position { line: 2, column: 1 }
        );
        // "été = " is 8 bytes but 6 characters.
        assert_eq!(
            Position::of_offset(text, 14),
            Position { line: 2, column: 7 }
        );
        // Past the end or inside a character: clamped, no panic.
        assert_eq!(Position::of_offset(text, 999).line, 3);
        assert_eq!(
            Position::of_offset(text, 7),
            Position { line: 2, column: 1 }
        );
    }

    #[test]
    fn display_names_file_position_and_route() {
        let e = ConfigError {
            file: PathBuf::from("config.toml"),
            position: Some(Position {
                line: 31,
                column: 10,
            }),
            context: Some(Context::Route("site".into())),
            kind: Box::new(ConfigErrorKind::UndefinedUpstream {
                name: "nope".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "config.toml:31:10: route \"site\": upstream \"nope\" is not defined in [upstreams]"
        );
        let e = ConfigError {
            file: PathBuf::from("x.toml"),
            position: None,
            context: None,
            kind: Box::new(ConfigErrorKind::ListenEmpty),
        };
        assert_eq!(
            e.to_string(),
            "x.toml: `listen` must name at least one address"
        );
    }
}
