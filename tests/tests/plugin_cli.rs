//! `tailgate plugin test` and `tailgate plugin new` through the real
//! binary: every plugin's `cases.toml` passes, a failing case prints FAIL,
//! the summary line and exit 1, a file that cannot run exits 2, and `plugin
//! new` lays out a crate from the template.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tailgate_e2e::process::{tailgate_bin, TempDir};
use tailgate_e2e::{plugin_wasm, repo_root};

fn tailgate(args: &[&Path]) -> Output {
    Command::new(tailgate_bin())
        .args(args)
        .env_remove("TAILGATE_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run tailgate")
}

fn plugin_test(wasm: &Path, cases: &Path) -> (i32, String, String) {
    let output = tailgate(&[Path::new("plugin"), Path::new("test"), wasm, cases]);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// (wasm file stem, cases file) of every plugin crate that has a cases file.
fn plugins_with_cases() -> Vec<(String, PathBuf)> {
    let plugins = repo_root().join("plugins");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&plugins).expect("plugins/") {
        let dir = entry.expect("entry").path();
        let cases = dir.join("cases.toml");
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        if !cases.is_file() {
            continue;
        }
        let manifest: toml::Table = manifest.parse().expect("Cargo.toml");
        let name = manifest["package"]["name"].as_str().expect("package.name");
        found.push((name.replace('-', "_"), cases));
    }
    found.sort();
    found
}

#[test]
fn every_plugins_cases_file_passes() {
    let plugins = plugins_with_cases();
    let names: Vec<&str> = plugins.iter().map(|(n, _)| n.as_str()).collect();
    for shipped in [
        "header_rewrite",
        "rate_limit",
        "log_shape",
        "plugin_template",
    ] {
        assert!(
            names.contains(&shipped),
            "{shipped} has no cases.toml: {names:?}"
        );
    }
    for (stem, cases) in &plugins {
        let (code, stdout, stderr) = plugin_test(&plugin_wasm(stem), cases);
        assert_eq!(code, 0, "{stem}:\n{stdout}\n{stderr}");
        let summary = stdout.lines().last().unwrap_or_default();
        assert!(summary.ends_with(" passed, 0 failed"), "{stem}: {stdout}");
        assert!(
            stdout.lines().filter(|l| l.starts_with("ok   ")).count() >= 3,
            "{stem}: {stdout}"
        );
        assert_eq!(stderr, "", "{stem}: the report is on stdout");
    }
}

#[test]
fn a_failing_case_prints_fail_the_summary_and_exits_1() {
    let dir = TempDir::new("plugin-cli-fail");
    let cases = dir.write(
        "cases.toml",
        r#"
config = { limits = [{ zone = "z", rate = "1r/s", burst = 0 }] }

[[case]]
name = "first passes"
[[case.step]]
request = {}
expect.continue = {}

[[case]]
name = "second is not a 200"
[[case.step]]
request = {}
repeat = 2
expect.continue = {}
"#,
    );
    let (code, stdout, _) = plugin_test(&plugin_wasm("rate_limit"), &cases);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "ok   first passes");
    assert_eq!(lines[1], "FAIL second is not a 200");
    assert!(
        stdout.contains("expected continue, got respond 429"),
        "{stdout}"
    );
    assert!(
        stdout.contains("limiting requests by zone \"z\""),
        "{stdout}"
    );
    assert_eq!(lines.last(), Some(&"1 passed, 1 failed"));
}

#[test]
fn cases_that_cannot_run_exit_2_with_the_reason() {
    let dir = TempDir::new("plugin-cli-broken");
    let typo = dir.write(
        "typo.toml",
        "[[case]]\nname = \"x\"\n[[case.step]]\nrequest = {}\nexpect.contine = {}\n",
    );
    let (code, stdout, stderr) = plugin_test(&plugin_wasm("rate_limit"), &typo);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("unknown field `contine`"), "{stderr}");

    let ok = dir.write("ok.toml", "[[case]]\nname = \"x\"\n");
    let missing = dir.path().join("missing.wasm");
    let (code, _, stderr) = plugin_test(&missing, &ok);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing.wasm"), "{stderr}");

    let (code, _, stderr) = plugin_test(&plugin_wasm("rate_limit"), &dir.path().join("none.toml"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("none.toml"), "{stderr}");
}

#[test]
fn plugin_new_lays_out_a_crate_from_the_template() {
    let dir = TempDir::new("plugin-cli-new");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(plugins.join("sdk")).expect("mkdir");
    std::fs::write(
        plugins.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"sdk\", \"header-rewrite\"]\n",
    )
    .expect("write");
    let output = tailgate(&[
        Path::new("plugin"),
        Path::new("new"),
        Path::new("basic-auth"),
        Path::new("--plugins-dir"),
        &plugins,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("target/wasm32-wasip2/release/basic_auth.wasm basic-auth/cases.toml"),
        "{stdout}"
    );
    let manifest = std::fs::read_to_string(plugins.join("Cargo.toml")).expect("read");
    assert!(
        manifest.contains("members = [\"sdk\", \"header-rewrite\", \"basic-auth\"]"),
        "{manifest}"
    );
    let crate_manifest =
        std::fs::read_to_string(plugins.join("basic-auth/Cargo.toml")).expect("crate manifest");
    assert!(
        crate_manifest.contains("name = \"basic-auth\""),
        "{crate_manifest}"
    );
    for file in ["src/lib.rs", "tests/harness.rs", "cases.toml"] {
        assert!(plugins.join("basic-auth").join(file).is_file(), "{file}");
    }
    // A second time: refused, nothing overwritten.
    let again = tailgate(&[
        Path::new("plugin"),
        Path::new("new"),
        Path::new("basic-auth"),
        Path::new("--plugins-dir"),
        &plugins,
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
