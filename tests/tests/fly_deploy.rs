//! The Fly.io deployment (`fly/`), tested as far as a machine without Docker
//! or Fly allows: `fly/start.sh` run end to end against stand-in `tailscaled`,
//! `tailscale`, `tailgate` and `setpriv`; `fly.toml`, the Dockerfile, the
//! production config and the tailnet policy read and checked against each
//! other; and the production config run through the real `tailgate`.

#[path = "fly_deploy/dockerfile.rs"]
mod dockerfile;
#[path = "fly_deploy/hujson.rs"]
mod hujson;
#[path = "fly_deploy/start_sh.rs"]
mod start_sh;

use std::process::Command;
use std::time::Duration;

use dockerfile::Dockerfile;
use start_sh::{StartSh, AUTHKEY};
use tailgate_e2e::client::{get, raw_exchange};
use tailgate_e2e::process::{tailgate_bin, test_cache_dir, Tailgate, TempDir};
use tailgate_e2e::repo_root;
use tailgate_e2e::upstream::TestUpstream;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn toml_file(rel: &str) -> toml::Value {
    read(rel)
        .parse()
        .unwrap_or_else(|e| panic!("{rel} is not valid TOML: {e}"))
}

/// A Fly duration: an integer (seconds) or a string such as "60s" or "5m".
fn fly_duration(v: &toml::Value, what: &str) -> Duration {
    match v {
        toml::Value::Integer(s) => {
            SECS(u64::try_from(*s).unwrap_or_else(|_| panic!("{what} is negative")))
        }
        toml::Value::String(s) => {
            humantime::parse_duration(s).unwrap_or_else(|e| panic!("{what} = {s:?}: {e}"))
        }
        other => panic!("{what} is neither seconds nor a duration string: {other}"),
    }
}

/// A Fly memory size such as "256mb" or "1gb", in MiB.
fn fly_memory_mib(s: &str) -> u64 {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("gb") {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix("mb") {
        (n, 1)
    } else {
        (lower.as_str(), 1)
    };
    num.trim()
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("vm memory {s:?} is not a size"))
        * mult
}

/// The default of `NAME=${NAME:-default}` in start.sh, or of `readonly NAME=N`.
fn start_sh_default(name: &str) -> String {
    let script = read("fly/start.sh");
    let assign = format!("{name}=${{{name}:-");
    if let Some(at) = script.find(&assign) {
        let rest = &script[at + assign.len()..];
        return rest[..rest.find('}').expect("closing brace")].to_string();
    }
    let readonly = format!("readonly {name}=");
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix(&readonly))
        .unwrap_or_else(|| panic!("start.sh has no default for {name}"));
    line.trim().to_string()
}

// === start.sh ===

#[test]
fn start_sh_and_the_stand_ins_pass_shellcheck() {
    let root = repo_root();
    let out = Command::new("shellcheck")
        .arg("--severity=style")
        .arg("fly/start.sh")
        .arg("scripts/install-test-deps.sh")
        .args(
            ["tailscaled", "tailscale", "tailgate", "setpriv"]
                .map(|b| format!("tests/fixtures/fly/bin/{b}")),
        )
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run shellcheck ({e}): run `bash scripts/install-test-deps.sh` first")
        });
    assert!(
        out.status.success(),
        "shellcheck found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_auth_key_fails_fast_with_the_fix_and_starts_nothing() {
    for run in [
        StartSh::new().unset("TS_AUTHKEY"),
        StartSh::new().env("TS_AUTHKEY", ""),
    ] {
        let mut run = run.spawn();
        let (status, elapsed) = run.wait_exit(SECS(10));
        assert_eq!(status.code(), Some(1), "{}", run.output());
        assert!(elapsed < SECS(3), "took {elapsed:?}");
        let out = run.output();
        assert!(out.contains("TS_AUTHKEY is not set"), "{out}");
        assert!(out.contains("fly secrets set TS_AUTHKEY="), "{out}");
        assert_eq!(
            run.events(),
            Vec::<String>::new(),
            "nothing may start without a key"
        );
    }
}

