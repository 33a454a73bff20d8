//! The repository's default `config.toml` loads and means what its comments
//! say: on 127.0.0.1:8080, the `site` route caches and runs the three core
//! plugins in front of `origin` (Tailgate itself serving `www/`).

use std::path::Path;
use std::time::Duration;

use tailgate::config::model::{
    ErrorPagesFor, FailurePolicy, HostHeader, HostPattern, PathMatch, UnknownHost, UpstreamKind,
};

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

    assert_eq!(config.cache.max_size, 64 << 20);
    assert_eq!(config.tailnet.allow.as_ref().map(Vec::len), Some(1));

    let [site, origin] = config.routes.as_slice() else {
        panic!("expected two routes, got {}", config.routes.len());
    };

    // "origin": Tailgate itself serving www/ as origin.localhost, standing in
    // for a tailnet service.
    assert_eq!(origin.name.as_str(), "origin");
    assert_eq!(
        origin.hosts,
        [HostPattern::Exact("origin.localhost".into())]
    );
    assert!(
        matches!(&origin.upstream.kind, UpstreamKind::Static { root } if *root == repo.join("www"))
    );
    assert!(origin.plugins.is_empty());

    // "site": the public route, cached, through the three core plugins.
    assert_eq!(site.name.as_str(), "site");
    assert_eq!(
        site.hosts,
        [
            HostPattern::Exact("localhost".into()),
            HostPattern::Exact("127.0.0.1".into())
        ]
    );
    assert!(matches!(&site.path, PathMatch::Prefix(p) if p == "/"));
    let UpstreamKind::Http(up) = &site.upstream.kind else {
        panic!("the site's upstream is a URL upstream");
    };
    assert_eq!(up.url.to_string(), "http://127.0.0.1:8080/");
    assert_eq!(
        up.host_header,
        HostHeader::Set(http::HeaderValue::from_static("origin.localhost"))
    );
    let cache = site.cache.as_ref().expect("the site caches");
    assert_eq!(cache.valid.get(&200), Some(&Duration::from_secs(60)));
    assert_eq!(
        cache.status_header.as_ref().map(|h| h.as_str()),
        Some("x-cache-status")
    );
    assert_eq!(site.max_body_size, 1 << 20);
    assert_eq!(site.plugin_failure, FailurePolicy::Closed);
    assert_eq!(
        site.error_pages.keys().copied().collect::<Vec<_>>(),
        [429, 502, 503, 504]
    );
    assert_eq!(site.error_pages_for, ErrorPagesFor::All);
    assert_eq!(site.internal, ["/50x.html", "/429.html"]);
    let page = &site.error_pages[&502];
    assert!(page.content_type.starts_with("text/html"));
    assert_eq!(page.body, std::fs::read(repo.join("www/50x.html")).unwrap());

    let names: Vec<&str> = site.plugins.iter().map(|p| p.plugin.as_str()).collect();
    assert_eq!(names, ["rate-limit", "header-rewrite", "log-shape"]);
    for (plugin, file) in site
        .plugins
        .iter()
        .zip(["rate_limit", "header_rewrite", "log_shape"])
    {
        assert_eq!(plugin.on_failure, FailurePolicy::Closed);
        assert_eq!(
            config.plugins[&plugin.plugin],
            repo.join(format!("plugins/target/wasm32-wasip2/release/{file}.wasm"))
        );
    }
    let json = |i: usize| -> serde_json::Value {
        serde_json::from_str(&site.plugins[i].config_json).unwrap()
    };
    let limit = &json(0)["limits"][0];
    assert_eq!(limit["rate"], "5r/s");
    assert_eq!(limit["burst"], 10);
    let rewrite = json(1);
    assert_eq!(rewrite["response"]["set"]["X-Frame-Options"], "DENY");
    assert_eq!(rewrite["response"]["remove"][0], "Server");
    assert_eq!(rewrite["response"]["always"], true);
    assert_eq!(rewrite["deny"][0]["status"], 403);
    assert_eq!(
        rewrite["redirect"][0]["location"],
        "{scheme}://{http_host}/$1"
    );
    assert_eq!(json(2)["preset"], "nginx");

    // Lines no route takes are shaped by log-shape too.
    let [unrouted] = config.access_log.plugins.as_slice() else {
        panic!("expected one [access_log] plugin");
    };
    assert_eq!(unrouted.plugin.as_str(), "log-shape");
}
