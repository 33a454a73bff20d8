//! The validated `[[routes]]`: host patterns, the path match, the upstream,
//! the plugin chain, error pages, limits and the route's cache. Built by
//! `config::route` at load; read by the router and the pipeline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::{PluginName, RouteCache, RouteName, Upstream};

#[derive(Debug, Clone)]
pub struct Route {
    pub name: RouteName,
    pub hosts: Vec<HostPattern>,
    pub path: PathMatch,
    pub upstream: Arc<Upstream>,
    pub max_body_size: u64,
    /// Read the whole request body before the upstream is contacted (nginx
    /// `proxy_request_buffering on`); `false` streams it.
    pub request_buffering: bool,
    /// Bodies up to this many bytes are buffered in memory, larger ones in
    /// a temporary file.
    pub request_buffer_size: usize,
    pub plugin_failure: FailurePolicy,
    /// Upstream failure status -> page file (read at load; served with that status).
    pub error_pages: BTreeMap<u16, Arc<ErrorPage>>,
    /// Which answers besides the upstream's the error pages dress.
    pub error_pages_for: ErrorPagesFor,
    /// Paths a client may not request on this route (nginx `internal`):
    /// answered 404, never sent upstream. Exact paths.
    pub internal: Vec<String>,
    /// Protocols a client may upgrade to through this route (`Upgrade`),
    /// lower case; `["websocket"]` by default, never `h2c`.
    pub upgrades: Vec<String>,
    pub plugins: Vec<RoutePlugin>,
    pub hook_timeout: Duration,
    pub memory_limit: usize,
    /// The route's response cache settings; `None`: the route does not cache.
    pub cache: Option<Arc<RouteCache>>,
    /// Plain-HTTP requests are redirected to `https://` (301, or 308 for
    /// methods other than GET and HEAD).
    pub https_redirect: bool,
}

impl Route {
    /// Does this route forward an `Upgrade` to `offered`? Every protocol
    /// offered (`websocket`, `foo/2`: the name before the `/`) must be in
    /// `upgrades`; otherwise the request goes upstream without the upgrade.
    pub fn allows_upgrade(&self, offered: &http::HeaderValue) -> bool {
        let Ok(offered) = offered.to_str() else {
            return false;
        };
        let mut protocols = offered.split(',').map(str::trim).filter(|p| !p.is_empty());
        let mut any = false;
        let all_allowed = protocols.all(|p| {
            any = true;
            let name = p.split_once('/').map_or(p, |(name, _)| name);
            self.upgrades.iter().any(|u| u.eq_ignore_ascii_case(name))
        });
        any && all_allowed
    }
}

/// The answers a route's `error_pages` dress (`error_pages_for`). Each
/// level dresses what the one before does, and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPagesFor {
    /// The upstream's failures (502, 504) and its answers with a page's
    /// status (nginx `proxy_intercept_errors`). Plugin answers and the
    /// proxy's own refusals keep their bodies.
    #[default]
    Upstream,
    /// Also answers without a body of their own, as nginx's `error_page`
    /// dresses its own: plugin answers with an empty body and the proxy's
    /// refusals (413, 404 of an internal path, 500 of a failed plugin).
    Bodiless,
    /// Also every plugin answer, its body replaced.
    All,
}

impl ErrorPagesFor {
    /// Whether host-made errors that are not the upstream's get the page.
    pub fn dresses_refusals(self) -> bool {
        self != ErrorPagesFor::Upstream
    }

    /// Whether a plugin's answer (with or without a body) gets the page.
    pub fn dresses_plugin_answer(self, has_body: bool) -> bool {
        match self {
            ErrorPagesFor::Upstream => false,
            ErrorPagesFor::Bodiless => !has_body,
            ErrorPagesFor::All => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub path: PathBuf,
    pub body: bytes::Bytes,
    pub content_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `example.com` (lower case, no port).
    Exact(String),
    /// `*.example.com`: stored as the suffix `.example.com`.
    WildcardSuffix(String),
    /// `*`: any host.
    Any,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// A faulting plugin fails the request (500 for request hooks).
    Closed,
    /// A faulting plugin is skipped, as if absent.
    Open,
}

/// One entry of a route's plugin chain (or of `[access_log] plugins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlugin {
    pub plugin: PluginName,
    /// The plugin's config table as JSON, handed to its `configure`.
    pub config_json: String,
    /// Overrides the route's policy for this plugin.
    pub on_failure: FailurePolicy,
}
