//! The same state semantics on every backend: the real fault-injector's
//! `state` mode (counters, kv, sliding windows, set-if-absent,
//! compare-and-set, kv ttl, rate limiting) asserted alike on the local
//! backend, on `[state] backend = "redis"` in `exact` mode against a real
//! `redis-server` (started on a free loopback port, killed by PID; the
//! tests say they are skipped when it is not installed, see
//! scripts/install-test-deps.sh), and on a Redis that is down (every
//! decision falls back to the local state, no call fails).
//!
//! Time: rate limits and window events follow the runtime clock on every
//! backend (Redis is given the clock's `now`), so [`Fixture::advance`]
//! moves the `ManualClock` alone. TTLs (counters, kv) are kept by Redis on
//! its own clock, so [`Fixture::elapse`] also sleeps that long when Redis
//! keeps them, and the TTLs read back are asserted within a range.

mod common;

#[allow(dead_code)]
#[path = "../../../tests/src/redis_server.rs"]
mod redis_server;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use redis_server::RedisServer;
use tailgate_runtime::{
    ConfiguredPlugin, Consistency, Limits, ManualClock, RedisConfig, RequestAction, RequestEdits,
    ResponseHead, Runtime,
};

const START_MS: u64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    /// `exact` mode on a live redis-server.
    Redis,
    /// `exact` mode on a port nothing listens on.
    RedisDown,
}

/// A runtime on `backend`, its clock, and the redis-server it uses.
struct Fixture {
    backend: Backend,
    runtime: Runtime,
    clock: Arc<ManualClock>,
    _server: Option<RedisServer>,
}

fn redis_config(url: String, timeout: Duration) -> RedisConfig {
    RedisConfig {
        url,
        key_prefix: "test:".into(),
        timeout,
        pool_size: 2,
        consistency: Consistency::Exact,
    }
}

fn redis_server_installed() -> bool {
    std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Fixture {
    /// `None` (the test is skipped, saying so) when `backend` needs a
    /// redis-server that is not installed.
    fn new(backend: Backend) -> Option<Fixture> {
        let clock = Arc::new(ManualClock::new(START_MS));
        let mut config = config(1000);
        let server = match backend {
            Backend::Local => None,
            Backend::Redis => {
                if !redis_server_installed() {
                    eprintln!(
                        "skipped: redis-server is not installed (scripts/install-test-deps.sh)"
                    );
                    return None;
                }
                let server = RedisServer::start();
                // Generous: a slow call here would fall back to local state
                // and hide what Redis answers (`assert_backend` catches it).
                config.redis = Some(redis_config(server.url(), Duration::from_secs(2)));
                Some(server)
            }
            Backend::RedisDown => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("free port")
                    .port();
                let url = format!("redis://127.0.0.1:{port}");
                config.redis = Some(redis_config(url, Duration::from_millis(50)));
                None
            }
        };
        let runtime = Runtime::with_clock(config, clock.clone()).expect("runtime");
        Some(Fixture {
            backend,
            runtime,
            clock,
            _server: server,
        })
    }

    fn plugin(&self, name: &str, route: &str, config: &str) -> ConfiguredPlugin {
        let plugin = load(&self.runtime, name);
        // A hook budget above the Redis timeout: on a loaded machine a hook
        // that waits for Redis must not be cut short (a timeout fault) before
        // Redis answers or the call falls back.
        let limits = Limits {
            hook_timeout: Duration::from_secs(5),
            ..limits()
        };
        self.runtime
            .configure(&plugin, route, config, limits)
            .expect("configure")
    }

    /// Moves the runtime clock: what rate limits and windows go by.
    fn advance(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
    }

    /// Lets `ms` pass for TTLs too: the runtime clock, and real time when
    /// Redis keeps them.
    fn elapse(&self, ms: u64) {
        self.advance(ms);
        if self.backend == Backend::Redis {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    /// The answers came from the backend under test: Redis answered every
    /// call, or (down) none.
    fn assert_backend(&self) {
        let health = self.runtime.state_backend();
        match self.backend {
            Backend::Local => assert_eq!(health, None),
            Backend::Redis => {
                let health = health.expect("redis backend");
                assert!(health.up && health.errors == 0, "{health:?}");
            }
            Backend::RedisDown => {
                let health = health.expect("redis backend");
                assert!(!health.up && health.errors > 0, "{health:?}");
            }
        }
    }

    /// Every key Tailgate wrote to Redis has a TTL; returns them (none on
    /// other backends).
    fn assert_every_redis_key_expires(&self) -> Vec<String> {
        let Some(server) = &self._server else {
            return Vec::new();
        };
        let client = redis::Client::open(server.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("test:*")
            .query(&mut conn)
            .expect("KEYS");
        assert!(!keys.is_empty(), "nothing was written to Redis");
        for key in &keys {
            let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).expect("PTTL");
            assert!(ttl > 0, "{key} has no TTL ({ttl})");
        }
        keys
    }
}

fn edits(plugin: &ConfiguredPlugin, path: &str, ip: &str) -> RequestEdits {
    match plugin.on_request(&mut request(plugin.route(), path, ip)) {
        Ok(RequestAction::Continue(edits)) => edits,
        other => panic!("expected continue, got {other:?}"),
    }
}

fn header<'a>(edits: &'a RequestEdits, name: &str) -> &'a str {
    edit(&edits.headers, name).unwrap_or_else(|| panic!("no {name} in {:?}", edits.headers))
}

