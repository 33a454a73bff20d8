//! Builds the validated `[[routes]]`: host patterns, the path match, the
//! upstream and plugins they refer to, error pages and limits; and rejects
//! duplicate names and duplicate (host, path) pairs. Last step of config
//! loading; the router and pipeline read the result.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::cache::{build_route_cache, CacheConfigError, RawRouteCache};
use super::error::{ConfigError, ConfigErrorKind, Context, Source};
use super::model::{
    ErrorPage, ErrorPagesFor, FailurePolicy, HostPattern, PathMatch, PluginName,
    PluginRuntimeConfig, Route, RouteName, RoutePlugin, Upstream, UpstreamKind, UpstreamName,
};
use super::plugin_config::{layered_config, table_to_json};
use super::raw::{RawSize, SpannedKey};
use super::resolve_path;
use super::server::{memory_limit, Plugins};
use super::values::{check_identifier, error_page_content_type, hook_timeout, parse_host_pattern};

/// Default `max_body_size`: 1 MiB, as nginx's `client_max_body_size`.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 20;
/// Default `upgrades`: WebSockets, the one upgrade browsers make.
pub const DEFAULT_UPGRADES: &[&str] = &["websocket"];
/// Default `request_buffer_size`: request bodies up to this are buffered in
/// memory, larger ones in a temporary file (nginx `client_body_buffer_size`).
pub const DEFAULT_REQUEST_BUFFER_SIZE: u64 = 64 << 10;
/// Default `plugin_failure`: a faulting plugin fails the request.
pub const DEFAULT_PLUGIN_FAILURE: FailurePolicy = FailurePolicy::Closed;

// === raw ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub path: Option<Spanned<String>>,
    pub path_exact: Option<Spanned<String>>,
    pub path_regex: Option<Spanned<String>>,
    pub upstream: Spanned<String>,
    pub max_body_size: Option<Spanned<RawSize>>,
    pub request_buffering: Option<Spanned<bool>>,
    pub request_buffer_size: Option<Spanned<RawSize>>,
    pub plugin_failure: Option<Spanned<RawFailurePolicy>>,
    #[serde(default)]
    pub error_pages: BTreeMap<SpannedKey, Spanned<String>>,
    pub error_pages_for: Option<Spanned<RawErrorPagesFor>>,
    pub internal: Option<Vec<Spanned<String>>>,
    pub upgrades: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub plugins: Vec<RawRoutePlugin>,
    pub hook_timeout: Option<Spanned<String>>,
    pub memory_limit: Option<Spanned<RawSize>>,
    pub cache: Option<RawRouteCache>,
    pub https_redirect: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoutePlugin {
    pub plugin: Spanned<String>,
    pub config: Option<toml::Table>,
    pub on_failure: Option<Spanned<RawFailurePolicy>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawErrorPagesFor {
    Upstream,
    Bodiless,
    All,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawFailurePolicy {
    Open,
    Closed,
}

// === build ===

/// What routes may refer to: the sections built before them.
pub(super) struct RouteTargets<'a> {
    pub base_dir: &'a Path,
    pub runtime: &'a PluginRuntimeConfig,
    pub plugins: &'a Plugins,
    pub upstreams: &'a BTreeMap<UpstreamName, Arc<Upstream>>,
}

pub(super) fn build_routes(
    src: &Source<'_>,
    targets: &RouteTargets<'_>,
    raw: Vec<RawRoute>,
) -> Result<Vec<Arc<Route>>, ConfigError> {
    let mut routes: Vec<Arc<Route>> = Vec::with_capacity(raw.len());
    // Name -> line of its first definition.
    let mut names: HashMap<String, usize> = HashMap::new();
    // (host pattern as written, path) -> (route name, line).
    let mut pairs: HashMap<(String, PathKey), (String, usize)> = HashMap::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let name_span = raw.name.span();
        let name = check_identifier("route name", raw.name.get_ref()).map_err(|kind| {
            src.error(name_span.clone(), Some(&Context::RouteIndex(index)), kind)
        })?;
        let context = Context::Route(name.clone());
        if let Some(first_line) = names.get(&name) {
            return Err(src.error(
                name_span,
                Some(&context),
                ConfigErrorKind::DuplicateRoute {
                    name,
                    first_line: *first_line,
                },
            ));
        }
        names.insert(name.clone(), src.line_of(name_span));

        let route = RouteBuilder {
            src,
            targets,
            context: &context,
        }
        .build(name, raw, &mut pairs)?;
        routes.push(Arc::new(route));
    }
    Ok(routes)
}

