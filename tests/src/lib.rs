//! Support code for Tailgate's end-to-end tests: starts the real `tailgate`
//! binary on a generated config, real upstream servers on loopback, and a
//! small HTTP client. Tests live in `tests/tests/*.rs`.

pub mod cache_upstream;
pub mod client;
pub mod localapi_standin;
pub mod loki_standin;
pub mod metrics_scrape;
pub mod microsocks;
pub mod process;
pub mod prometheus;
pub mod redis_server;
pub mod test_pki;
pub mod upstream;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a built plugin component, e.g. `plugin_wasm("header_rewrite")`.
/// Panics with a clear message when the plugins were not built.
pub fn plugin_wasm(crate_file_stem: &str) -> PathBuf {
    let path = repo_root()
        .join("plugins/target/wasm32-wasip2/release")
        .join(format!("{crate_file_stem}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make plugins` (or `make test`) first",
        path.display()
    );
    path
}

/// The `[server]`, `[admin]` and `[plugin_runtime]` sections every test
/// config starts with: one listener and the admin API on free loopback
/// ports, the shared plugin cache.
pub fn base_config(extra_server: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
workers = 2
{extra_server}

[admin]
listen = "127.0.0.1:0"

[plugin_runtime]
cache_dir = "{cache}"
hook_timeout = "100ms"
memory_limit = "16MiB"

[plugins]
header-rewrite = "{hr}"
fault-injector = "{fi}"
rate-limit = "{rl}"
log-shape = "{ls}"
"#,
        cache = process::test_cache_dir().display(),
        hr = plugin_wasm("header_rewrite").display(),
        fi = plugin_wasm("fault_injector").display(),
        rl = plugin_wasm("rate_limit").display(),
        ls = plugin_wasm("log_shape").display(),
    )
}

/// Poll `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The upstream `app` at `upstream_url` and the route `app` (host
/// `app.test`, every path) to it: the config most tests serve. Route keys
/// and `[[routes.plugins]]` tables can follow it directly.
pub fn app_route(upstream_url: &str) -> String {
    format!(
        r#"
[upstreams.app]
url = "{upstream_url}"

[[routes]]
name = "app"
hosts = ["app.test"]
path = "/"
upstream = "app"
"#
    )
}