/// `x-primitives` without its `ttl=` part, and that ttl.
fn primitives(edits: &RequestEdits) -> (&str, Option<u64>) {
    let all = header(edits, "x-primitives");
    let (rest, ttl) = all.rsplit_once(",ttl=").expect("ttl part");
    (rest, ttl.parse().ok())
}

fn every_import_answers_a_real_guest(backend: Backend) {
    let Some(f) = Fixture::new(backend) else {
        return;
    };
    let plugin = f.plugin("fault-injector", "r", r#"{"mode":"state"}"#);

    let first = edits(&plugin, "/one", "198.51.100.1");
    assert_eq!(header(&first, "x-hits"), "1");
    assert_eq!(header(&first, "x-hits-read"), "1");
    assert_eq!(header(&first, "x-kv-prev"), "-");
    assert_eq!(header(&first, "x-kv-deleted"), "true,false");
    assert_eq!(header(&first, "x-ratelimit"), "pass");
    assert_eq!(header(&first, "x-now-ms"), START_MS.to_string());
    let vars: Vec<(&str, &str)> = first
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(vars, vec![("hits", "1"), ("limit_req_status", "PASSED")]);
    // A kv entry set with ttl 0 never expires (on Redis: 7 days idle, but
    // `kv-ttl` still says 0).
    assert_eq!(
        header(&first, "x-primitives"),
        "window=1,counted=1,nx=true,cas=true/false/true,ttl=0"
    );

    f.advance(1500);
    let second = edits(&plugin, "/two", "198.51.100.1");
    assert_eq!(header(&second, "x-hits"), "2");
    assert_eq!(header(&second, "x-kv-prev"), "/one");
    assert_eq!(
        header(&second, "x-primitives"),
        "window=2,counted=2,nx=false,cas=true/false/true,ttl=0"
    );
    assert_eq!(header(&second, "x-now-ms"), (START_MS + 1500).to_string());

    let resp = plugin
        .on_response(
            &mut request("r", "/two", "198.51.100.1"),
            &mut ResponseHead {
                status: 200,
                headers: Some(vec![]),
                host_generated: false,
            },
        )
        .expect("on_response");
    assert_eq!(edit(&resp.headers, "x-hits"), Some("2"));
    f.assert_backend();
    let keys = f.assert_every_redis_key_expires();
    if backend == Backend::Redis {
        // kv, counters and windows all went to Redis, in the plugin's namespace.
        for kind in ["kv", "c", "w", "rl"] {
            let prefix = format!("test:{kind}:|14|fault-injector:");
            assert!(
                keys.iter().any(|k| k.starts_with(&prefix)),
                "{prefix} in {keys:?}"
            );
        }
    }
}

fn counter_and_kv_ttls_expire(backend: Backend) {
    let Some(f) = Fixture::new(backend) else {
        return;
    };
    let plugin = f.plugin("fault-injector", "r", r#"{"mode":"state","ttl_ms":400}"#);
    let first = edits(&plugin, "/a", "192.0.2.1");
    assert_eq!(header(&first, "x-hits"), "1");
    let (_, ttl) = primitives(&first);
    let ttl = ttl.expect("kv-ttl of a live key");
    assert!((300..=400).contains(&ttl), "kv-ttl {ttl}");

    f.elapse(150);
    let e = edits(&plugin, "/b", "192.0.2.1");
    assert_eq!(header(&e, "x-hits"), "2");
    assert_eq!(header(&e, "x-kv-prev"), "/a");
    // Past 400 ms after the last increment and the last kv-set: both gone.
    f.elapse(600);
    let e = edits(&plugin, "/c", "192.0.2.1");
    assert_eq!(header(&e, "x-hits"), "1");
    assert_eq!(header(&e, "x-kv-prev"), "-");
    f.assert_backend();
    f.assert_every_redis_key_expires();
}

fn set_if_absent_expires_and_windows_slide(backend: Backend) {
    let Some(f) = Fixture::new(backend) else {
        return;
    };
    let plugin = f.plugin("fault-injector", "r", r#"{"mode":"state","ttl_ms":300}"#);
    let first = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(
        primitives(&first).0,
        "window=1,counted=1,nx=true,cas=true/false/true"
    );
    // The set-if-absent key (300 ms) has expired: set again.
    f.elapse(500);
    let second = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(
        primitives(&second).0,
        "window=2,counted=2,nx=true,cas=true/false/true"
    );
    // At once: still there, not set.
    let third = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(
        primitives(&third).0,
        "window=3,counted=3,nx=false,cas=true/false/true"
    );
    // 60.1 s after the first event it has left the 60 s window: a sliding
    // count, not a bucket.
    f.advance(59_600);
    let fourth = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(&primitives(&fourth).0[..18], "window=3,counted=3");
    f.assert_backend();
}

fn rate_limit_rejects_with_retry_after_and_refills(backend: Backend) {
    let Some(f) = Fixture::new(backend) else {
        return;
    };
    // limit_req rate=1r/s burst=1 (delayed).
    let plugin = f.plugin(
        "fault-injector",
        "r",
        r#"{"mode":"state","rate_limit":{"zone":"one","rate_milli":1000,"burst":1}}"#,
    );
    assert_eq!(
        header(&edits(&plugin, "/", "203.0.113.9"), "x-ratelimit"),
        "pass"
    );
    let e = edits(&plugin, "/", "203.0.113.9");
    assert_eq!(header(&e, "x-ratelimit"), "delay=1000");
    assert_eq!(e.delay_ms, 1000);
    // A different client has its own bucket.
    assert_eq!(
        header(&edits(&plugin, "/", "203.0.113.10"), "x-ratelimit"),
        "pass"
    );
    match plugin.on_request(&mut request("r", "/", "203.0.113.9")) {
        Ok(RequestAction::Respond(resp)) => {
            assert_eq!(resp.status, 429);
            let value = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name == name)
                    .map(|h| String::from_utf8_lossy(&h.value).into_owned())
            };
            assert_eq!(value("retry-after").as_deref(), Some("1"));
            assert_eq!(value("x-ratelimit").as_deref(), Some("reject=1000"));
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    f.advance(1000);
    assert_eq!(
        header(&edits(&plugin, "/", "203.0.113.9"), "x-ratelimit"),
        "delay=1000"
    );
    f.assert_backend();
    f.assert_every_redis_key_expires();
}

fn concurrent_rate_limit_checks_are_exact(backend: Backend) {
    let Some(f) = Fixture::new(backend) else {
        return;
    };
    // 10r/s burst=20 nodelay, time frozen: exactly 21 get through.
    let plugin = f.plugin(
        "fault-injector",
        "r",
        r#"{"mode":"state","rate_limit":{"zone":"z","rate_milli":10000,"burst":20,"delay":20}}"#,
    );
    let (passed, rejected) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..25 {
                    match plugin.on_request(&mut request("r", "/", "192.0.2.1")) {
                        Ok(RequestAction::Continue(_)) => passed.fetch_add(1, Ordering::SeqCst),
                        Ok(RequestAction::Respond(r)) => {
                            assert_eq!(r.status, 429);
                            rejected.fetch_add(1, Ordering::SeqCst)
                        }
                        Err(fault) => panic!("{fault}"),
                    };
                }
            });
        }
    });
    assert_eq!(passed.into_inner(), 21);
    assert_eq!(rejected.into_inner(), 200 - 21);
    f.assert_backend();
}