#[test]
fn bad_settings_are_refused_before_anything_starts() {
    for (key, value, message) in [
        (
            "TS_USERSPACE",
            "maybe",
            "TS_USERSPACE must be true or false",
        ),
        (
            "TS_UP_TIMEOUT",
            "soon",
            "TS_UP_TIMEOUT must be a whole number of seconds",
        ),
        (
            "TS_LOGOUT_TIMEOUT",
            "0",
            "TS_LOGOUT_TIMEOUT must be a whole number of seconds",
        ),
    ] {
        let mut run = StartSh::new().env(key, value).spawn();
        assert_eq!(
            run.exit_code(SECS(10)),
            1,
            "{key}={value}: {}",
            run.output()
        );
        assert!(
            run.output().contains(message),
            "{key}={value}: {}",
            run.output()
        );
        assert_eq!(run.events(), Vec::<String>::new());
    }
}

#[test]
fn a_config_that_fails_tailgate_check_stops_before_joining_the_tailnet() {
    let mut run = StartSh::new().env("FAKE_TAILGATE_CHECK", "fail").spawn();
    assert_eq!(run.exit_code(SECS(10)), 1, "{}", run.output());
    let out = run.output();
    assert!(
        out.contains("unknown field `bogus`"),
        "the check's own error is shown: {out}"
    );
    assert!(
        out.contains("failed 'tailgate check'") && out.contains("not joining the tailnet"),
        "{out}"
    );
    let events = run.events();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("tailgate check ") && e.ends_with("as=tailgate")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("tailscale")),
        "no tailnet contact: {events:?}"
    );
}

