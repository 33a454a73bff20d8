//! Plugin hooks run on the proxy's worker threads (no hand-off per call):
//! with one worker, a guest that writes to stderr (a Rust panic message)
//! still has its output logged and its fault handled, and requests on other
//! routes, in flight at the same time, are served.

use std::time::Duration;

use tailgate_e2e::base_config;
use tailgate_e2e::client::get;
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;

fn config(up: &TestUpstream) -> String {
    let base = base_config("").replace("workers = 2", "workers = 1");
    assert!(base.contains("workers = 1"), "base config changed: {base}");
    base + &format!(
        r#"
[upstreams.app]
url = "{url}"

[[routes]]
name = "printing"
hosts = ["printing.test"]
path = "/"
upstream = "app"
plugin_failure = "closed"
[[routes.plugins]]
plugin = "fault-injector"
config = {{ mode = "trap", hook = "request" }}

[[routes]]
name = "plugins"
hosts = ["plugins.test"]
path = "/"
upstream = "app"
[[routes.plugins]]
plugin = "rate-limit"
config = {{ limits = [{{ zone = "all", rate = "100000r/s", burst = 100000, nodelay = true }}] }}
[[routes.plugins]]
plugin = "header-rewrite"
config = {{ response = {{ set = {{ "X-Seen" = "yes" }} }} }}
[[routes.plugins]]
plugin = "log-shape"
"#,
        url = up.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_on_a_single_worker_is_logged_and_other_requests_are_served() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up));
    let addr = tg.addr();

    // Printing guests and the three-plugin chain, interleaved, 40 at once.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (host, path) = if i % 2 == 0 {
            ("printing.test", format!("/p{i}"))
        } else {
            ("plugins.test", format!("/ok{i}"))
        };
        tasks.push(tokio::spawn(async move {
            let reply = tokio::time::timeout(Duration::from_secs(10), get(addr, host, &path))
                .await
                .unwrap_or_else(|_| panic!("{host}{path}: no answer within 10 s"));
            (host, reply)
        }));
    }
    for task in tasks {
        let (host, reply) = task.await.expect("request task");
        if host == "printing.test" {
            assert_eq!(reply.status, 500, "a trapping guest fails closed");
        } else {
            assert_eq!(reply.status, 200, "the plugin chain serves");
            assert_eq!(
                reply.headers.get("x-seen").map(|v| v.as_bytes()),
                Some(&b"yes"[..])
            );
        }
    }

    // The guest's own stderr line (its panic message) reached the log.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stderr = tg.stderr.snapshot().join("\n");
        if stderr.contains("fault-injector: trap in request") {
            assert!(
                !stderr.contains("Cannot start a runtime"),
                "guest output hit tokio's nested-runtime check:\n{stderr}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest's panic message was not logged:\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Still serving afterwards.
    assert_eq!(get(addr, "plugins.test", "/after").await.status, 200);
}