fn concurrent_counter_increments_are_exact(backend: Backend) {
    let Some(f) = Fixture::new(backend) else {
        return;
    };
    let plugin = f.plugin("fault-injector", "r", r#"{"mode":"state"}"#);
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (plugin, seen) = (&plugin, &seen);
            scope.spawn(move || {
                let mut mine = Vec::new();
                for i in 0..25 {
                    let e = edits(plugin, &format!("/{t}/{i}"), &format!("10.0.0.{t}"));
                    mine.push(header(&e, "x-hits").parse::<i64>().expect("x-hits"));
                }
                seen.lock().expect("seen").extend(mine);
            });
        }
    });
    // Every increment returned a distinct value: 1..=100, none lost.
    let seen: BTreeSet<i64> = seen.into_inner().expect("seen").into_iter().collect();
    assert_eq!(seen, (1..=100).collect::<BTreeSet<i64>>());
    f.assert_backend();
}

fn plugins_and_scopes_keep_their_state_apart(backend: Backend) {
    let Some(f) = Fixture::new(backend) else {
        return;
    };
    let a = f.plugin("plugin-a", "r", r#"{"mode":"state"}"#);
    let b = f.plugin("plugin-b", "r", r#"{"mode":"state"}"#);
    edits(&a, "/a-path", "192.0.2.1");
    edits(&a, "/a-path", "192.0.2.1");
    let e = edits(&b, "/b-path", "192.0.2.1");
    assert_eq!(header(&e, "x-hits"), "1");
    assert_eq!(header(&e, "x-kv-prev"), "-");
    assert_eq!(
        primitives(&e).0,
        "window=1,counted=1,nx=true,cas=true/false/true"
    );
    // Two routes of the same plugin do share it.
    let a2 = f.plugin("plugin-a", "other-route", r#"{"mode":"state"}"#);
    let e = edits(&a2, "/x", "192.0.2.1");
    assert_eq!(header(&e, "x-hits"), "3");
    assert_eq!(header(&e, "x-kv-prev"), "/a-path");
    // A route scope is apart from the plugin's own.
    let scoped = f.plugin("plugin-a", "s", r#"{"mode":"state","state_scope":"route"}"#);
    let e = edits(&scoped, "/s", "192.0.2.1");
    assert_eq!(header(&e, "x-hits"), "1");
    assert_eq!(header(&e, "x-kv-prev"), "-");
    f.assert_backend();
}

/// One `#[test]` per (backend, scenario).
/// A hook that waits on a slow Redis is not charged for the wait: with a
/// 30 ms hook budget, a rate-limit check whose Redis answer takes 300 ms
/// still answers (the worker was free meanwhile), and is not a slow call.
#[test]
fn waiting_on_redis_is_not_charged_to_the_hook_budget() {
    let Some(f) = Fixture::new(Backend::Redis) else {
        return;
    };
    let plugin = load(&f.runtime, "fault-injector");
    let tight = Limits {
        hook_timeout: Duration::from_millis(30),
        ..limits()
    };
    let plugin = f
        .runtime
        .configure(&plugin, "r", r#"{"mode":"state"}"#, tight)
        .expect("configure");
    // Warm: the connection is up and the scripts are loaded.
    edits(&plugin, "/", "192.0.2.1");
    let addr = f._server.as_ref().expect("redis").addr();
    let sleeper = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut redis = std::net::TcpStream::connect(addr).expect("connect");
        redis
            .write_all(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n0.3\r\n")
            .expect("write");
        let mut answer = [0u8; 16];
        let n = redis.read(&mut answer).expect("read");
        String::from_utf8_lossy(&answer[..n]).into_owned()
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let e = edits(&plugin, "/", "192.0.2.1");
    let took = started.elapsed();
    assert_eq!(sleeper.join().expect("sleeper"), "+OK\r\n");
    assert!(
        took >= Duration::from_millis(150),
        "Redis was not slow: {took:?}"
    );
    assert_eq!(header(&e, "x-ratelimit"), "pass");
    f.assert_backend();
}

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[test] fn $scenario() { super::$scenario(super::Backend::Local) })*
        }
        mod redis_exact {
            $(#[test] fn $scenario() { super::$scenario(super::Backend::Redis) })*
        }
        mod redis_down {
            $(#[test] fn $scenario() { super::$scenario(super::Backend::RedisDown) })*
        }
    };
}

on_every_backend!(
    every_import_answers_a_real_guest,
    counter_and_kv_ttls_expire,
    set_if_absent_expires_and_windows_slide,
    rate_limit_rejects_with_retry_after_and_refills,
    concurrent_rate_limit_checks_are_exact,
    concurrent_counter_increments_are_exact,
    plugins_and_scopes_keep_their_state_apart,
);
