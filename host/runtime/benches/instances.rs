//! Per-call cost of a plugin hook with a fresh instance per call versus a
//! reused, already-configured instance, on 1 and 2 threads. Uses the real
//! fault-injector plugin in `ok` mode and a request with 8 headers.
//!
//! Run: `make plugins` (or `cd plugins && cargo build --release`), then
//! `cargo bench -p tailgate-runtime`. Numbers and the decision they led to
//! are in `docs/plugin-runtime.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tailgate_runtime::{
    ConfiguredPlugin, Header, Limits, RequestAction, RequestHead, Runtime, RuntimeConfig,
};

fn wasm_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release/fault_injector.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

fn request() -> RequestHead {
    let header = |name: &str, value: &str| Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    };
    RequestHead {
        method: tailgate_runtime::Method::Get,
        scheme: tailgate_runtime::Scheme::Https,
        host: Some("example.com".into()),
        path: Some("/articles/2024/some-page".into()),
        query: Some("ref=home".into()),
        headers: Some(vec![
            header("host", "example.com"),
            header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            ),
            header("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            header("accept-language", "en-US,en;q=0.5"),
            header("accept-encoding", "gzip, deflate, br"),
            header("referer", "https://example.com/"),
            header("cookie", "session=0123456789abcdef; theme=dark"),
            header("x-forwarded-for", "203.0.113.7"),
        ]),
        client_ip: tailgate_runtime::IpAddress::V4(0xCB00_7107),
        route: Some("bench".into()),
        request_id: Some("01J0000000000000000000000".into()),
    }
}

/// A configured fault-injector (ok mode) on its own runtime.
fn configured(max_calls_per_instance: u32, cache: &std::path::Path) -> (Runtime, ConfiguredPlugin) {
    let mut config = RuntimeConfig::new(cache);
    config.max_calls_per_instance = max_calls_per_instance;
    let runtime = Runtime::new(config).expect("runtime");
    let plugin = runtime
        .load("fault-injector", &wasm_path())
        .expect("load plugin");
    let limits = Limits {
        hook_timeout: Duration::from_millis(50),
        memory_bytes: 16 << 20,
    };
    let configured = runtime
        .configure(&plugin, "bench", r#"{"mode":"ok"}"#, limits)
        .expect("configure");
    (runtime, configured)
}

fn call(plugin: &ConfiguredPlugin, req: &mut RequestHead) {
    match plugin.on_request(req) {
        Ok(RequestAction::Continue(edits)) => {
            std::hint::black_box(edits);
        }
        other => panic!("unexpected result: {other:?}"),
    }
}

/// Wall time of `iters` calls spread over `threads` threads.
fn run_threads(plugin: &Arc<ConfiguredPlugin>, threads: u64, iters: u64) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let plugin = plugin.clone();
            scope.spawn(move || {
                let mut req = request();
                for _ in 0..per_thread {
                    call(&plugin, &mut req);
                }
            });
        }
    });
    started.elapsed()
}

fn instances(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("cache dir");
    let mut group = c.benchmark_group("on_request_8_headers");
    for (name, max_calls) in [("fresh", 1), ("reused", u32::MAX)] {
        let (_runtime, plugin) = configured(max_calls, cache.path());
        let plugin = Arc::new(plugin);
        let mut req = request();
        group.bench_function(format!("{name}/1-thread"), |b| {
            b.iter(|| call(&plugin, &mut req))
        });
        group.bench_function(format!("{name}/2-threads"), |b| {
            b.iter_custom(|iters| run_threads(&plugin, 2, iters))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = instances
}
criterion_main!(benches);
