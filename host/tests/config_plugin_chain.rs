//! Plugin chains from a real config on the real runtime, with the real
//! header-rewrite and fault-injector components (built by `make plugins`):
//! loading, edits flowing between plugins, reverse response order, the log
//! hook, fail policies on real traps, and load errors naming route and plugin.

use std::path::{Path, PathBuf};

use tailgate::config::model::RouteName;
use tailgate::plugin_chain::{
    apply_to_map, ChainLoadError, LogDecision, PluginChains, RequestDecision,
};
use tailgate_runtime::{
    Header, HookSet, LogRecord, RequestHead, ResponseHead, Runtime, RuntimeConfig,
};

fn plugin_wasm(stem: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(format!("{stem}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

/// A config file in its own scratch folder (with a `www/` for the static
/// upstream), loaded and validated.
fn load_config(test: &str, routes: &str) -> tailgate::config::Config {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("config-plugin-chain-{test}"));
    std::fs::create_dir_all(dir.join("www")).expect("scratch folder");
    let text = format!(
        r#"
[plugin_runtime]
cache_dir = "{cache}"
hook_timeout = "200ms"
max_instances = 32

[plugins]
header-rewrite = "{hr}"
fault-injector = "{fi}"

[upstreams.site]
static = "www"
{routes}"#,
        cache = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("plugin-chain-cache")
            .display(),
        hr = plugin_wasm("header_rewrite").display(),
        fi = plugin_wasm("fault_injector").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    tailgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn runtime(config: &tailgate::config::Config) -> Runtime {
    let mut rc = RuntimeConfig::new(&config.runtime.cache_dir);
    rc.max_instances = config.runtime.max_instances;
    Runtime::new(rc).expect("plugin runtime")
}

fn request(route: &str) -> RequestHead {
    RequestHead {
        scheme: tailgate_runtime::Scheme::Https,
        host: Some("example.com".into()),
        path: Some("/page".into()),
        query: None,
        headers: Some(vec![Header {
            name: "user-agent".into(),
            value: b"test-agent".to_vec(),
        }]),
        client_ip: tailgate_runtime::IpAddress::V4(0xC000_0201),
        route: Some(route.into()),
        request_id: Some("req-1".into()),
        ..RequestHead::default()
    }
}

fn header(headers: &[Header], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

fn route(name: &str, plugins: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\nhosts = [\"{name}.example.com\"]\npath = \"/\"\nupstream = \"site\"\n{plugins}"
    )
}

const REWRITE_THEN_INJECTOR: &str = r#"
[[routes.plugins]]
plugin = "header-rewrite"
[routes.plugins.config]
request.set = { "X-Tailgate-Route" = "site" }
response.set = { "X-Frame-Options" = "DENY" }
response.remove = ["x-fault-injector"]

[[routes.plugins]]
plugin = "fault-injector"
"#;

#[test]
fn a_real_chain_passes_edits_along_and_answers_responses_in_reverse() {
    let config = load_config("order", &route("site", REWRITE_THEN_INJECTOR));
    let runtime = runtime(&config);
    let chains = PluginChains::load(&config, &runtime).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(chains.loaded_plugins(), 2);
    let chain = chains
        .for_route(&RouteName("site".into()))
        .expect("site chain");
    assert!(chain.has_hook(HookSet::LOG));

    let mut head = request("site");
    let RequestDecision::Continue { delay_ms, vars, .. } = run(chain.on_request(&mut head)) else {
        panic!("expected Continue");
    };
    assert_eq!(delay_ms, 0);
    assert!(vars
        .iter()
        .any(|v| v.name == "fault_injector" && v.value == "ok"));
    assert_eq!(
        header(head.headers(), "x-tailgate-route").as_deref(),
        Some("site")
    );
    // The fault-injector ran second and saw header-rewrite's header.
    assert_eq!(
        header(head.headers(), "x-seen-headers").as_deref(),
        Some("2")
    );

    // Reverse order: the fault-injector sets its header first, then
    // header-rewrite (first in the chain, last to run) removes it.
    let mut resp = ResponseHead {
        status: 200,
        headers: Some(vec![]),
        host_generated: false,
    };
    let edits = run(chain.on_response(&mut head, &mut resp)).expect("response hooks");
    // The edits, in order, on the response that goes on the wire.
    let mut sent = http::HeaderMap::new();
    apply_to_map(&mut sent, &edits);
    assert_eq!(
        sent.get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
    assert!(!sent.contains_key("x-fault-injector"));

    match run(chain.on_log(&mut log_record("site"))) {
        LogDecision::Line(line) => assert!(
            line.line.starts_with("GET /page 200 req-1"),
            "{}",
            line.line
        ),
        other => panic!("expected the fault-injector's line, got {other:?}"),
    }
}

#[test]
fn real_traps_follow_the_entry_policy() {
    let trap = |policy: &str| {
        format!(
            "\n[[routes.plugins]]\nplugin = \"fault-injector\"\non_failure = \"{policy}\"\nconfig = {{ mode = \"trap\", hook = \"request\" }}\n"
        )
    };
    let routes = route("closed", &trap("closed")) + &route("open", &trap("open"));
    let config = load_config("policy", &routes);
    let runtime = runtime(&config);
    let chains = PluginChains::load(&config, &runtime).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        chains.loaded_plugins(),
        2,
        "each plugin file is loaded once"
    );

    let closed = chains
        .for_route(&RouteName("closed".into()))
        .expect("closed");
    match run(closed.on_request(&mut request("closed"))) {
        RequestDecision::Failed { plugin, fault } => {
            assert_eq!(plugin, "fault-injector");
            assert!(fault.to_string().contains("trap"), "{fault}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let open = chains.for_route(&RouteName("open".into())).expect("open");
    let mut head = request("open");
    assert!(matches!(
        run(open.on_request(&mut head)),
        RequestDecision::Continue { .. }
    ));
    assert_eq!(header(head.headers(), "x-fault-injector"), None);
}

#[test]
fn a_rejected_route_config_names_route_and_plugin() {
    let plugins = r#"
[[routes.plugins]]
plugin = "fault-injector"
config = { mode = "reject", message = "no thanks" }
"#;
    let config = load_config("reject", &route("picky", plugins));
    let err = PluginChains::load(&config, &runtime(&config))
        .err()
        .expect("a rejected config");
    assert!(matches!(err, ChainLoadError::Configure(_)), "{err:?}");
    let text = err.to_string();
    for part in ["picky", "fault-injector", "no thanks"] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

#[test]
fn fixed_edits_that_cannot_go_on_the_wire_reject_the_config() {
    for (fixed, bad) in [
        (r#"fixed_request = { "bad name" = "x" }"#, "bad name"),
        (r#"fixed_response = { "x-ok" = "a\u0007b" }"#, "x-ok"),
    ] {
        let plugins = format!(
            "\n[[routes.plugins]]\nplugin = \"fault-injector\"\n[routes.plugins.config]\n{fixed}\n"
        );
        let config = load_config("fixed", &route("fixed", &plugins));
        let err = PluginChains::load(&config, &runtime(&config))
            .err()
            .expect("invalid fixed edits");
        assert!(
            matches!(err, ChainLoadError::InvalidFixedEdits { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        for part in ["route fixed", "plugin fault-injector", "fixed edits", bad] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }
}

#[test]
fn a_missing_plugin_file_names_the_plugin_and_path() {
    let mut config = load_config("missing", &route("site", ""));
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-plugin.wasm");
    config.plugins.insert(
        tailgate::config::model::PluginName("ghost".into()),
        missing.clone(),
    );
    let err = PluginChains::load(&config, &runtime(&config))
        .err()
        .expect("a missing file");
    assert!(matches!(err, ChainLoadError::Load(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("ghost") && text.contains(&missing.display().to_string()),
        "{text}"
    );
}

/// Drives a chain call with real plugins to its end (a guest may yield
/// at an epoch tick).
fn run<F: std::future::Future>(call: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(call)
}

fn log_record(route: &str) -> LogRecord {
    LogRecord {
        time_unix_ms: 1_735_689_600_000,
        client_ip: tailgate_runtime::IpAddress::V4(0xC000_0201),
        peer_ip: tailgate_runtime::IpAddress::V4(0xC000_0201),
        peer_port: 5000,
        scheme: tailgate_runtime::Scheme::Https,
        host: Some("example.com".into()),
        uri: Some("/page".into()),
        status: 200,
        bytes_sent: 5,
        bytes_received: 0,
        request_time: 0.001,
        upstream_response_time: None,
        upstream_addr: None,
        route: Some(route.into()),
        request_id: Some("req-1".into()),
        user_agent: Some("test-agent".into()),
        referer: Some(String::new()),
        http_host: Some(String::new()),
        path: None,
        request_headers: Some(vec![]),
        response_headers: Some(vec![]),
        vars: Some(vec![]),
        ..LogRecord::default()
    }
}