#[test]
fn joins_the_tailnet_runs_tailgate_and_on_sigterm_drains_then_logs_out() {
    let mut run = StartSh::new().spawn();
    run.wait_event("tailgate run", SECS(15));

    run.assert_order(&[
        "tailgate check",
        "tailscaled start",
        "tailscale up",
        "tailgate run",
    ]);
    let daemon = run.event("tailscaled start").expect("tailscaled started");
    assert!(
        daemon.contains("--state=mem:"),
        "ephemeral node, no state on disk: {daemon}"
    );
    assert!(
        !daemon.contains("--tun=userspace-networking"),
        "TUN is the default: {daemon}"
    );
    let up = run.event("tailscale up --").expect("tailscale up");
    assert!(up.contains("--hostname=edge-ams-3d8d9e3b7e5e89"), "{up}");
    assert!(up.contains("--advertise-tags=tag:flyio-proxy"), "{up}");
    let timeout: u64 = up
        .split_whitespace()
        .find_map(|a| {
            a.strip_prefix("--timeout=")?
                .strip_suffix('s')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("tailscale up has no --timeout=Ns: {up}"));
    assert!(
        (1..=20).contains(&timeout),
        "timeout {timeout}s within TS_UP_TIMEOUT=20: {up}"
    );
    assert_eq!(
        run.event("tailscale up read auth key").as_deref(),
        Some(format!("tailscale up read auth key: {AUTHKEY}").as_str()),
        "the key reaches tailscale up through a file"
    );
    assert!(run
        .event("tailscale up got the auth key on its command line")
        .is_none());
    let tailgate = run.event("tailgate run").expect("tailgate run");
    assert!(
        tailgate.contains("as=tailgate"),
        "tailgate runs as TAILGATE_USER: {tailgate}"
    );
    assert!(
        tailgate.contains("authkey=absent"),
        "tailgate must not inherit TS_AUTHKEY: {tailgate}"
    );
    assert!(run.output().contains("tailnet is up"), "{}", run.output());
    let key_files = std::fs::read_dir(run.state_file("../tailscale"))
        .expect("TS_STATE_DIR")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("authkey"))
        .count();
    assert_eq!(
        key_files, 0,
        "the auth key file is deleted once the node is up"
    );

    // Fly's kill_signal reaches tailgate at once, while the tailnet is still up.
    run.signal("TERM");
    let got = run.wait_event("tailgate got SIGTERM", SECS(3));
    assert!(got.ends_with("while the tailnet is Running"), "{got}");
    assert_eq!(
        run.exit_code(SECS(15)),
        0,
        "tailgate's clean exit is start.sh's: {}",
        run.output()
    );
    run.assert_order(&[
        "tailgate got SIGTERM",
        "tailgate drained, exit 0",
        "tailscale logout",
        "tailscale logged out",
        "tailscaled got SIGTERM",
    ]);
    assert!(
        !run.output().contains(AUTHKEY),
        "the auth key leaked into the log: {}",
        run.output()
    );
    assert!(
        std::fs::read_dir(run.state_file("../tailscale"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the auth key file is removed"
    );
}

#[test]
fn sigint_is_forwarded_as_sigterm_too() {
    let mut run = StartSh::new().spawn();
    run.wait_event("tailgate run", SECS(15));
    run.signal("INT");
    run.wait_event("tailgate got SIGTERM", SECS(3));
    assert_eq!(run.exit_code(SECS(15)), 0, "{}", run.output());
    run.assert_order(&[
        "tailgate got SIGTERM",
        "tailscale logout",
        "tailscaled got SIGTERM",
    ]);
}

#[test]
fn userspace_mode_starts_tailscaled_without_tun_and_with_socks5() {
    let mut run = StartSh::new()
        .env("TS_USERSPACE", "true")
        .env("TS_SOCKS5_SERVER", "localhost:1080")
        .env("TS_EXTRA_ARGS", "--accept-dns=false  --netfilter-mode=off")
        .unset("TAILGATE_USER")
        .spawn();
    run.wait_event("tailgate run", SECS(15));
    let up = run.event("tailscale up --").expect("tailscale up");
    assert!(
        up.ends_with(" --accept-dns=false --netfilter-mode=off"),
        "TS_EXTRA_ARGS, split on spaces: {up}"
    );
    let daemon = run.event("tailscaled start").expect("tailscaled started");
    assert!(daemon.contains("--tun=userspace-networking"), "{daemon}");
    assert!(
        daemon.contains("--socks5-server=localhost:1080"),
        "{daemon}"
    );
    let tailgate = run.event("tailgate run").expect("tailgate run");
    assert!(
        tailgate.contains("as=unchanged"),
        "no TAILGATE_USER, no setpriv: {tailgate}"
    );
    assert!(run.event("setpriv").is_none());
    run.signal("TERM");
    assert_eq!(run.exit_code(SECS(15)), 0, "{}", run.output());
}

#[test]
fn a_node_that_never_reaches_running_times_out_and_cleans_up() {
    let mut run = StartSh::new()
        .env("FAKE_TS_SCENARIO", "never-running")
        .env("TS_UP_TIMEOUT", "2")
        .spawn();
    let (status, elapsed) = run.wait_exit(SECS(20));
    assert_eq!(status.code(), Some(1), "{}", run.output());
    assert!(
        elapsed >= SECS(2),
        "gave up before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < SECS(10),
        "the timeout was not enforced: {elapsed:?}"
    );
    let out = run.output();
    assert!(out.contains("did not reach Running within 2s"), "{out}");
    assert!(
        out.contains("backend state: Starting"),
        "the last state is reported: {out}"
    );
    assert!(
        run.event("tailgate run").is_none(),
        "tailgate must not start"
    );
    run.assert_order(&["tailscale up", "tailscale logout", "tailscaled got SIGTERM"]);
    assert!(
        run.pid_gone_within("up.pid", SECS(3)),
        "the hung tailscale up is stopped"
    );
}

#[test]
fn a_rejected_auth_key_is_reported_at_once_with_tailscales_words() {
    let mut run = StartSh::new()
        .env("FAKE_TS_SCENARIO", "auth-failure")
        .env("TS_UP_TIMEOUT", "30")
        .spawn();
    let (status, elapsed) = run.wait_exit(SECS(20));
    assert_eq!(status.code(), Some(1), "{}", run.output());
    assert!(
        elapsed < SECS(10),
        "waited for the timeout instead of failing: {elapsed:?}"
    );
    let out = run.output();
    assert!(out.contains("tailscale up failed with status 1"), "{out}");
    assert!(
        out.contains("invalid key: unable to validate API key"),
        "{out}"
    );
    assert!(out.contains("Check the TS_AUTHKEY secret"), "{out}");
    assert!(run.event("tailgate run").is_none());
    run.assert_order(&["tailscale up", "tailscaled got SIGTERM"]);
}

#[test]
fn the_node_name_is_made_a_valid_hostname() {
    let mut run = StartSh::new()
        .env("FAKE_TS_SCENARIO", "auth-failure")
        .env("TS_HOSTNAME", "Edge Proxy__AMS.1-")
        .spawn();
    run.exit_code(SECS(20));
    let up = run.event("tailscale up --").expect("tailscale up");
    assert!(up.contains("--hostname=edge-proxy-ams-1 "), "{up}");

    let long = "x".repeat(80);
    let mut run = StartSh::new()
        .env("FAKE_TS_SCENARIO", "auth-failure")
        .env("FLY_APP_NAME", &long)
        .spawn();
    run.exit_code(SECS(20));
    let up = run.event("tailscale up --").expect("tailscale up");
    assert!(
        up.contains(&format!("--hostname={} ", "x".repeat(63))),
        "at most 63 characters: {up}"
    );
}

#[test]
fn tailgates_own_exit_status_is_kept_and_the_node_still_logs_out() {
    let mut run = StartSh::new().env("FAKE_TAILGATE_EXIT", "3").spawn();
    assert_eq!(run.exit_code(SECS(20)), 3, "{}", run.output());
    assert!(
        run.output().contains("tailgate exited with status 3"),
        "{}",
        run.output()
    );
    run.assert_order(&[
        "tailgate exit 3",
        "tailscale logout",
        "tailscaled got SIGTERM",
    ]);
}

#[test]
fn tailscaled_dying_stops_tailgate_and_fails_the_machine() {
    let mut run = StartSh::new()
        .env("FAKE_TS_SCENARIO", "daemon-crash")
        .spawn();
    assert_eq!(run.exit_code(SECS(20)), 1, "{}", run.output());
    let out = run.output();
    assert!(
        out.contains("tailscaled exited with status 1 while tailgate was running"),
        "{out}"
    );
    assert!(out.contains("skipping tailscale logout"), "{out}");
    run.assert_order(&[
        "tailgate run",
        "tailscaled crash",
        "tailgate got SIGTERM",
        "tailgate drained",
    ]);
    assert!(run.event("tailscale logout").is_none());
}

#[test]
fn tailscaled_failing_to_start_is_reported_with_the_userspace_hint() {
    let mut run = StartSh::new()
        .env("FAKE_TS_SCENARIO", "daemon-fails")
        .spawn();
    let (status, elapsed) = run.wait_exit(SECS(20));
    assert_eq!(status.code(), Some(1), "{}", run.output());
    assert!(elapsed < SECS(10), "{elapsed:?}");
    let out = run.output();
    assert!(
        out.contains("/dev/net/tun does not exist"),
        "tailscaled's own error is shown: {out}"
    );
    assert!(
        out.contains("tailscaled exited with status 1 before it was ready"),
        "{out}"
    );
    assert!(out.contains("TS_USERSPACE=true"), "{out}");
    assert!(run.event("tailscale up").is_none());
}

#[test]
fn sigterm_during_start_up_aborts_and_cleans_up() {
    let mut run = StartSh::new()
        .env("FAKE_TS_SCENARIO", "never-running")
        .env("TS_UP_TIMEOUT", "60")
        .spawn();
    run.wait_event("tailscale up --", SECS(15));
    run.signal("TERM");
    let (status, elapsed) = run.wait_exit(SECS(15));
    assert_eq!(status.code(), Some(143), "{}", run.output());
    assert!(elapsed < SECS(15));
    assert!(
        run.output().contains("received SIGTERM during start-up"),
        "{}",
        run.output()
    );
    assert!(run.event("tailgate run").is_none());
    run.assert_order(&["tailscale up", "tailscale logout", "tailscaled got SIGTERM"]);
    assert!(
        run.pid_gone_within("up.pid", SECS(3)),
        "tailscale up is stopped"
    );
}

// === fly.toml, the production config, the Dockerfile, the tailnet policy ===

/// Tailgate's drain timeout as fly/config.toml sets it.
fn drain_timeout() -> Duration {
    let config = read("fly/config.toml");
    let line = config
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .find(|l| l.starts_with("drain_timeout"))
        .expect("fly/config.toml names drain_timeout");
    let value = line.split('"').nth(1).expect("drain_timeout = \"...\"");
    humantime::parse_duration(value).expect("drain_timeout is a duration")
}

fn listen_ports(config: &toml::Value) -> Vec<(String, u16)> {
    config["server"]["listen"]
        .as_array()
        .expect("server.listen")
        .iter()
        .map(|a| {
            let addr: std::net::SocketAddr = a
                .as_str()
                .expect("address")
                .parse()
                .expect("socket address");
            (addr.ip().to_string(), addr.port())
        })
        .collect()
}

#[test]
fn fly_toml_has_the_required_keys_and_consistent_ports_and_timeouts() {
    let fly = toml_file("fly/fly.toml");
    let config = toml_file("fly/config.toml");
    for key in ["app", "primary_region"] {
        assert!(
            fly[key].as_str().is_some_and(|s| !s.is_empty()),
            "fly.toml needs {key}"
        );
    }
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));
    assert_eq!(fly["deploy"]["strategy"].as_str(), Some("bluegreen"));
    assert!(repo_root()
        .join("fly")
        .join(
            fly["build"]["dockerfile"]
                .as_str()
                .expect("build.dockerfile")
        )
        .exists());

    let http = &fly["http_service"];
    let port = http["internal_port"].as_integer().expect("internal_port");
    for (ip, p) in listen_ports(&config) {
        assert_eq!(
            i64::from(p),
            port,
            "fly/config.toml listens on {ip}:{p}, fly.toml's internal_port is {port}"
        );
        assert!(
            ip == "0.0.0.0" || ip == "::",
            "Fly Proxy cannot reach {ip}: listen on all interfaces"
        );
    }
    assert_eq!(http["force_https"].as_bool(), Some(true));
    assert_eq!(http["auto_stop_machines"].as_str(), Some("off"));
    assert_eq!(
        http["auto_start_machines"].as_bool(),
        Some(false),
        "a machine stopped in an emergency must stay stopped"
    );
    assert!(http["min_machines_running"].as_integer().unwrap_or(0) >= 1);
    let concurrency = &http["concurrency"];
    assert_eq!(concurrency["type"].as_str(), Some("requests"));
    let soft = concurrency["soft_limit"].as_integer().expect("soft_limit");
    let hard = concurrency["hard_limit"].as_integer().expect("hard_limit");
    assert!(
        0 < soft && soft <= hard,
        "soft_limit {soft}, hard_limit {hard}"
    );

    let checks = http["checks"].as_array().expect("[[http_service.checks]]");
    let check = checks
        .iter()
        .find(|c| c["path"].as_str() == Some("/healthz"))
        .expect("an HTTP check on /healthz");
    assert_eq!(
        check["method"]
            .as_str()
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some("GET")
    );
    let interval = fly_duration(&check["interval"], "check interval");
    let check_timeout = fly_duration(&check["timeout"], "check timeout");
    let grace = fly_duration(&check["grace_period"], "check grace_period");
    assert!(
        check_timeout < interval,
        "check timeout {check_timeout:?} >= interval {interval:?}"
    );

    // kill_timeout covers the drain plus start.sh's logout and tailscaled stop.
    let kill_timeout = fly_duration(&fly["kill_timeout"], "kill_timeout");
    let env = &fly["env"];
    let logout: u64 = env["TS_LOGOUT_TIMEOUT"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| start_sh_default("TS_LOGOUT_TIMEOUT"))
        .parse()
        .expect("TS_LOGOUT_TIMEOUT");
    let stop: u64 = start_sh_default("TAILSCALED_STOP_TIMEOUT")
        .parse()
        .expect("stop timeout");
    let needed = drain_timeout() + SECS(logout + stop);
    assert!(
        kill_timeout > needed,
        "kill_timeout {kill_timeout:?} must exceed drain + logout + stop = {needed:?}"
    );
    assert!(
        kill_timeout <= SECS(300),
        "shared-CPU machines allow at most 300 s"
    );

    // A deploy waits long enough for a machine that joins the tailnet slowly.
    let up_timeout: u64 = env["TS_UP_TIMEOUT"]
        .as_str()
        .expect("TS_UP_TIMEOUT")
        .parse()
        .expect("seconds");
    let wait = fly_duration(&fly["deploy"]["wait_timeout"], "deploy.wait_timeout");
    assert!(
        wait > grace + SECS(up_timeout),
        "wait_timeout {wait:?} vs grace {grace:?} + up {up_timeout}s"
    );

    assert_eq!(
        env["TAILGATE_CONFIG"].as_str(),
        Some(start_sh_default("TAILGATE_CONFIG").as_str())
    );
    assert!(
        env.get("TS_AUTHKEY").is_none(),
        "the auth key is a secret, never in fly.toml"
    );

    let vm = &fly["vm"].as_array().expect("[[vm]]")[0];
    assert!(fly_memory_mib(vm["memory"].as_str().expect("vm memory")) >= 256);
}

