//! Tailnet upstreams through the real binary: HTTPS upstreams verified
//! against a configured CA with the upstream's name as SNI (and clear 502s
//! for a wrong name or an unknown CA), the `[tailnet] allow` list (configs
//! naming other targets never start; Host and absolute-form tricks never
//! reach another target), the LocalAPI identity check (accept and refuse,
//! against the LocalAPI stand-in), and passive health failover across an
//! upstream's addresses.

use std::time::Duration;

use http::Method;
use tailgate_e2e::client::{get, get_with, raw_exchange, send};
use tailgate_e2e::localapi_standin::LocalApiStandIn;
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::test_pki::{HttpsUpstream, TestCa};
use tailgate_e2e::upstream::{dead_upstream, TestUpstream};
use tailgate_e2e::{base_config, eventually};

fn route(name: &str, host: &str, upstream: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
hosts = ["{host}"]
path = "/"
upstream = "{upstream}"
"#
    )
}

/// The first stderr line containing `needle` (waits up to 5 s).
fn stderr_line(tg: &Tailgate, needle: &str) -> String {
    tg.stderr
        .wait_for(Duration::from_secs(5), |l| l.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no stderr line with {needle:?}; stderr:\n{}",
                tg.stderr.snapshot().join("\n")
            )
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_verify_with_the_configured_ca_and_the_tailnet_name_as_sni() {
    let dir = TempDir::new("tailnet-tls");
    let ca = TestCa::new("Tailnet test CA");
    let other_ca = TestCa::new("Someone else's CA");
    let ca_file = ca.write(dir.path(), "ca");
    let good = HttpsUpstream::start(&ca.issue(&["localhost"]));
    let wrong_name = HttpsUpstream::start(&ca.issue(&["docs.tail8d86e.ts.net"]));
    let unknown_ca = HttpsUpstream::start(&other_ca.issue(&["localhost"]));
    let upstream = |name: &str, port: u16| {
        format!(
            "[upstreams.{name}]\nurl = \"https://localhost:{port}\"\nca_file = \"{ca}\"\ntls_handshake_timeout = \"5s\"\n",
            ca = ca_file.display()
        )
    };
    let config = base_config("")
        + &upstream("good", good.addr.port())
        + &upstream("wrongname", wrong_name.addr.port())
        + &upstream("unknownca", unknown_ca.addr.port())
        + &route("good", "good.test", "good")
        + &route("wrongname", "wrongname.test", "wrongname")
        + &route("unknownca", "unknownca.test", "unknownca");
    let tg = Tailgate::start(&config);

    let ok = get(tg.addr(), "good.test", "/hello").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let echoed = ok.json();
    assert_eq!(
        echoed["sni"], "localhost",
        "SNI is the upstream's host name"
    );
    assert_eq!(echoed["uri"], "/hello");

    let bad = get(tg.addr(), "wrongname.test", "/").await;
    assert_eq!(bad.status, 502);
    let line = stderr_line(&tg, "upstream wrongname: connecting:");
    assert!(
        line.contains(&format!(
            "TLS handshake with localhost:{}: invalid peer certificate: certificate not valid for name \"localhost\"",
            wrong_name.addr.port()
        )),
        "{line}"
    );

    let bad = get(tg.addr(), "unknownca.test", "/").await;
    assert_eq!(bad.status, 502);
    let line = stderr_line(&tg, "upstream unknownca: connecting:");
    assert!(
        line.contains(&format!(
            "TLS handshake with localhost:{}: invalid peer certificate: UnknownIssuer",
            unknown_ca.addr.port()
        )),
        "{line}"
    );

    // Still serving.
    assert_eq!(get(tg.addr(), "good.test", "/again").await.status, 200);
}

#[test]
fn a_config_naming_a_target_outside_the_allowlist_does_not_start() {
    let dead = dead_upstream();
    let config = base_config("")
        + &format!(
            r#"
[tailnet]
allow = ["docs.tail8d86e.ts.net:443", "*.tail8d86e.ts.net:443"]

[upstreams.docs]
url = "https://docs.tail8d86e.ts.net"
[upstreams.sneaky]
urls = ["https://wiki.tail8d86e.ts.net", "https://{dead}"]
"#
        )
        + &route("docs", "docs.test", "docs");
    let err = match Tailgate::try_start(&config) {
        Ok(_) => panic!("a config with a target outside [tailnet] allow started"),
        Err(e) => e,
    };
    assert!(
        err.contains(&format!(
            "upstream \"sneaky\": upstream target {dead} is not in [tailnet] allow"
        )),
        "{err}"
    );
    assert!(
        err.contains("config.toml:"),
        "the error has a position: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_headers_and_absolute_targets_cannot_reach_anything_else() {
    let allowed = TestUpstream::start();
    let canary = TestUpstream::start();
    let config = base_config("")
        + &format!(
            r#"
[tailnet]
allow = ["127.0.0.1:{port}"]

[upstreams.app]
url = "{url}"
host_header = "client"
"#,
            port = allowed.addr.port(),
            url = allowed.url()
        )
        + &route("app", "app.test", "app")
        + r#"
[[routes]]
name = "anyhost"
hosts = ["*"]
path = "/"
upstream = "app"
"#;
    let tg = Tailgate::start(&config);
    let canary_host = canary.addr.to_string();

    // The client names the canary as Host, X-Forwarded-Host, or both.
    let r = get(tg.addr(), &canary_host, "/x").await;
    assert_eq!(r.status, 200);
    let r = get_with(
        tg.addr(),
        "app.test",
        "/x",
        &[("x-forwarded-host", &canary_host)],
    )
    .await;
    assert_eq!(r.status, 200);
    // Absolute-form request target naming the canary.
    let raw = format!(
        "GET http://{canary_host}/abs HTTP/1.1\r\nHost: {canary_host}\r\nConnection: close\r\n\r\n"
    );
    let out = raw_exchange(tg.addr(), raw.as_bytes())
        .await
        .expect("exchange");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // A path that looks like another authority.
    let r = get(tg.addr(), "app.test", &format!("//{canary_host}/y")).await;
    assert_eq!(r.status, 200);

    assert_eq!(canary.requests(), 0, "the canary was never reached");
    assert_eq!(allowed.requests(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whois_tag_check_accepts_tagged_peers_and_refuses_the_rest() {
    let dir = TempDir::new("whois");
    let localapi = LocalApiStandIn::start(dir.path());
    let tagged = TestUpstream::start();
    localapi.set_node(
        "docs.tail8d86e.ts.net",
        &[tagged.addr],
        &["tag:flyio-target"],
    );
    // Peers on other loopback addresses: one tailscaled does not know, one
    // with the wrong tag. They accept TCP; nothing may be sent to them.
    let unknown = std::net::TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let wrong = std::net::TcpListener::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    let wrong_addr = wrong.local_addr().expect("addr");
    localapi.set_node("laptop.tail8d86e.ts.net", &[wrong_addr], &["tag:personal"]);
    let config = base_config("")
        + &format!(
            r#"
[tailnet]
require_tag = "tag:flyio-target"
localapi_socket = "{socket}"
whois_cache = "30s"

[upstreams.tagged]
url = "{tagged}"
[upstreams.unknown]
url = "http://{unknown}"
connect_timeout = "2s"
[upstreams.wrong]
url = "http://{wrong_addr}"
connect_timeout = "2s"
"#,
            socket = localapi.socket_path().display(),
            tagged = tagged.url(),
            unknown = unknown.local_addr().expect("addr"),
        )
        + &route("tagged", "tagged.test", "tagged")
        + &route("unknown", "unknown.test", "unknown")
        + &route("wrong", "wrong.test", "wrong");
    let tg = Tailgate::start(&config);

    assert_eq!(get(tg.addr(), "tagged.test", "/a").await.status, 200);
    assert_eq!(tagged.requests(), 1);
    let asked = localapi.requests();
    assert!(asked >= 1);

    let refused = get(tg.addr(), "wrong.test", "/").await;
    assert_eq!(refused.status, 502);
    let line = stderr_line(&tg, "upstream wrong: connecting:");
    assert!(
        line.contains(&format!(
            "tailnet peer {wrong_addr} (node laptop.tail8d86e.ts.net) does not carry tag:flyio-target (its tags: [tag:personal])"
        )),
        "{line}"
    );

    let refused = get(tg.addr(), "unknown.test", "/").await;
    assert_eq!(refused.status, 502);
    let line = stderr_line(&tg, "upstream unknown: connecting:");
    assert!(line.contains("is not a node tailscaled knows"), "{line}");

    // Counted, per upstream.
    let metrics = tailgate_e2e::metrics_scrape::scrape_text(tg.admin_addr()).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("upstream_identity_refused_total")
                && l.contains("upstream=\"wrong\"")),
        "{metrics}"
    );

    // New connections to the tagged peer within whois_cache are not asked
    // about again: concurrent slow requests open more upstream connections.
    let before = localapi.requests();
    let addr = tg.addr();
    let slow = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, "tagged.test", "/delay/300").await.status }));
    for status in futures_util::future::join_all(slow).await {
        assert_eq!(status.expect("joined"), 200);
    }
    assert_eq!(tagged.requests(), 4);
    assert_eq!(localapi.requests(), before, "answer cached");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_address_fails_over_and_is_skipped_while_down() {
    let live = TestUpstream::start();
    let dead = dead_upstream();
    let config = base_config("")
        + &format!(
            r#"
[upstreams.pair]
urls = ["http://{dead}", "{live}"]
fail_timeout = "30s"
[upstreams.pair_post]
urls = ["http://{dead}", "{live}"]
"#,
            live = live.url()
        )
        + &route("pair", "pair.test", "pair")
        + &route("pair_post", "post.test", "pair_post");
    let tg = Tailgate::start(&config);

    // A request with a body is not replayed: the dead first address answers 502.
    let r = send(
        tg.addr(),
        Method::POST,
        "post.test",
        "/form",
        &[],
        b"a=1".to_vec(),
    )
    .await
    .expect("sent");
    assert_eq!(r.status, 502);
    assert_eq!(live.requests(), 0);

    // An idempotent request fails over to the next address.
    let r = get(tg.addr(), "pair.test", "/one").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(live.requests(), 1);
    stderr_line(&tg, &format!("trying the next address, {}", live.addr));
    stderr_line(&tg, "upstream address marked down");
    let rec = tg.wait_log("request_uri", "/one");
    assert_eq!(rec["upstream_addr"], live.addr.to_string());

    // While down, the dead address is tried last: no second failover.
    let r = get(tg.addr(), "pair.test", "/two").await;
    assert_eq!(r.status, 200);
    let failovers = tg
        .stderr
        .snapshot()
        .iter()
        .filter(|l| {
            l.contains("upstream pair: connecting") && l.contains("trying the next address")
        })
        .count();
    assert_eq!(failovers, 1, "{}", tg.stderr.snapshot().join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn active_health_checks_take_a_dead_address_out_before_any_request() {
    let live = TestUpstream::start();
    let dead = dead_upstream();
    let config = base_config("")
        + &format!(
            r#"
[upstreams.pair]
urls = ["http://{dead}", "{live}"]
fail_timeout = "30s"
health_check = {{ path = "/status/204", interval = "100ms", timeout = "1s" }}
"#,
            live = live.url()
        )
        + &route("pair", "pair.test", "pair");
    let tg = Tailgate::start(&config);
    let line = stderr_line(&tg, "upstream address marked down");
    assert!(
        line.contains(&format!("address={dead}")) && line.contains("health check:"),
        "{line}"
    );
    // Probed in the same round; its answer may land after the dead one's
    // refusal.
    let live_probed = eventually(Duration::from_secs(5), || async { live.requests() >= 1 }).await;
    assert!(live_probed, "the live address is probed too");

    let r = get(tg.addr(), "pair.test", "/one").await;
    assert_eq!(r.status, 200);
    assert!(
        !tg.stderr
            .snapshot()
            .iter()
            .any(|l| l.contains("trying the next address")),
        "no request was sent to the address known to be down"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_handshake_has_its_own_timeout() {
    let dir = TempDir::new("tls-timeout");
    let ca = TestCa::new("Tailnet test CA");
    // Accepts TCP, never answers the ClientHello (a certificate still being issued).
    let silent = tailgate_e2e::upstream::silent_upstream();
    let config = base_config("")
        + &format!(
            r#"
[upstreams.slow]
url = "https://localhost:{port}"
ca_file = "{ca}"
connect_timeout = "5s"
tls_handshake_timeout = "400ms"
"#,
            port = silent.port(),
            ca = ca.write(dir.path(), "ca").display()
        )
        + &route("slow", "slow.test", "slow");
    let tg = Tailgate::start(&config);
    let started = std::time::Instant::now();
    assert_eq!(get(tg.addr(), "slow.test", "/").await.status, 502);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(380) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let line = stderr_line(&tg, "upstream slow: connecting:");
    assert!(
        line.contains(&format!(
            "TLS handshake with localhost:{}: timed out after 400ms",
            silent.port()
        )),
        "{line}"
    );
}
