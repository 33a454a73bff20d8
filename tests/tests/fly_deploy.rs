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

#[path = "fly_deploy/artifacts.rs"]
mod artifacts;
#[path = "fly_deploy/real_binary.rs"]
mod real_binary;
#[path = "fly_deploy/start_sh_runs.rs"]
mod start_sh_runs;

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
