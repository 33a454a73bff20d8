//! `[state] backend = "redis"` through the real binary: two Tailgate
//! processes share one real `redis-server` (started on a free loopback
//! port, killed by PID). In `exact` mode a rate limit admits its configured
//! total across both and failures counted on both ban a client; in `sync`
//! mode the limit holds within the stated bound once the machines have
//! synced, and counters and ban windows are shared within an interval. A ban made through one (plugin or admin `POST /bans`) blocks on
//! the other, an admin `DELETE` on one frees the key on both. Stopping
//! redis-server under load: no 5xx, no request waits much past `timeout`,
//! `tailgate_state_backend_up` and `/healthz` say so; once it is back the
//! state is shared again. In `[tailnet] mode = "socks5"` Redis is dialled
//! through the SOCKS5 server (a real microsocks) like an upstream.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tailgate_e2e::client::{get, get_with, send};
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::microsocks::Microsocks;
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::redis_server::RedisServer;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config, eventually, plugin_wasm};

const ATTACKER: &str = "198.51.100.1";
const OTHER: &str = "198.51.100.2";
const LOGIN_JAIL: &str = r#"jails = [{ name = "login", statuses = [401], path = "^/status/401$", max_retry = 5, find_time = "10m", ban_time = "1h" }]"#;

/// Route `app` with the ban plugin and then the rate-limit plugin
/// (`limits`), state in `state` and on `redis` with `mode` lines.
fn config(
    up: &TestUpstream,
    state: &Path,
    redis: &RedisServer,
    mode: &str,
    limits: &str,
) -> String {
    config_at(up, state, &redis.url(), mode, limits)
}