/// A path match as a comparable key, to find duplicate (host, path) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PathKey {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl PathKey {
    fn describe(&self) -> String {
        match self {
            PathKey::Exact(p) => format!("path_exact \"{p}\""),
            PathKey::Prefix(p) => format!("path prefix \"{p}\""),
            PathKey::Regex(r) => format!("path_regex \"{r}\""),
        }
    }
}

struct RouteBuilder<'a> {
    src: &'a Source<'a>,
    targets: &'a RouteTargets<'a>,
    context: &'a Context,
}

impl RouteBuilder<'_> {
    fn error(&self, span: Range<usize>, kind: ConfigErrorKind) -> ConfigError {
        self.src.error(span, Some(self.context), kind)
    }

    fn at<T>(
        &self,
        span: Range<usize>,
        result: Result<T, ConfigErrorKind>,
    ) -> Result<T, ConfigError> {
        self.src.at(span, Some(self.context), result)
    }

    fn build(
        &self,
        name: String,
        raw: RawRoute,
        pairs: &mut HashMap<(String, PathKey), (String, usize)>,
    ) -> Result<Route, ConfigError> {
        let hosts = self.hosts(&raw.hosts)?;
        let (path, path_key) = self.path_match(&raw)?;
        for (host, span) in hosts
            .iter()
            .zip(raw.hosts.get_ref().iter().map(Spanned::span))
        {
            let key = (describe_host(host), path_key.clone());
            if let Some((other, other_line)) = pairs.get(&key) {
                return Err(self.error(
                    span,
                    ConfigErrorKind::DuplicateHostPath {
                        host: key.0,
                        path: path_key.describe(),
                        other: other.clone(),
                        other_line: *other_line,
                    },
                ));
            }
            pairs.insert(key, (name.clone(), self.src.line_of(span)));
        }

        let upstream_name = UpstreamName(raw.upstream.get_ref().clone());
        let upstream = self
            .targets
            .upstreams
            .get(&upstream_name)
            .cloned()
            .ok_or_else(|| {
                self.error(
                    raw.upstream.span(),
                    ConfigErrorKind::UndefinedUpstream {
                        name: upstream_name.0.clone(),
                    },
                )
            })?;

        let max_body_size = match &raw.max_body_size {
            None => DEFAULT_MAX_BODY_SIZE,
            Some(size) => self.at(size.span(), size.get_ref().bytes())?,
        };
        let request_buffer_size = match &raw.request_buffer_size {
            None => DEFAULT_REQUEST_BUFFER_SIZE,
            Some(size) => self.at(size.span(), size.get_ref().bytes())?,
        };
        let plugin_failure = raw
            .plugin_failure
            .map_or(DEFAULT_PLUGIN_FAILURE, |p| policy(*p.get_ref()));
        let error_pages = self.error_pages(&raw.error_pages)?;
        let error_pages_for =
            raw.error_pages_for
                .map_or(ErrorPagesFor::default(), |f| match *f.get_ref() {
                    RawErrorPagesFor::Upstream => ErrorPagesFor::Upstream,
                    RawErrorPagesFor::Bodiless => ErrorPagesFor::Bodiless,
                    RawErrorPagesFor::All => ErrorPagesFor::All,
                });
        let internal = self.internal(raw.internal.as_deref().unwrap_or_default(), &path)?;
        let upgrades = match &raw.upgrades {
            None => DEFAULT_UPGRADES.iter().map(|p| p.to_string()).collect(),
            Some(list) => self.upgrades(list)?,
        };
        let plugins = raw
            .plugins
            .iter()
            .map(|entry| {
                plugin_entry(
                    self.src,
                    Some(self.context),
                    self.targets.plugins,
                    entry,
                    plugin_failure,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hook_timeout = match &raw.hook_timeout {
            None => self.targets.runtime.hook_timeout,
            Some(t) => self.at(t.span(), hook_timeout(t.get_ref()))?,
        };
        let memory_limit = match &raw.memory_limit {
            None => self.targets.runtime.memory_limit,
            Some(m) => memory_limit(self.src, m, Some(self.context))?,
        };
        let cache = match &raw.cache {
            None => None,
            Some(_) if matches!(upstream.kind, UpstreamKind::Static { .. }) => {
                return Err(
                    self.error(raw.upstream.span(), CacheConfigError::StaticUpstream.into())
                );
            }
            Some(table) => Some(Arc::new(build_route_cache(self.src, self.context, table)?)),
        };
        Ok(Route {
            name: RouteName(name),
            hosts,
            path,
            upstream,
            max_body_size,
            request_buffering: raw.request_buffering.as_ref().is_none_or(|b| *b.get_ref()),
            request_buffer_size: usize::try_from(request_buffer_size).unwrap_or(usize::MAX),
            plugin_failure,
            error_pages,
            error_pages_for,
            internal,
            upgrades,
            plugins,
            hook_timeout,
            memory_limit,
            https_redirect: raw.https_redirect.as_ref().is_some_and(|b| *b.get_ref()),
            cache,
        })
    }

    fn hosts(&self, raw: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<HostPattern>, ConfigError> {
        if raw.get_ref().is_empty() {
            return Err(self.error(raw.span(), ConfigErrorKind::HostsEmpty));
        }
        let mut hosts = Vec::with_capacity(raw.get_ref().len());
        for item in raw.get_ref() {
            let host = self.at(item.span(), parse_host_pattern(item.get_ref()))?;
            if hosts.contains(&host) {
                return Err(self.error(
                    item.span(),
                    ConfigErrorKind::HostDuplicate(describe_host(&host)),
                ));
            }
            hosts.push(host);
        }
        Ok(hosts)
    }

    /// The route's one path match; a missing one is reported at the name.
    fn path_match(&self, raw: &RawRoute) -> Result<(PathMatch, PathKey), ConfigError> {
        let given: Vec<_> = [&raw.path, &raw.path_exact, &raw.path_regex]
            .into_iter()
            .flatten()
            .collect();
        match given.as_slice() {
            [] => return Err(self.error(raw.name.span(), ConfigErrorKind::PathMissing)),
            [_] => {}
            [_, second, ..] => {
                return Err(self.error(second.span(), ConfigErrorKind::PathExclusive));
            }
        }
        let absolute = |p: &Spanned<String>| {
            if p.get_ref().starts_with('/') {
                Ok(p.get_ref().clone())
            } else {
                Err(self.error(
                    p.span(),
                    ConfigErrorKind::PathNotAbsolute(p.get_ref().clone()),
                ))
            }
        };
        if let Some(p) = &raw.path {
            let p = absolute(p)?;
            return Ok((PathMatch::Prefix(p.clone()), PathKey::Prefix(p)));
        }
        if let Some(p) = &raw.path_exact {
            let p = absolute(p)?;
            return Ok((PathMatch::Exact(p.clone()), PathKey::Exact(p)));
        }
        let Some(r) = &raw.path_regex else {
            return Err(self.error(raw.name.span(), ConfigErrorKind::PathMissing));
        };
        let regex = Regex::new(r.get_ref())
            .map_err(|e| self.error(r.span(), ConfigErrorKind::PathRegex(e.to_string())))?;
        Ok((PathMatch::Regex(regex), PathKey::Regex(r.get_ref().clone())))
    }

    fn error_pages(
        &self,
        raw: &BTreeMap<SpannedKey, Spanned<String>>,
    ) -> Result<BTreeMap<u16, Arc<ErrorPage>>, ConfigError> {
        let mut pages = BTreeMap::new();
        for (status, file) in raw {
            let code = status
                .get_ref()
                .parse::<u16>()
                .ok()
                .filter(|c| (400..=599).contains(c))
                .ok_or_else(|| {
                    self.error(
                        status.span(),
                        ConfigErrorKind::ErrorPageStatus(status.get_ref().clone()),
                    )
                })?;
            if pages.contains_key(&code) {
                return Err(self.error(status.span(), ConfigErrorKind::ErrorPageDuplicate(code)));
            }
            let path = resolve_path(self.targets.base_dir, file.get_ref());
            let page = self.at(file.span(), read_error_page(path))?;
            pages.insert(code, Arc::new(page));
        }
        Ok(pages)
    }

    /// The route's `upgrades`: protocol names (RFC 9110 tokens), lower
    /// case; never `h2c`, whose tunnel would carry requests past the route's
    /// rules.
    fn upgrades(&self, raw: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
        raw.iter()
            .map(|p| {
                let name = p.get_ref().to_ascii_lowercase();
                let token = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                    });
                let reason = if name == "h2c" {
                    "h2c is never forwarded: requests inside its tunnel would reach the upstream past the route's plugins"
                } else if !token {
                    "not a protocol name (e.g. \"websocket\")"
                } else {
                    return Ok(name);
                };
                Err(self.error(
                    p.span(),
                    ConfigErrorKind::Invalid {
                        key: "upgrades",
                        reason: format!("\"{}\": {reason}", p.get_ref()),
                    },
                ))
            })
            .collect()
    }

    /// The route's `internal` paths: absolute, and under the route's own
    /// path match (elsewhere they would never be asked of this route).
    fn internal(
        &self,
        raw: &[Spanned<String>],
        route_path: &PathMatch,
    ) -> Result<Vec<String>, ConfigError> {
        raw.iter()
            .map(|p| {
                let path = p.get_ref();
                if !path.starts_with('/') {
                    return Err(
                        self.error(p.span(), ConfigErrorKind::PathNotAbsolute(path.clone()))
                    );
                }
                let under = match route_path {
                    PathMatch::Exact(e) => e == path,
                    PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
                    PathMatch::Regex(re) => re.is_match(path),
                };
                if !under {
                    return Err(self.error(
                        p.span(),
                        ConfigErrorKind::InternalOutsideRoute(path.clone()),
                    ));
                }
                Ok(path.clone())
            })
            .collect()
    }
}

/// One `[[routes.plugins]]` (or `[access_log] plugins`) entry: a plugin
/// defined in `[plugins]` and its config, laid over the plugin-level one,
/// as JSON; `default_policy` unless the entry sets `on_failure`.
pub(super) fn plugin_entry(
    src: &Source<'_>,
    context: Option<&Context>,
    plugins: &Plugins,
    entry: &RawRoutePlugin,
    default_policy: FailurePolicy,
) -> Result<RoutePlugin, ConfigError> {
    let name = PluginName(entry.plugin.get_ref().clone());
    if !plugins.files.contains_key(&name) {
        return Err(src.error(
            entry.plugin.span(),
            context,
            ConfigErrorKind::UndefinedPlugin { name: name.0 },
        ));
    }
    let config = layered_config(plugins.configs.get(&name), entry.config.as_ref());
    let config_json = src.at(
        entry.plugin.span(),
        context,
        table_to_json(&config).map_err(ConfigErrorKind::PluginConfigJson),
    )?;
    Ok(RoutePlugin {
        plugin: name,
        config_json,
        on_failure: entry
            .on_failure
            .as_ref()
            .map_or(default_policy, |p| policy(*p.get_ref())),
    })
}

fn policy(raw: RawFailurePolicy) -> FailurePolicy {
    match raw {
        RawFailurePolicy::Open => FailurePolicy::Open,
        RawFailurePolicy::Closed => FailurePolicy::Closed,
    }
}

fn describe_host(host: &HostPattern) -> String {
    match host {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::WildcardSuffix(suffix) => format!("*{suffix}"),
        HostPattern::Any => "*".to_owned(),
    }
}

fn read_error_page(path: PathBuf) -> Result<ErrorPage, ConfigErrorKind> {
    let bad = |reason: String| ConfigErrorKind::ErrorPageFile {
        path: path.clone(),
        reason,
    };
    let content_type = error_page_content_type(path.extension().and_then(|e| e.to_str()))
        .ok_or_else(|| bad("unknown file type; use .html, .htm, .txt, .json or .xml".into()))?;
    let body = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    Ok(ErrorPage {
        body: body.into(),
        content_type,
        path,
    })
}
