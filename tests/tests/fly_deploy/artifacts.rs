//! The deployment's files read and checked against each other: `fly.toml`
//! (ports, timeouts, memory), the production config, the Dockerfile and the
//! image it builds, the tailnet policy and the deploy guide.

use super::*;

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
    for (name, entry) in config["plugins"].as_table().expect("[plugins]") {
        // A path, or a table { path, config } (plugin-level config).
        let path = entry
            .as_str()
            .or_else(|| entry.get("path").and_then(|p| p.as_str()))
            .expect("plugin path");
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