/// [`config`] with Redis at `url`.
fn config_at(up: &TestUpstream, state: &Path, url: &str, mode: &str, limits: &str) -> String {
    format!(
        r#"{base}ban = "{ban}"

[state]
dir = "{state}"
backend = "redis"
url = "{url}"
key_prefix = "t:"
timeout = "50ms"
{mode}
{app}
[[routes.plugins]]
plugin = "ban"
[routes.plugins.config]
{LOGIN_JAIL}

[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
{limits}
"#,
        base = base_config(
            "client_ip_header = \"Fly-Client-IP\"\ntrusted_proxies = [\"127.0.0.0/8\"]"
        ),
        ban = plugin_wasm("ban").display(),
        state = state.display(),
        app = app_route(&up.url()),
    )
}

/// Two proxies on one Redis.
fn two(
    up: &TestUpstream,
    redis: &RedisServer,
    mode: &str,
    limits: &str,
) -> (Tailgate, Tailgate, TempDir) {
    let dir = TempDir::new("state-redis");
    let a = Tailgate::start(&config(up, &dir.path().join("a"), redis, mode, limits));
    let b = Tailgate::start(&config(up, &dir.path().join("b"), redis, mode, limits));
    (a, b, dir)
}

const GENEROUS: &str =
    r#"limits = [{ zone = "all", rate = "1000r/s", burst = 1000, nodelay = true }]"#;
/// Ten requests per client, then (almost) none: 1 r/m.
const TEN: &str = r#"limits = [{ zone = "per_ip", rate = "1r/m", burst = 9, nodelay = true }]"#;

async fn from(tg: &Tailgate, ip: &str, path: &str) -> u16 {
    get_with(tg.addr(), "app.test", path, &[("Fly-Client-IP", ip)])
        .await
        .status
        .as_u16()
}

/// Of `n` requests from [`ATTACKER`], alternately to `a` and `b`, how many
/// were admitted (the rest must be 429s).
async fn admitted_alternating(a: &Tailgate, b: &Tailgate, n: usize) -> usize {
    let mut admitted = 0;
    for i in 0..n {
        let tg = if i % 2 == 0 { a } else { b };
        match from(tg, ATTACKER, "/").await {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    admitted
}

async fn admin(tg: &Tailgate, method: Method, path: &str, body: &str) -> (u16, String) {
    let reply = send(
        tg.admin_addr(),
        method,
        "admin",
        path,
        &[],
        Bytes::from(body.to_owned()),
    )
    .await
    .expect("admin call");
    (reply.status.as_u16(), reply.text())
}

/// A 10-minute ban of `key` in jail `login` through `tg`'s admin API: the
/// answer's status.
async fn ban_by_hand(tg: &Tailgate, key: &str) -> u16 {
    let order = format!(r#"{{"jail": "login", "key": "{key}", "duration": "10m"}}"#);
    admin(tg, Method::POST, "/bans", &order).await.0
}

async fn backend_up(tg: &Tailgate) -> f64 {
    sum(
        &scrape(tg.admin_addr()).await,
        "tailgate_state_backend_up",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_mode_admits_the_configured_total_across_two_machines() {
    let up = TestUpstream::start();
    let redis = RedisServer::start();
    let (a, b, _dir) = two(&up, &redis, "consistency = \"exact\"", TEN);
    assert_eq!(
        admitted_alternating(&a, &b, 30).await,
        10,
        "burst 9 + 1 across both machines"
    );
    // Another client has its own bucket, on either machine.
    assert_eq!(from(&b, OTHER, "/").await, 200);
    assert_eq!(backend_up(&a).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_mode_failures_on_both_ban_on_both_and_an_unban_frees_both() {
    let up = TestUpstream::start();
    let redis = RedisServer::start();
    let (a, b, _dir) = two(&up, &redis, "", GENEROUS);
    // 3 failures on one machine and 2 on the other: one shared window.
    for tg in [&a, &a, &a, &b, &b] {
        assert_eq!(from(tg, ATTACKER, "/status/401").await, 401);
    }
    for tg in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                from(tg, ATTACKER, "/").await == 403
            })
            .await,
            "banned on both"
        );
    }
    assert_eq!(from(&a, OTHER, "/").await, 200);
    // The admin list of either machine shows it.
    let (status, listed) = admin(&b, Method::GET, "/bans", "").await;
    assert_eq!(status, 200);
    assert!(listed.contains(ATTACKER), "{listed}");
    // Lifted through A's admin API: free on B at once.
    let path = format!("/bans/login/{ATTACKER}");
    assert_eq!(admin(&a, Method::DELETE, &path, "").await.0, 204);
    assert_eq!(from(&b, ATTACKER, "/").await, 200);
    assert_eq!(from(&a, ATTACKER, "/").await, 200);
    // A ban by hand through B blocks on A.
    assert_eq!(ban_by_hand(&b, OTHER).await, 201);
    assert_eq!(from(&a, OTHER, "/").await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_holds_the_limit_within_the_bound_and_shares_bans_within_an_interval() {
    let up = TestUpstream::start();
    let redis = RedisServer::start();
    let interval = Duration::from_millis(200);
    let mode = "consistency = \"sync\"\nsync_interval = \"200ms\"";
    let (a, b, _dir) = two(&up, &redis, mode, TEN);
    // Six on each. Each machine alone is under 10, so all 12 pass unless a
    // sync round falls between A's six and B's (B then knows of A's and
    // stops at 10 in all, as exact mode would): never fewer than the limit,
    // never more than the bound of (machines - 1) x (rate x interval +
    // burst + 1) over it. Which of the two happens is the scheduler's.
    let mut admitted = 0;
    for tg in [&a, &b] {
        for _ in 0..6 {
            let status = from(tg, ATTACKER, "/").await;
            assert!(status == 200 || status == 429, "{status}");
            admitted += u32::from(status == 200);
        }
    }
    // 1 r/m: rate x interval rounds to 0; the bound is 10 + 1 x (0 + 9 + 1).
    assert!((10..=10 + (9 + 1)).contains(&admitted), "{admitted}");
    // After a round or two both know of all 12: the shared bucket is over
    // the burst, so neither admits the 4 more it would alone.
    tokio::time::sleep(interval * 3).await;
    assert_eq!(from(&a, ATTACKER, "/").await, 429);
    assert_eq!(from(&b, ATTACKER, "/").await, 429);

    // A ban made on A reaches B within an interval (plus a round's work).
    assert_eq!(ban_by_hand(&a, OTHER).await, 201);
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || async {
            from(&b, OTHER, "/").await == 403
        })
        .await,
        "the ban reached B"
    );
    assert!(started.elapsed() < interval * 3, "{:?}", started.elapsed());
    // An unban through B's admin API frees it on A within an interval.
    let path = format!("/bans/login/{OTHER}");
    assert_eq!(admin(&b, Method::DELETE, &path, "").await.0, 204);
    assert!(
        eventually(Duration::from_secs(3), || async {
            from(&a, OTHER, "/").await == 200
        })
        .await,
        "the unban reached A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_counts_failures_on_both_machines_towards_one_ban() {
    let up = TestUpstream::start();
    let redis = RedisServer::start();
    let interval = Duration::from_millis(200);
    let mode = "consistency = \"sync\"\nsync_interval = \"200ms\"";
    let (a, b, _dir) = two(&up, &redis, mode, GENEROUS);
    // 3 failures on A and 2 on B (max_retry 5): no machine alone has 5.
    for tg in [&a, &a, &a, &b, &b] {
        assert_eq!(from(tg, ATTACKER, "/status/401").await, 401);
    }
    // A round or two later each knows of all 5 (the window is shared), so
    // the next failure, on either, bans — alone A would count 4.
    tokio::time::sleep(interval * 3).await;
    assert_eq!(from(&a, ATTACKER, "/").await, 200);
    assert_eq!(from(&b, ATTACKER, "/").await, 200);
    assert_eq!(from(&a, ATTACKER, "/status/401").await, 401);
    // The ban is made in A's log hook, after the response.
    assert!(
        eventually(Duration::from_secs(3), || async {
            from(&a, ATTACKER, "/").await == 403
        })
        .await,
        "banned on A"
    );
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || async {
            from(&b, ATTACKER, "/").await == 403
        })
        .await,
        "the ban reached B"
    );
    assert!(started.elapsed() < interval * 3, "{:?}", started.elapsed());
    assert_eq!(from(&b, OTHER, "/").await, 200);
}

/// `x-hits` (the shared counter `hits` of fault-injector's state mode, read
/// in on-response) of one request to `tg`.
async fn hits(tg: &Tailgate) -> i64 {
    let reply = get_with(tg.addr(), "hits.test", "/", &[]).await;
    assert_eq!(reply.status.as_u16(), 200);
    reply.headers["x-hits"]
        .to_str()
        .expect("x-hits")
        .parse()
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_shares_counters_within_an_interval() {
    let up = TestUpstream::start();
    let redis = RedisServer::start();
    let interval = Duration::from_millis(200);
    let dir = TempDir::new("state-redis-counters");
    let config = |name: &str| {
        format!(
            r#"{base}
[state]
dir = "{state}"
backend = "redis"
url = "{url}"
key_prefix = "t:"
timeout = "50ms"
consistency = "sync"
sync_interval = "200ms"

[upstreams.app]
url = "{up}"

[[routes]]
name = "hits"
hosts = ["hits.test"]
path = "/"
upstream = "app"
[[routes.plugins]]
plugin = "fault-injector"
config = {{ mode = "state" }}
"#,
            base = base_config(""),
            state = dir.path().join(name).display(),
            url = redis.url(),
            up = up.url(),
        )
    };
    let a = Tailgate::start(&config("a"));
    let b = Tailgate::start(&config("b"));
    for expected in 1..=3 {
        assert_eq!(hits(&a).await, expected);
    }
    tokio::time::sleep(interval * 3).await;
    // B starts from A's 3 (its own first increment, then the pulled base).
    assert!((1..=4).contains(&hits(&b).await));
    tokio::time::sleep(interval * 3).await;
    assert_eq!(hits(&b).await, 5, "A's 3 + B's 2");
    tokio::time::sleep(interval * 3).await;
    assert_eq!(hits(&a).await, 6, "B's 2 reached A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_under_load_keeps_serving_locally_and_recovers() {
    let up = TestUpstream::start();
    let mut redis = RedisServer::start();
    let (a, b, _dir) = two(&up, &redis, "", GENEROUS);
    assert_eq!(from(&a, OTHER, "/").await, 200);

    let load = |tg: &Tailgate, ip: &'static str| {
        let addr = tg.addr();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut statuses = Vec::new();
            let until = Instant::now() + Duration::from_millis(2500);
            while Instant::now() < until {
                let sent = Instant::now();
                let reply = get_with(addr, "app.test", "/", &[("Fly-Client-IP", ip)]).await;
                worst = worst.max(sent.elapsed());
                statuses.push(reply.status.as_u16());
            }
            (worst, statuses)
        })
    };
    let loads = [load(&a, OTHER), load(&b, OTHER)];
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.stop();
    assert!(
        eventually(Duration::from_secs(3), || async {
            backend_up(&a).await == 0.0
        })
        .await,
        "tailgate_state_backend_up went to 0"
    );
    let health = get(a.admin_addr(), "admin", "/healthz").await;
    assert_eq!(health.status, 200);
    assert!(
        health
            .text()
            .contains("state backend redis (exact): degraded"),
        "{}",
        health.text()
    );
    for load in loads {
        let (worst, statuses) = load.await.expect("load");
        assert!(
            statuses.iter().all(|&s| s == 200),
            "no failures: {statuses:?}"
        );
        assert!(
            worst < Duration::from_millis(750),
            "slowest request {worst:?}"
        );
    }
    let errors = sum(
        &scrape(a.admin_addr()).await,
        "tailgate_state_backend_errors_total",
        &[],
    );
    assert!(errors >= 1.0, "{errors}");

    // Back: shared again (a ban through A blocks on B).
    redis.restart();
    for tg in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                backend_up(tg).await == 1.0
            })
            .await,
            "backend up again"
        );
    }
    let health = get(b.admin_addr(), "admin", "/healthz").await;
    assert!(
        health.text().contains("state backend redis (exact): up"),
        "{}",
        health.text()
    );
    assert_eq!(ban_by_hand(&a, ATTACKER).await, 201);
    assert_eq!(from(&b, ATTACKER, "/").await, 403);
}