#[test]
fn fly_config_trusts_fly_proxy_for_the_client_ip() {
    let config = toml_file("fly/config.toml");
    assert_eq!(
        config["server"]["client_ip_header"].as_str(),
        Some("Fly-Client-IP")
    );
    let trusted = config["server"]["trusted_proxies"]
        .as_array()
        .expect("trusted_proxies");
    assert!(
        !trusted.is_empty(),
        "Fly-Client-IP is believed only from Fly Proxy"
    );
    for net in trusted {
        let net = net.as_str().expect("cidr");
        assert!(
            !net.starts_with("0.0.0.0/0") && !net.starts_with("::/0"),
            "{net} trusts everyone"
        );
        assert!(
            !net.starts_with("100.64."),
            "{net} would trust tailnet peers"
        );
    }
}

#[test]
fn dockerfile_copies_files_that_exist_and_runs_the_ci_build_commands() {
    let root = repo_root();
    let docker = Dockerfile::parse(&read("fly/Dockerfile")).unwrap_or_else(|e| panic!("{e}"));
    let ignore = read("fly/Dockerfile.dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();

    for image in docker.stages.iter().map(|s| &s.image) {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && tag != "stable",
            "{image}: pin a version"
        );
    }
    let build = docker.stage("build").expect("a stage named build");
    assert!(build.image.starts_with("rust:"), "{}", build.image);
    assert!(docker
        .stage("tailscale")
        .expect("a tailscale stage")
        .image
        .starts_with("tailscale/tailscale:v"));

    let names: Vec<&str> = docker
        .stages
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    for stage in &docker.stages {
        for copy in &stage.copies {
            match &copy.from {
                Some(from) => assert!(
                    names.contains(&from.as_str()),
                    "COPY --from={from}: no such stage"
                ),
                None => {
                    for src in &copy.sources {
                        assert!(root.join(src).exists(), "COPY {src}: not in the repository");
                        let top = src.split('/').next().unwrap_or(src);
                        assert!(
                            !ignored.contains(&src.as_str()) && !ignored.contains(&top),
                            "COPY {src}: excluded by the dockerignore"
                        );
                    }
                }
            }
        }
    }

    // Everything both cargo workspaces need is copied into the build stage.
    let copied: Vec<String> = build
        .copies
        .iter()
        .flat_map(|c| c.sources.clone())
        .collect();
    let covered = |path: &str| {
        copied
            .iter()
            .any(|c| path == c || path.starts_with(&format!("{c}/")))
    };
    let members = |manifest: &str| -> Vec<String> {
        toml_file(manifest)["workspace"]["members"]
            .as_array()
            .expect("workspace.members")
            .iter()
            .map(|m| m.as_str().expect("member").to_string())
            .collect()
    };
    for m in members("Cargo.toml") {
        assert!(
            covered(&m),
            "workspace member {m} is not copied into the build stage"
        );
    }
    for m in members("plugins/Cargo.toml") {
        assert!(
            covered(&format!("plugins/{m}")),
            "plugin workspace member {m} is not copied"
        );
    }
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "wit",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/.cargo",
    ] {
        assert!(
            covered(needed),
            "{needed} is not copied into the build stage"
        );
    }

    // The build commands are the Makefile's (which CI runs), word for word.
    let makefile = read("Makefile");
    let mut ci_commands = Vec::new();
    for target in ["plugins", "build"] {
        let recipe = make_recipe_cargo(&makefile, target);
        assert!(
            build.runs.iter().any(|r| r.contains(&recipe)),
            "the build stage does not run `{recipe}` (Makefile target {target})"
        );
        ci_commands.push(recipe);
    }
    let cargo_calls: Vec<&str> = build
        .runs
        .iter()
        .flat_map(|r| r.split("&&").map(str::trim))
        .filter(|c| c.starts_with("cargo "))
        .collect();
    for call in cargo_calls {
        assert!(
            ci_commands.iter().any(|c| c.ends_with(call)),
            "`{call}` is not a command CI runs ({ci_commands:?})"
        );
    }
}

