//! The production config through the real `tailgate`: `tailgate check`,
//! Fly's health check and the routes, and memory at the concurrency limit.

use super::*;

/// fly/config.toml with the image's paths mapped back to this checkout (see
/// fly/Dockerfile), the listener and the admin API on free loopback ports
/// and, when given, every tailnet upstream pointed at `upstream`.
fn fly_config_here(upstream: Option<&str>) -> String {
    let root = repo_root();
    let mut text = read("fly/config.toml");
    let mut swap = |from: &str, to: String| {
        assert!(
            text.contains(from),
            "fly/config.toml no longer contains {from}: update this test's mapping"
        );
        text = text.replace(from, &to);
    };
    swap("\"0.0.0.0:8080\"", "\"127.0.0.1:0\"".into());
    // The admin API on a free port too: 12345 may be taken on this machine.
    swap("\"127.0.0.1:12345\"", "\"127.0.0.1:0\"".into());
    swap(
        "/usr/local/lib/tailgate/plugins/",
        format!("{}/plugins/target/wasm32-wasip2/release/", root.display()),
    );
    swap(
        "/usr/local/share/tailgate/www/",
        format!("{}/www/", root.display()),
    );
    swap(
        "\"/var/lib/tailgate/cache\"",
        format!("\"{}\"", test_cache_dir().display()),
    );
    // The ban list's state file beside the test's config, not in /var/lib.
    swap("\"/var/lib/tailgate/state\"", "\".tailgate/state\"".into());
    if let Some(up) = upstream {
        for service in ["www", "blog", "git"] {
            swap(
                &format!("\"https://{service}.tail8d86e.ts.net\""),
                format!("\"{up}\""),
            );
        }
        // The allowlist admits the local upstream instead of the tailnet;
        // there is no tailscaled here to vouch for the peer's tag.
        let target = up.trim_start_matches("http://").trim_end_matches('/');
        swap(
            "allow = [\"*.tail8d86e.ts.net:443\"]",
            format!("allow = [\"{target}\"]"),
        );
        swap(
            "require_tag = \"tag:flyio-target\"",
            "# require_tag: no tailscaled here".into(),
        );
        // Telemetry goes to a closed loopback port: pushes fail and are
        // retried in the background, as when Loki/Prometheus are down.
        let dead = tailgate_e2e::upstream::dead_upstream();
        for service in ["prometheus", "loki"] {
            swap(
                &format!("https://{service}.tail8d86e.ts.net/"),
                format!("http://{dead}/"),
            );
        }
    }
    text
}

#[test]
fn tailgate_check_accepts_the_fly_config() {
    for plugin in ["header_rewrite", "rate_limit", "log_shape", "ban"] {
        tailgate_e2e::plugin_wasm(plugin);
    }
    let dir = TempDir::new("fly-check");
    let cfg = dir.write("config.toml", &fly_config_here(None));
    let out = Command::new(tailgate_bin())
        .arg("check")
        .arg(&cfg)
        .output()
        .expect("run tailgate check");
    assert!(
        out.status.success(),
        "tailgate check rejects fly/config.toml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fly_config_passes_flys_health_check_and_serves_its_routes() {
    for plugin in ["header_rewrite", "rate_limit", "log_shape", "ban"] {
        tailgate_e2e::plugin_wasm(plugin);
    }
    let up = TestUpstream::start();
    let tg = Tailgate::start(&fly_config_here(Some(&up.url())));

    // Fly's check comes with the machine's address as Host: no route names it.
    let health = get(tg.addr(), "172.19.4.2:8080", "/healthz").await;
    assert_eq!(
        health.status, 200,
        "Fly's health check on /healthz must pass"
    );
    assert_eq!(
        up.requests(),
        0,
        "the health check never reaches an upstream"
    );

    // The static sites: cached, with their headers.
    for host in ["www.example.com", "blog.example.com"] {
        let r = get(tg.addr(), host, "/").await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(
            r.header("strict-transport-security").as_deref(),
            Some("max-age=31536000")
        );
        assert_eq!(
            r.header("x-cache-status").as_deref(),
            Some("MISS"),
            "{host}"
        );
        assert_eq!(get(tg.addr(), host, "/.env").await.status, 403, "{host}");
    }
    // The forge: headers on every answer, /swagger denied in every spelling.
    let r = get(tg.addr(), "git.example.com", "/api/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options").as_deref(), Some("SAMEORIGIN"));
    for path in ["/swagger", "/swagger/index.html", "//swagger"] {
        let r = get(tg.addr(), "git.example.com", path).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(r.header("strict-transport-security").is_some(), "{path}");
    }

    let out = raw_exchange(
        tg.addr(),
        b"GET / HTTP/1.1\r\nHost: scanner.invalid\r\n\r\n",
    )
    .await
    .expect("connect");
    assert!(
        out.is_empty(),
        "unknown hosts get no response: {:?}",
        String::from_utf8_lossy(&out)
    );
}

/// What the VM needs besides tailgate, MiB. Not measurable here (no
/// tailscaled binary, no Firecracker guest): the guest kernel and Fly's init
/// take about 40 MiB of a machine's memory, and tailscaled on a small tailnet
/// stays around 30–60 MiB resident, so 100 MiB is budgeted for it.
const SYSTEM_MIB: u64 = 40;
const TAILSCALED_MIB: u64 = 100;

#[tokio::test(flavor = "multi_thread")]
async fn the_vm_memory_covers_tailgate_at_the_concurrency_hard_limit() {
    for plugin in ["header_rewrite", "rate_limit", "log_shape", "ban"] {
        tailgate_e2e::plugin_wasm(plugin);
    }
    let fly = toml_file("fly/fly.toml");
    let hard = usize::try_from(
        fly["http_service"]["concurrency"]["hard_limit"]
            .as_integer()
            .expect("hard_limit"),
    )
    .expect("limit");
    let vm = &fly["vm"].as_array().expect("[[vm]]")[0];
    let vm_mib = fly_memory_mib(vm["memory"].as_str().expect("vm memory"));

    let up = TestUpstream::start();
    let tg = Tailgate::start(&fly_config_here(Some(&up.url())));
    let addr = tg.addr();
    let idle_mib = tg.rss() >> 20;
    // Two waves of `hard_limit` requests in flight at once, each held 300 ms
    // by the upstream, through the route's plugin chain.
    for _ in 0..2 {
        let wave: Vec<_> = (0..hard)
            .map(|_| {
                tokio::spawn(async move { get(addr, "git.example.com", "/delay/300").await.status })
            })
            .collect();
        for request in wave {
            assert_eq!(request.await.expect("request task"), 200);
        }
    }
    let peak_mib = tg.peak_rss() >> 20;
    eprintln!(
        "tailgate RSS: {idle_mib} MiB idle, peak {peak_mib} MiB with {hard} requests in flight"
    );
    assert!(
        peak_mib + TAILSCALED_MIB + SYSTEM_MIB <= vm_mib,
        "[[vm]] memory {vm_mib} MiB < tailgate peak {peak_mib} + tailscaled {TAILSCALED_MIB} + system {SYSTEM_MIB}"
    );
}
