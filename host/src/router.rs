//! The route table: the pipeline's first phase picks a `Route` for a request
//! the way nginx picks a `server` and then a `location`.
//!
//! Host first: an exact name beats a wildcard `*.example.com` (the longest
//! suffix wins), which beats `*`. The routes naming the winning host pattern
//! form the request's "server"; among them, by path: `path_exact` first, then
//! `path_regex` routes in config order (first match wins), then the longest
//! `path` prefix. A host no route names is `UnknownHost`; a known host whose
//! routes match no path is `NoPathMatch` (404).

use foldhash::HashMap;
use std::sync::Arc;

use crate::config::model::{Config, HostPattern, PathMatch, Route};

/// What the route table says about one request.
#[derive(Debug, Clone)]
pub enum RouteMatch {
    Found(Arc<Route>),
    /// No route names this host (`server.unknown_host` applies).
    UnknownHost,
    /// The host is known but none of its routes matches the path (404).
    NoPathMatch,
}

/// All routes of the active config, indexed by host pattern.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, HostRoutes>,
    /// Wildcard suffixes (".example.com"), longest first.
    wildcard: Vec<(String, HostRoutes)>,
    any: Option<HostRoutes>,
}

/// The routes that share one host pattern: an nginx `server`.
#[derive(Debug, Default)]
struct HostRoutes {
    /// Config order within each kind.
    exact: Vec<Arc<Route>>,
    regex: Vec<Arc<Route>>,
    /// Longest prefix first; ties keep config order.
    prefix: Vec<Arc<Route>>,
}

// === impl RouteTable ===

impl RouteTable {
    pub fn new(config: &Config) -> Self {
        Self::from_routes(&config.routes)
    }

    pub fn from_routes(routes: &[Arc<Route>]) -> Self {
        let mut table = RouteTable::default();
        for route in routes {
            for pattern in &route.hosts {
                let group = match pattern {
                    HostPattern::Exact(name) => table.exact.entry(name.clone()).or_default(),
                    HostPattern::WildcardSuffix(suffix) => {
                        match table.wildcard.iter().position(|(s, _)| s == suffix) {
                            Some(i) => &mut table.wildcard[i].1,
                            None => {
                                table.wildcard.push((suffix.clone(), HostRoutes::default()));
                                let last = table.wildcard.len() - 1;
                                &mut table.wildcard[last].1
                            }
                        }
                    }
                    HostPattern::Any => table.any.get_or_insert_with(HostRoutes::default),
                };
                group.push(route);
            }
        }
        // Stable sorts: equal lengths keep config order.
        table
            .wildcard
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        for group in table
            .exact
            .values_mut()
            .chain(table.wildcard.iter_mut().map(|(_, g)| g))
            .chain(table.any.iter_mut())
        {
            group.prefix.sort_by_key(|r| match &r.path {
                PathMatch::Prefix(p) => std::cmp::Reverse(p.len()),
                _ => std::cmp::Reverse(0),
            });
        }
        table
    }

    /// Pick the route for `host` (already normalised: lower case, no port)
    /// and `path` (without the query).
    pub fn resolve(&self, host: &str, path: &str) -> RouteMatch {
        let Some(group) = self.host_routes(host) else {
            return RouteMatch::UnknownHost;
        };
        match group.resolve(path) {
            Some(route) => RouteMatch::Found(route.clone()),
            None => RouteMatch::NoPathMatch,
        }
    }

    fn host_routes(&self, host: &str) -> Option<&HostRoutes> {
        if let Some(group) = self.exact.get(host) {
            return Some(group);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, group)| group)
            .or(self.any.as_ref())
    }
}

// === impl HostRoutes ===

impl HostRoutes {
    fn push(&mut self, route: &Arc<Route>) {
        let list = match route.path {
            PathMatch::Exact(_) => &mut self.exact,
            PathMatch::Regex(_) => &mut self.regex,
            PathMatch::Prefix(_) => &mut self.prefix,
        };
        list.push(route.clone());
    }