/// The one cargo command of a Makefile target (with its `cd`, if any).
fn make_recipe_cargo(makefile: &str, target: &str) -> String {
    dockerfile::make_recipe(makefile, target)
        .into_iter()
        .find(|l| l.contains("cargo build"))
        .unwrap_or_else(|| panic!("Makefile target {target} runs no cargo build"))
}

#[test]
fn the_image_holds_what_the_fly_config_and_start_sh_name() {
    let docker = Dockerfile::parse(&read("fly/Dockerfile")).unwrap_or_else(|e| panic!("{e}"));
    let runtime = docker.runtime();
    let config = toml_file("fly/config.toml");
    let fly = toml_file("fly/fly.toml");
    let dest_of = |src: &str| -> String {
        runtime
            .copies
            .iter()
            .find(|c| c.from.is_none() && c.sources.iter().any(|s| s == src))
            .map(|c| c.dest.clone())
            .unwrap_or_else(|| panic!("the runtime image does not copy {src}"))
    };

    let config_path = dest_of("fly/config.toml");
    assert_eq!(config_path, start_sh_default("TAILGATE_CONFIG"));
    assert_eq!(runtime.env.get("TAILGATE_CONFIG"), Some(&config_path));
    assert_eq!(
        fly["env"]["TAILGATE_CONFIG"].as_str(),
        Some(config_path.as_str())
    );

    let start = dest_of("fly/start.sh");
    assert_eq!(
        runtime.entrypoint.as_deref(),
        Some(&[start][..]),
        "start.sh is the entrypoint (exec form)"
    );

    let port = u16::try_from(
        fly["http_service"]["internal_port"]
            .as_integer()
            .expect("port"),
    )
    .expect("port");
    assert_eq!(runtime.expose, vec![port]);

    // Plugins: each one the config names is built by the plugin workspace and shipped.
    let plugin_copy = runtime
        .copies
        .iter()
        .find(|c| {
            c.from.as_deref() == Some("build") && c.sources.iter().any(|s| s.contains("plugins"))
        })
        .expect("the runtime image copies the plugins from the build stage");
    let build_runs = docker.stage("build").expect("build").runs.join("\n");
    for src in &plugin_copy.sources {
        assert!(
            build_runs.contains(src.trim_end_matches('/')),
            "the build stage never writes {src}"
        );
    }
    let plugin_members = toml_file("plugins/Cargo.toml")["workspace"]["members"].clone();
    for (name, path) in config["plugins"].as_table().expect("[plugins]") {
        let path = path.as_str().expect("plugin path");
        let (dir, file) = path.rsplit_once('/').expect("absolute plugin path");
        assert_eq!(
            format!("{dir}/"),
            plugin_copy.dest,
            "plugin {name}: {path} is not where the image puts plugins"
        );
        let stem = file.strip_suffix(".wasm").expect(".wasm");
        assert!(
            plugin_members
                .as_array()
                .expect("members")
                .iter()
                .any(|m| m.as_str().map(|m| m.replace('-', "_")) == Some(stem.into())),
            "plugin {name}: no plugin crate builds {file}"
        );
        assert!(
            !build_runs.contains(&format!("rm /out/plugins/{file}")),
            "plugin {name}: {file} is removed from the image"
        );
    }

    // Error pages are in the image at the paths the routes name.
    for route in config["routes"].as_array().expect("routes") {
        for page in route["error_pages"]
            .as_table()
            .into_iter()
            .flat_map(|t| t.values())
        {
            let page = page.as_str().expect("page path");
            assert!(
                runtime
                    .copies
                    .iter()
                    .any(|c| c.dest == page
                        && c.sources.iter().all(|s| repo_root().join(s).exists())),
                "route {}: error page {page} is not copied into the image",
                route["name"]
            );
        }
    }

    // The plugin cache and the proxy's user exist and belong together.
    let cache = config["plugin_runtime"]["cache_dir"]
        .as_str()
        .expect("cache_dir");
    let user = runtime.env.get("TAILGATE_USER").expect("ENV TAILGATE_USER");
    let setup = runtime.runs.join("\n");
    assert!(
        setup.contains("useradd") && setup.contains(&format!(" {user}")),
        "user {user} is created"
    );
    assert!(setup.contains(cache), "{cache} is created");
    assert!(
        setup.contains(&format!("chown -R {user}:{user} "))
            && cache.starts_with("/var/lib/tailgate"),
        "{cache} belongs to {user}"
    );
    assert!(
        setup.contains("ca-certificates"),
        "TLS to upstreams needs CA certificates"
    );
}