/// `[tailnet] mode = "socks5"`: Redis, named by host name, is dialled
/// through the SOCKS5 server as upstreams are. The limit is shared through
/// it; with the SOCKS5 server gone (Redis still up) the backend is down and
/// requests are decided at once on local state; with it back, shared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_is_dialled_through_the_socks5_server() {
    let up = TestUpstream::start();
    let redis = RedisServer::start();
    let mut socks = Microsocks::start();
    let mode = format!(
        "consistency = \"exact\"\n\n[tailnet]\nmode = \"socks5\"\nsocks5 = \"{socks}\"\n\
         allow = [\"localhost:{redis_port}\", \"127.0.0.1:{up_port}\"]\n",
        socks = socks.addr,
        redis_port = redis.addr().port(),
        up_port = up.addr.port(),
    );
    let url = format!("redis://localhost:{}", redis.addr().port());
    let dir = TempDir::new("state-redis-socks5");
    let a = Tailgate::start(&config_at(&up, &dir.path().join("a"), &url, &mode, TEN));
    let b = Tailgate::start(&config_at(&up, &dir.path().join("b"), &url, &mode, TEN));
    // The first calls dial (through SOCKS5); let them.
    for tg in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                from(tg, OTHER, "/").await == 200 && backend_up(tg).await == 1.0
            })
            .await,
            "backend up through SOCKS5"
        );
    }
    assert_eq!(
        admitted_alternating(&a, &b, 30).await,
        10,
        "burst 9 + 1 across both machines"
    );

    // Only the SOCKS5 server goes: Redis is up, but out of reach (and so
    // is the upstream, dialled through it too: a 502 once the limit passed).
    let port = socks.addr.port();
    socks.stop();
    for _ in 0..5 {
        let started = Instant::now();
        let status = from(&a, "198.51.100.3", "/").await;
        assert!(matches!(status, 502 | 429), "{status}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            from(&a, "198.51.100.3", "/").await;
            backend_up(&a).await == 0.0
        })
        .await,
        "backend down without the SOCKS5 server"
    );

    let _socks = Microsocks::start_on(port);
    assert!(
        eventually(Duration::from_secs(10), || async {
            backend_up(&a).await == 1.0
        })
        .await,
        "backend up again through SOCKS5"
    );
    // Shared again: the attacker's bucket in Redis is still empty.
    assert_eq!(from(&a, ATTACKER, "/").await, 429);
}
