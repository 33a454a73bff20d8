//! Shared by the runtime's integration tests: the real fault-injector
//! plugin, a runtime on a shared compile cache, requests, and captures of
//! logs and metrics.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tailgate_runtime::{
    Clock, ConfiguredPlugin, Header, HeaderEdit, Limits, LoadedPlugin, RequestAction, RequestEdits,
    RequestHead, Runtime, RuntimeConfig,
};

/// The fault-injector component, built by `make plugins`.
pub fn fault_injector_wasm() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release/fault_injector.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first (or `cd plugins && cargo build --release`)",
        path.display()
    );
    path
}

/// A compile cache shared by the tests of this build (saves compiling the
/// plugin in every test).
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("runtime-tests-cache")
}

pub fn config(max_calls_per_instance: u32) -> RuntimeConfig {
    let mut config = RuntimeConfig::new(shared_cache_dir());
    config.max_instances = 64;
    config.max_calls_per_instance = max_calls_per_instance;
    config
}

pub fn runtime() -> Runtime {
    Runtime::new(config(1000)).expect("runtime")
}

pub fn runtime_with_clock(clock: Arc<dyn Clock>) -> Runtime {
    Runtime::with_clock(config(1000), clock).expect("runtime")
}

pub fn limits() -> Limits {
    Limits {
        hook_timeout: Duration::from_millis(100),
        memory_bytes: 8 << 20,
    }
}

pub fn load(runtime: &Runtime, name: &str) -> Arc<LoadedPlugin> {
    runtime
        .load(name, &fault_injector_wasm())
        .expect("load fault-injector")
}

/// The fault-injector, loaded as `fault-injector` and configured for `route`.
pub fn configured(runtime: &Runtime, route: &str, config_json: &str) -> ConfiguredPlugin {
    let plugin = load(runtime, "fault-injector");
    runtime
        .configure(&plugin, route, config_json, limits())
        .expect("configure")
}

pub fn request(route: &str, path: &str, client_ip: &str) -> RequestHead {
    let header = |name: &str, value: &str| Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    };
    RequestHead {
        method: tailgate_runtime::Method::Get,
        scheme: tailgate_runtime::Scheme::Https,
        host: Some("example.com".into()),
        path: Some(path.into()),
        query: None,
        headers: Some(vec![
            header("host", "example.com"),
            header("user-agent", "runtime-tests/1.0"),
            header("accept", "*/*"),
        ]),
        client_ip: client_ip.parse::<std::net::IpAddr>().expect("ip").into(),
        route: Some(route.into()),
        request_id: Some("req-1".into()),
    }
}

/// The edits of a `continue`; panics on an answer.
pub fn continue_edits(action: RequestAction) -> RequestEdits {
    match action {
        RequestAction::Continue(edits) => edits,
        RequestAction::Respond(resp) => panic!("unexpected respond: {}", resp.status),
    }
}

/// The value of header edit `name`, as text.
pub fn edit<'a>(edits: &'a [HeaderEdit], name: &str) -> Option<&'a str> {
    edits
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| std::str::from_utf8(&e.value).ok())
}

thread_local! {
    static THREAD_LOG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes into the log buffer of the thread that logs.
struct ThreadLogWriter;

impl Write for ThreadLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        THREAD_LOG.with(|log| log.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged through tracing while `f` runs on this thread. One
/// global subscriber writes each thread's events to that thread's buffer
/// (scoped subscribers are unreliable while other test threads log).
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| ThreadLogWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("install test subscriber");
    });
    THREAD_LOG.with(|log| log.borrow_mut().clear());
    let result = f();
    let text = THREAD_LOG.with(|log| String::from_utf8_lossy(&log.borrow()).into_owned());
    (result, text)
}

/// One metric as read: name, labels, value.
type Reading = (
    String,
    Vec<(String, String)>,
    metrics_util::debugging::DebugValue,
);

/// The metrics `f` recorded, on a recorder of its own (the runtime made in
/// `f` registers its handles there).
pub fn metrics_of(f: impl FnOnce()) -> Metrics {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, f);
    Metrics::take(&snapshotter)
}

/// One reading of a debugging recorder (reading resets it, so take one).
pub struct Metrics(Vec<Reading>);

impl Metrics {
    pub fn take(snapshotter: &metrics_util::debugging::Snapshotter) -> Metrics {
        Metrics(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let key = key.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_string(), l.value().to_string()))
                        .collect();
                    (key.name().to_string(), labels, value)
                })
                .collect(),
        )
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a metrics_util::debugging::DebugValue> + 'a {
        self.0
            .iter()
            .filter(move |(n, have, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, _, value)| value)
    }

    /// Sum of the counters `name` having (at least) `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|v| match v {
                metrics_util::debugging::DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// All values recorded in the histograms `name` having `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|v| match v {
                metrics_util::debugging::DebugValue::Histogram(values) => {
                    values.iter().map(|f| f.into_inner()).collect::<Vec<_>>()
                }
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// The gauge `name` having `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).find_map(|v| match v {
            metrics_util::debugging::DebugValue::Gauge(g) => Some(g.into_inner()),
            _ => None,
        })
    }

    /// Label sets recorded for `name`.
    pub fn label_sets(&self, name: &str) -> Vec<Vec<(String, String)>> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, labels, _)| labels.clone())
            .collect()
    }
}
