//! The one-screen start-up summary printed to stderr once the listeners are
//! bound, before the first request: listeners, the admin API, each route
//! with its plugin chain and upstream, the upstreams, and the telemetry
//! targets. (Plugins that had to be compiled were logged while loading.)

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::config::model::{Config, HostPattern, PathMatch, UpstreamKind};
use crate::plugin_chain::PluginChains;

/// The summary's text, built from the config being served.
pub struct StartupSummary {
    config_file: String,
    body: String,
}

impl StartupSummary {
    pub fn new(config: &Config, chains: &PluginChains) -> Self {
        let mut body = String::new();
        let _ = writeln!(
            body,
            "  routes ({}), {} plugin components loaded:",
            config.routes.len(),
            chains.loaded_plugins()
        );
        for route in &config.routes {
            let hosts: Vec<String> = route.hosts.iter().map(host_text).collect();
            let plugins: Vec<&str> = route.plugins.iter().map(|p| p.plugin.as_str()).collect();
            let plugins = if plugins.is_empty() {
                "no plugins".to_owned()
            } else {
                format!("plugins: {}", plugins.join(" -> "))
            };
            let _ = writeln!(
                body,
                "    {:<16} {} {} -> {} ({plugins})",
                route.name.as_str(),
                hosts.join(","),
                path_text(&route.path),
                route.upstream.name,
            );
        }
        let _ = writeln!(body, "  upstreams ({}):", config.upstreams.len());
        for (name, upstream) in &config.upstreams {
            let target = match &upstream.kind {
                UpstreamKind::Static { root } => format!("static files in {}", root.display()),
                UpstreamKind::Http(http) => http.url.to_string(),
            };
            let _ = writeln!(body, "    {:<16} {target}", name.as_str());
        }
        let telemetry = &config.telemetry;
        let remote_write = telemetry
            .remote_write
            .as_ref()
            .map_or("off".to_owned(), |rw| without_credentials(&rw.endpoint.url));
        let loki = telemetry.loki.as_ref().map_or("off".to_owned(), |loki| {
            without_credentials(&loki.endpoint.url)
        });
        let _ = writeln!(
            body,
            "  telemetry: metrics {}_* at the admin api /metrics; remote_write {remote_write}; loki {loki}",
            telemetry.metrics_prefix
        );
        StartupSummary {
            config_file: config.source.display().to_string(),
            body,
        }
    }

    /// Print the summary with the bound addresses.
    pub fn print(&self, listeners: &[(&str, SocketAddr)], admin: SocketAddr) {
        eprint!("{}", self.text(listeners, admin));
    }

    fn text(&self, listeners: &[(&str, SocketAddr)], admin: SocketAddr) -> String {
        let listeners: Vec<String> = listeners
            .iter()
            .map(|(scheme, a)| format!("{scheme}://{a}"))
            .collect();
        format!(
            "tailgate {} serving {}\n  listeners: {}\n  admin api: http://{admin} (POST /reload, GET /healthz)\n{}",
            env!("CARGO_PKG_VERSION"),
            self.config_file,
            listeners.join(", "),
            self.body
        )
    }
}

fn host_text(host: &HostPattern) -> String {
    match host {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::WildcardSuffix(suffix) => format!("*{suffix}"),
        HostPattern::Any => "*".to_owned(),
    }
}

fn path_text(path: &PathMatch) -> String {
    match path {
        PathMatch::Exact(p) => format!("={p}"),
        PathMatch::Prefix(p) => format!("{p}*"),
        PathMatch::Regex(r) => format!("~{}", r.as_str()),
    }
}

/// A push URL as `scheme://host[:port]/path`, never with user info.
fn without_credentials(url: &http::Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("http");
    let host = url.host().unwrap_or("?");
    let port = url.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}", url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_listeners_routes_plugins_and_upstreams() {
        let path = std::env::temp_dir().join("config.toml");
        let config = crate::config::parse(
            r#"
[upstreams.files]
static = "."
[upstreams.app]
url = "http://app.tail.ts.net:3000"
[[routes]]
name = "site"
hosts = ["example.com", "*.example.org"]
path = "/"
upstream = "files"
[[routes]]
name = "api"
hosts = ["*"]
path_exact = "/api"
upstream = "app"
"#,
            &path,
        )
        .expect("config");
        let summary = StartupSummary::new(&config, &PluginChains::from_chains(vec![]));
        let text = summary.text(
            &[
                ("http", "127.0.0.1:8080".parse().expect("addr")),
                ("https", "127.0.0.1:8443".parse().expect("addr")),
            ],
            "127.0.0.1:12345".parse().expect("addr"),
        );
        assert!(
            text.contains(&format!("serving {}", path.display())),
            "{text}"
        );
        assert!(
            text.contains("listeners: http://127.0.0.1:8080, https://127.0.0.1:8443"),
            "{text}"
        );
        assert!(text.contains("admin api: http://127.0.0.1:12345"), "{text}");
        assert!(
            text.contains("site             example.com,*.example.org /* -> files (no plugins)"),
            "{text}"
        );
        assert!(text.contains("api              * =/api -> app"), "{text}");
        assert!(
            text.contains("app              http://app.tail.ts.net:3000/"),
            "{text}"
        );
        assert!(text.contains("remote_write off; loki off"), "{text}");
        assert!(text.lines().count() < 25, "fits one screen: {text}");
    }

    #[test]
    fn push_urls_are_shown_without_credentials() {
        let url: http::Uri = "https://user:secret@logs.example.com/loki/api/v1/push"
            .parse()
            .expect("uri");
        assert_eq!(
            without_credentials(&url),
            "https://logs.example.com/loki/api/v1/push"
        );
    }
}