    fn resolve(&self, path: &str) -> Option<&Arc<Route>> {
        let exact = self.exact.iter().find(|r| match &r.path {
            PathMatch::Exact(p) => p == path,
            _ => false,
        });
        let regex = || {
            self.regex.iter().find(|r| match &r.path {
                PathMatch::Regex(re) => re.is_match(path),
                _ => false,
            })
        };
        let prefix = || {
            self.prefix.iter().find(|r| match &r.path {
                PathMatch::Prefix(p) => path.starts_with(p.as_str()),
                _ => false,
            })
        };
        exact.or_else(regex).or_else(prefix)
    }
}

/// Why a request's host is refused (the client gets 400, as from nginx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("HTTP/1.1 request without a Host header")]
    Missing,
    #[error("more than one Host header")]
    Repeated,
    #[error("invalid Host header (only a host name or address and a port)")]
    Invalid,
}

/// Check the request's host before routing: HTTP/1.1 must name one
/// (RFC 9112 §3.2), once, and a host is a name or an address with an
/// optional port: no userinfo (`evil@site.test`), path or spaces, so what
/// is routed on is exactly what an upstream is sent.
pub fn check_host<B>(req: &http::Request<B>) -> Result<(), HostError> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Repeated);
    }
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    match (authority, first) {
        (None, None) if req.version() == http::Version::HTTP_11 => Err(HostError::Missing),
        (None, None) => Ok(()),
        (Some(authority), header) => {
            valid_host(authority)?;
            header.map_or(Ok(()), |h| valid_host(h.as_bytes()))
        }
        (None, Some(header)) => valid_host(header.as_bytes()),
    }
}

/// `name[:port]`, `a.b.c.d[:port]` or `[v6][:port]`.
fn valid_host(raw: &[u8]) -> Result<(), HostError> {
    let (host, port) = if raw.first() == Some(&b'[') {
        let end = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::Invalid)?;
        let inside = &raw[1..end];
        if inside.is_empty()
            || !inside
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(HostError::Invalid);
        }
        (&raw[..=end], &raw[end + 1..])
    } else {
        match raw.iter().position(|&b| b == b':') {
            Some(colon) => (&raw[..colon], &raw[colon..]),
            None => (raw, &raw[raw.len()..]),
        }
    };
    let name_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    let port_ok = port.is_empty()
        || (port.len() > 1 && port.len() <= 6 && port[1..].iter().all(u8::is_ascii_digit));
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(HostError::Invalid)
    }
}