#[test]
fn tailnet_policy_lets_the_proxy_reach_targets_on_443_only_and_its_tests_agree() {
    let policy = hujson::parse(&read("fly/tailnet-policy.hujson"))
        .unwrap_or_else(|e| panic!("fly/tailnet-policy.hujson: {e}"));
    let rules = hujson::accept_rules(&policy);
    assert!(hujson::allows(
        &rules,
        "tag:flyio-proxy",
        "tag:flyio-target:443"
    ));
    assert!(!hujson::allows(
        &rules,
        "tag:flyio-proxy",
        "tag:flyio-target:80"
    ));
    assert!(!hujson::allows(
        &rules,
        "tag:flyio-target",
        "tag:flyio-proxy:8080"
    ));

    // Every tag in use has owners.
    let owners = policy["tagOwners"].as_object().expect("tagOwners");
    let mut tags: Vec<String> = Vec::new();
    for r in &rules {
        tags.extend(r.src.iter().cloned());
        tags.extend(r.dst.iter().map(|d| {
            d.rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default()
        }));
    }
    let tests = policy["tests"].as_array().expect("a tests section");
    for t in tests {
        tags.push(t["src"].as_str().expect("test src").to_string());
    }
    for tag in tags.iter().filter(|t| t.starts_with("tag:")) {
        assert!(owners.contains_key(tag), "{tag} has no tagOwners entry");
    }

    // The policy's own tests pass against its rules, and cover the promises.
    let mut accepted = Vec::new();
    let mut denied = Vec::new();
    for t in tests {
        let src = t["src"].as_str().expect("src");
        for dst in t["accept"].as_array().into_iter().flatten() {
            let dst = dst.as_str().expect("dst");
            assert!(
                hujson::allows(&rules, src, dst),
                "test says {src} -> {dst} is accepted; the acls deny it"
            );
            accepted.push(format!("{src} -> {dst}"));
        }
        for dst in t["deny"].as_array().into_iter().flatten() {
            let dst = dst.as_str().expect("dst");
            assert!(
                !hujson::allows(&rules, src, dst),
                "test says {src} -> {dst} is denied; the acls allow it"
            );
            denied.push(format!("{src} -> {dst}"));
        }
    }
    assert!(
        accepted.contains(&"tag:flyio-proxy -> tag:flyio-target:443".to_string()),
        "{accepted:?}"
    );
    assert!(
        denied.contains(&"tag:flyio-proxy -> tag:flyio-target:22".to_string()),
        "{denied:?}"
    );
    assert!(
        denied
            .iter()
            .any(|d| d.starts_with("tag:flyio-target -> tag:flyio-proxy:")),
        "{denied:?}"
    );

    // The machines join with the tag the policy grants.
    let fly = toml_file("fly/fly.toml");
    let node_tag = fly["env"]["TS_TAGS"].as_str().expect("TS_TAGS in fly.toml");
    assert!(
        rules.iter().any(|r| r.src.iter().any(|s| s == node_tag)),
        "{node_tag} is granted nothing"
    );
}

