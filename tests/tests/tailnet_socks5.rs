//! `socks5` dial mode through the real binary against a real SOCKS5 server
//! (Debian `microsocks`, as tailscaled's `--socks5-server` stands in):
//! upstreams are reached through it by hostname, and with the SOCKS5 server
//! down a request is a 502 naming the proxy, while the proxy keeps serving.
//! The identity check finds the peer by its MagicDNS name in the LocalAPI
//! stand-in's status (no peer address is known through SOCKS5). The Loki
//! pusher goes through the SOCKS5 server too: with it down nothing arrives
//! at the Loki stand-in, and the queued lines do once it is back.

use std::time::Duration;

use tailgate_e2e::base_config;
use tailgate_e2e::client::get;
use tailgate_e2e::localapi_standin::LocalApiStandIn;
use tailgate_e2e::loki_standin::{LokiStandin, StoredLine};
use tailgate_e2e::microsocks::Microsocks;
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::upstream::TestUpstream;

#[tokio::test(flavor = "multi_thread")]
async fn upstreams_are_reached_through_the_socks5_server_and_its_absence_is_a_502() {
    let mut socks = Microsocks::start();
    let up = TestUpstream::start();
    let port = up.addr.port();
    let dir = TempDir::new("socks5");
    let localapi = LocalApiStandIn::start(dir.path());
    localapi.set_node("localhost", &[], &["tag:flyio-target"]);
    let config = base_config("")
        + &format!(
            r#"
[tailnet]
mode = "socks5"
socks5 = "{socks}"
allow = ["localhost:{port}"]
require_tag = "tag:flyio-target"
localapi_socket = "{socket}"

[upstreams.docs]
url = "http://localhost:{port}"
host_header = "upstream"
connect_timeout = "2s"
[upstreams.later]
url = "http://localhost:{port}/later"
connect_timeout = "2s"

[[routes]]
name = "docs"
hosts = ["docs.test"]
path = "/"
upstream = "docs"

[[routes]]
name = "later"
hosts = ["later.test"]
path = "/"
upstream = "later"
"#,
            socks = socks.addr,
            socket = localapi.socket_path().display(),
        );
    let tg = Tailgate::start(&config);

    let r = get(tg.addr(), "docs.test", "/page").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["uri"], "/page");
    assert_eq!(
        r.echoed_header("host").as_deref(),
        Some(format!("localhost:{port}").as_str())
    );
    assert_eq!(up.requests(), 1);
    assert!(localapi.requests() >= 1, "the peer was checked by name");
    // Through SOCKS5 only the hostname is known: the log names it.
    let rec = tg.wait_log("request_uri", "/page");
    assert_eq!(rec["upstream_addr"], format!("localhost:{port}"));

    // The SOCKS5 server goes away: a new upstream connection cannot be made.
    socks.stop();
    let r = get(tg.addr(), "later.test", "/x").await;
    assert_eq!(r.status, 502);
    let line = tg
        .stderr
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("upstream later: connecting:")
        })
        .expect("the failure is logged");
    assert!(
        line.contains(&format!(
            "connecting to localhost:{port} via SOCKS5 proxy {}",
            socks.addr
        )),
        "{line}"
    );
    assert_eq!(
        up.requests(),
        1,
        "nothing reached the upstream without the proxy"
    );
    // Tailgate itself is fine.
    assert_eq!(get(tg.addr(), "docs.test", "/healthz").await.status, 200);
}

/// Whether a Loki stand-in stored a line for `uri`.
fn stored(lines: &[StoredLine], uri: &str) -> bool {
    lines
        .iter()
        .any(|l| l.line.contains(&format!("\"request_uri\":\"{uri}\"")))
}

#[tokio::test(flavor = "multi_thread")]
async fn loki_pushes_go_through_the_socks5_server_in_socks5_mode() {
    let mut socks = Microsocks::start();
    let loki = LokiStandin::start();
    // A static route: its answers do not need the SOCKS5 server, the pushes do.
    let dir = TempDir::new("socks5-loki");
    dir.write("www/index.html", "hello");
    let config = base_config("")
        + &format!(
            r#"
[tailnet]
mode = "socks5"
socks5 = "{socks}"

[telemetry.loki]
url = "http://localhost:{loki_port}/loki/api/v1/push"
batch_wait = "100ms"
min_backoff = "100ms"
max_backoff = "300ms"
max_retries = 1000
"#,
            socks = socks.addr,
            loki_port = loki.addr.port(),
        )
        + &format!(
            "\n[upstreams.files]\nstatic = \"{}\"\n\n[[routes]]\nname = \"files\"\nhosts = [\"app.test\"]\npath = \"/\"\nupstream = \"files\"\n",
            dir.path().join("www").display()
        );
    let tg = Tailgate::start(&config);

    assert_eq!(get(tg.addr(), "app.test", "/via-socks").await.status, 404);
    assert!(
        loki.wait_until(Duration::from_secs(10), |lines| stored(lines, "/via-socks")),
        "pushed through the SOCKS5 server"
    );

    // Without the SOCKS5 server the pusher cannot reach Loki, though Loki is up.
    socks.stop();
    assert_eq!(get(tg.addr(), "app.test", "/while-down").await.status, 404);
    assert!(
        !loki.wait_until(Duration::from_millis(1500), |lines| stored(
            lines,
            "/while-down"
        )),
        "a line arrived without the SOCKS5 server: the pusher dialled directly"
    );
    let _socks = Microsocks::start_on(socks.addr.port());
    assert!(
        loki.wait_until(Duration::from_secs(10), |lines| stored(
            lines,
            "/while-down"
        )),
        "the queued line arrives once the SOCKS5 server is back"
    );
}