/// The request's host as routing sees it: from the URI authority (HTTP/2
/// `:authority`, or an HTTP/1.1 absolute-form target), else the `Host`
/// header; port and a trailing dot stripped, lower case. "" when absent.
pub fn request_host<B>(req: &http::Request<B>) -> String {
    let raw = match req.uri().authority() {
        Some(authority) => authority.as_str(),
        None => req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    normalize_host(raw)
}

/// `Example.COM:8080` -> `example.com`; `[::1]:80` -> `[::1]`; userinfo dropped.
pub fn normalize_host(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.rsplit_once('@').map_or(raw, |(_, host)| host);
    let host = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        raw.split_once(':').map_or(raw, |(host, _)| host)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_check(version: http::Version, target: &str, hosts: &[&str]) -> Result<(), HostError> {
        let mut req = http::Request::builder().version(version).uri(target);
        for h in hosts {
            req = req.header(http::header::HOST, *h);
        }
        check_host(&req.body(()).unwrap())
    }

    #[test]
    fn hosts_are_checked_as_nginx_does() {
        use http::Version;
        let ok = |hosts: &[&str]| host_check(Version::HTTP_11, "/", hosts);
        for host in [
            "site.test",
            "site.test:8080",
            "127.0.0.1:80",
            "[::1]:8080",
            "[::1]",
            "a_b.test.",
        ] {
            assert_eq!(ok(&[host]), Ok(()), "{host}");
        }
        assert_eq!(ok(&[]), Err(HostError::Missing));
        assert_eq!(host_check(Version::HTTP_10, "/", &[]), Ok(()));
        assert_eq!(ok(&["a.test", "b.test"]), Err(HostError::Repeated));
        for host in [
            "evil@site.test",
            "site.test/x",
            "site test",
            "",
            "site.test:",
            "site.test:80a",
            "[::1",
            "[zz]",
        ] {
            assert_eq!(ok(&[host]), Err(HostError::Invalid), "{host:?}");
        }
        // HTTP/2's :authority (or an absolute-form target) stands for Host.
        assert_eq!(
            host_check(Version::HTTP_2, "http://site.test/", &[]),
            Ok(())
        );
        assert_eq!(
            host_check(Version::HTTP_11, "http://evil@site.test/", &[]),
            Err(HostError::Invalid)
        );
    }
    use crate::config::model::{
        ErrorPagesFor, FailurePolicy, RouteName, Upstream, UpstreamKind, UpstreamName,
    };
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn route(name: &str, hosts: &[&str], path: PathMatch) -> Arc<Route> {
        let hosts = hosts
            .iter()
            .map(|h| match *h {
                "*" => HostPattern::Any,
                h if h.starts_with("*.") => HostPattern::WildcardSuffix(h[1..].to_string()),
                h => HostPattern::Exact(h.to_string()),
            })
            .collect();
        Arc::new(Route {
            name: RouteName(name.to_string()),
            hosts,
            path,
            upstream: Arc::new(Upstream {
                name: UpstreamName("u".into()),
                kind: UpstreamKind::Static {
                    root: "/nonexistent".into(),
                },
            }),
            max_body_size: 1024,
            request_buffering: true,
            request_buffer_size: 64 << 10,
            plugin_failure: FailurePolicy::Closed,
            error_pages: BTreeMap::new(),
            error_pages_for: ErrorPagesFor::Upstream,
            internal: vec![],
            upgrades: vec!["websocket".into()],
            plugins: vec![],
            hook_timeout: Duration::from_millis(50),
            memory_limit: 1 << 20,
            cache: None,
            https_redirect: false,
        })
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.into())
    }

    fn regex(p: &str) -> PathMatch {
        PathMatch::Regex(regex::Regex::new(p).expect("test regex"))
    }

    fn name_of(m: RouteMatch) -> String {
        match m {
            RouteMatch::Found(r) => r.name.0.clone(),
            RouteMatch::UnknownHost => "<unknown host>".into(),
            RouteMatch::NoPathMatch => "<no path>".into(),
        }
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let table = RouteTable::from_routes(&[
            route("any", &["*"], prefix("/")),
            route("wild", &["*.example.com"], prefix("/")),
            route("exact", &["www.example.com"], prefix("/")),
        ]);
        assert_eq!(name_of(table.resolve("www.example.com", "/")), "exact");
        assert_eq!(name_of(table.resolve("api.example.com", "/")), "wild");
        assert_eq!(name_of(table.resolve("a.b.example.com", "/")), "wild");
        assert_eq!(name_of(table.resolve("example.com", "/")), "any");
        assert_eq!(name_of(table.resolve("other.org", "/")), "any");
    }

    #[test]
    fn longest_wildcard_suffix_wins() {
        let table = RouteTable::from_routes(&[
            route("short", &["*.example.com"], prefix("/")),
            route("long", &["*.api.example.com"], prefix("/")),
        ]);
        assert_eq!(name_of(table.resolve("v1.api.example.com", "/")), "long");
        assert_eq!(name_of(table.resolve("api.example.com", "/")), "short");
    }

    #[test]
    fn unknown_host_without_catch_all() {
        let table = RouteTable::from_routes(&[route("a", &["a.com"], prefix("/"))]);
        assert!(matches!(
            table.resolve("b.com", "/"),
            RouteMatch::UnknownHost
        ));
        assert!(matches!(table.resolve("", "/"), RouteMatch::UnknownHost));
        // The wildcard does not match its bare domain.
        let table = RouteTable::from_routes(&[route("w", &["*.a.com"], prefix("/"))]);
        assert!(matches!(
            table.resolve("a.com", "/"),
            RouteMatch::UnknownHost
        ));
    }

    #[test]
    fn host_chosen_first_then_path_like_nginx_servers() {
        // a.com names only /api, so /other on a.com is a 404 even though the
        // catch-all host has "/".
        let table = RouteTable::from_routes(&[
            route("api", &["a.com"], prefix("/api")),
            route("fallback", &["*"], prefix("/")),
        ]);
        assert_eq!(name_of(table.resolve("a.com", "/api/x")), "api");
        assert!(matches!(
            table.resolve("a.com", "/other"),
            RouteMatch::NoPathMatch
        ));
        assert_eq!(name_of(table.resolve("b.com", "/other")), "fallback");
    }

    #[test]
    fn exact_path_beats_regex_beats_prefix() {
        let table = RouteTable::from_routes(&[
            route("prefix", &["h"], prefix("/static")),
            route("regex", &["h"], regex(r"\.png$")),
            route("exact", &["h"], exact("/static/logo.png")),
        ]);
        assert_eq!(name_of(table.resolve("h", "/static/logo.png")), "exact");
        assert_eq!(name_of(table.resolve("h", "/static/other.png")), "regex");
        assert_eq!(name_of(table.resolve("h", "/static/app.js")), "prefix");
        assert!(matches!(
            table.resolve("h", "/nope"),
            RouteMatch::NoPathMatch
        ));
    }

    #[test]
    fn first_matching_regex_in_config_order_wins() {
        let table = RouteTable::from_routes(&[
            route("first", &["h"], regex("^/a")),
            route("second", &["h"], regex("^/ab")),
        ]);
        assert_eq!(name_of(table.resolve("h", "/abc")), "first");
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let table = RouteTable::from_routes(&[
            route("root", &["h"], prefix("/")),
            route("api", &["h"], prefix("/api/")),
            route("api-v2", &["h"], prefix("/api/v2/")),
        ]);
        assert_eq!(name_of(table.resolve("h", "/api/v2/users")), "api-v2");
        assert_eq!(name_of(table.resolve("h", "/api/v1/users")), "api");
        assert_eq!(name_of(table.resolve("h", "/index.html")), "root");
        // An exact path only matches itself.
        let table = RouteTable::from_routes(&[route("x", &["h"], exact("/x"))]);
        assert!(matches!(table.resolve("h", "/x/"), RouteMatch::NoPathMatch));
    }

    #[test]
    fn one_route_with_several_hosts() {
        let table =
            RouteTable::from_routes(&[route("site", &["localhost", "127.0.0.1"], prefix("/"))]);
        assert_eq!(name_of(table.resolve("localhost", "/")), "site");
        assert_eq!(name_of(table.resolve("127.0.0.1", "/a")), "site");
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("user@host:1"), "host");
        assert_eq!(normalize_host(""), "");
    }

    #[test]
    fn host_from_authority_or_header() {
        let req = http::Request::builder()
            .uri("/x")
            .header("host", "WWW.Example.com:443")
            .body(())
            .expect("request");
        assert_eq!(request_host(&req), "www.example.com");
        // HTTP/2 requests carry :authority in the URI and no Host header.
        let req = http::Request::builder()
            .uri("https://h2.example.com/x")
            .body(())
            .expect("request");
        assert_eq!(request_host(&req), "h2.example.com");
        let req = http::Request::builder()
            .uri("/x")
            .body(())
            .expect("request");
        assert_eq!(request_host(&req), "");
    }
}
