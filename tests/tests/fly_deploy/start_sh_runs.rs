//! `fly/start.sh` run end to end (through `start_sh::StartSh`): settings
//! checked before anything starts, joining the tailnet, signals, drains,
//! log-out, and every way tailscaled or Tailgate can fail.

use super::*;

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