#[test]
fn the_deploy_guide_documents_every_start_sh_setting() {
    let script = read("fly/start.sh");
    let guide = read("docs/deploy-fly.md");
    let settings: Vec<&str> = script
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("TS_") || w.starts_with("TAILGATE_"))
        .collect();
    assert!(
        settings.len() >= 10,
        "start.sh's header lists its settings: {settings:?}"
    );
    for s in settings {
        assert!(
            guide.contains(&format!("`{s}`")),
            "docs/deploy-fly.md does not document {s}"
        );
    }
    for must in [
        "fly deploy --config fly/fly.toml",
        "fly secrets set TS_AUTHKEY=",
        "fly certs add",
        "tailscale logout",
    ] {
        assert!(guide.contains(must), "docs/deploy-fly.md lacks `{must}`");
    }
}

// === the production config through the real binary ===

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
    if let Some(up) = upstream {
        for service in ["grafana", "docs"] {
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
    tailgate_e2e::plugin_wasm("header_rewrite");
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
    tailgate_e2e::plugin_wasm("header_rewrite");
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

    let r = get(tg.addr(), "grafana.example.com", "/api/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
    assert_eq!(
        get(tg.addr(), "docs.example.com", "/.env").await.status,
        403
    );

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
    tailgate_e2e::plugin_wasm("header_rewrite");
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
                tokio::spawn(
                    async move { get(addr, "grafana.example.com", "/delay/300").await.status },
                )
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
