//! Broken plugins through the real binary: a guest that traps, one that loops
//! forever, and one that allocates without bound are each stopped within
//! their budget, the route's fail policy applies, and the next request is served.

use std::time::{Duration, Instant};

use tailgate_e2e::base_config;
use tailgate_e2e::client::get;
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;

fn route(name: &str, mode: &str, policy: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
hosts = ["{name}.test"]
path = "/"
upstream = "app"
plugin_failure = "{policy}"
[[routes.plugins]]
plugin = "fault-injector"
config = {{ mode = "{mode}", hook = "request" }}
"#
    )
}

fn config(up: &TestUpstream) -> String {
    let mut cfg = base_config("") + &format!("\n[upstreams.app]\nurl = \"{}\"\n", up.url());
    for mode in ["trap", "loop", "alloc"] {
        cfg += &route(&format!("{mode}-closed"), mode, "closed");
        cfg += &route(&format!("{mode}-open"), mode, "open");
    }
    cfg += &route("healthy", "ok", "closed");
    cfg
}

#[tokio::test(flavor = "multi_thread")]
async fn faulting_plugins_are_stopped_and_the_policy_applied() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up));
    for mode in ["trap", "loop", "alloc"] {
        for round in 0..3 {
            let t = Instant::now();
            let closed = get(
                tg.addr(),
                &format!("{mode}-closed.test"),
                &format!("/c{round}"),
            )
            .await;
            let took = t.elapsed();
            assert_eq!(closed.status, 500, "{mode}: fail-closed answers 500");
            // The hook budget is 100 ms; allow generous slack for a debug build.
            assert!(
                took < Duration::from_secs(2),
                "{mode}: stopped after {took:?}"
            );
            let open = get(
                tg.addr(),
                &format!("{mode}-open.test"),
                &format!("/o{round}"),
            )
            .await;
            assert_eq!(
                open.status, 200,
                "{mode}: fail-open goes on as if the plugin were absent"
            );
            assert_eq!(get(tg.addr(), "healthy.test", "/").await.status, 200);
        }
    }
    // Every fault is logged with its route and plugin.
    let stderr = tg.stderr.snapshot().join("\n");
    for mode in ["trap", "loop", "alloc"] {
        assert!(
            stderr.contains(&format!("{mode}-closed")) && stderr.contains("fault-injector"),
            "fault of {mode} not logged with route and plugin:\n{stderr}"
        );
    }
}
