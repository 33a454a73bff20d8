//! The repository's default `config.toml` loads and means what its comments
//! say: the landing page in `www/` on 127.0.0.1:8080, through header-rewrite.

use std::path::Path;
use std::time::Duration;

use tailgate::config::model::{FailurePolicy, HostPattern, PathMatch, UnknownHost, UpstreamKind};

#[test]
fn the_default_config_loads_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
    let config = tailgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let repo = path.parent().expect("repository root");

    assert_eq!(config.server.listen, ["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(
        config.server.client_ip_header.as_ref().map(|h| h.as_str()),
        Some("fly-client-ip")
    );
    assert_eq!(config.server.trusted_proxies.len(), 2);
    assert_eq!(
        config.server.unknown_host,
        UnknownHost::Status(http::StatusCode::NOT_FOUND)
    );
    assert_eq!(config.runtime.hook_timeout, Duration::from_millis(50));
    assert_eq!(config.runtime.memory_limit, 16 << 20);
    assert_eq!(config.runtime.cache_dir, repo.join(".tailgate/cache"));

    let [route] = config.routes.as_slice() else {
        panic!("expected one route, got {}", config.routes.len());
    };
    assert_eq!(route.name.as_str(), "site");
    assert_eq!(
        route.hosts,
        [
            HostPattern::Exact("localhost".into()),
            HostPattern::Exact("127.0.0.1".into())
        ]
    );
    assert!(matches!(&route.path, PathMatch::Prefix(p) if p == "/"));
    assert!(
        matches!(&route.upstream.kind, UpstreamKind::Static { root } if *root == repo.join("www"))
    );
    assert_eq!(route.max_body_size, 1 << 20);
    assert_eq!(route.plugin_failure, FailurePolicy::Closed);
    assert_eq!(
        route.error_pages.keys().copied().collect::<Vec<_>>(),
        [502, 503, 504]
    );
    let page = &route.error_pages[&502];
    assert!(page.content_type.starts_with("text/html"));
    assert_eq!(page.body, std::fs::read(repo.join("www/50x.html")).unwrap());

    let [plugin] = route.plugins.as_slice() else {
        panic!("expected one plugin entry");
    };
    assert_eq!(plugin.plugin.as_str(), "header-rewrite");
    assert_eq!(plugin.on_failure, FailurePolicy::Closed);
    assert_eq!(
        config.plugins[&plugin.plugin],
        repo.join("plugins/target/wasm32-wasip2/release/header_rewrite.wasm")
    );
    let json: serde_json::Value = serde_json::from_str(&plugin.config_json).unwrap();
    assert_eq!(json["response"]["set"]["X-Frame-Options"], "DENY");
    assert_eq!(json["response"]["remove"][0], "Server");
    assert_eq!(json["response"]["always"], true);
    assert_eq!(json["deny"][0]["status"], 403);
    assert_eq!(json["redirect"][0]["location"], "{scheme}://{host}/$1");
}
