//! The command line: `tailgate run` loads the config and the plugin chains
//! and starts the server (the edge where requests enter); `tailgate check`
//! validates a config and every plugin's route config without serving;
//! `tailgate bans` talks to a running one's admin API.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tailgate_runtime::{Runtime, RuntimeConfig, RuntimeOptions};
use tracing_subscriber::EnvFilter;

use crate::config::{self, Config};
use crate::plugin_chain::PluginChains;

/// A public reverse proxy for tailnet services, extended by WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "tailgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: load the config and the plugins, then listen.
    Run {
        /// The config file.
        #[arg(long, short, value_name = "PATH", default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate a config file and load every plugin with each route's
    /// config; exit 1 on the first problem.
    Check {
        /// The config file.
        #[arg(value_name = "PATH")]
        config: PathBuf,
    },
    /// List, add and lift bans of a running tailgate (through its admin API).
    Bans(crate::bans_cmd::BansArgs),
    /// Plugin authoring: run a plugin's cases, start a new plugin.
    Plugin {
        #[command(subcommand)]
        command: crate::plugin_cmd::PluginCommand,
    },
}

/// Parse the arguments, run the command, and turn its outcome into an exit code.
/// A way the binary's allocator offers to give the memory a thread freed
/// back to the system (mimalloc's `mi_collect`); the proxy runs it when a
/// worker goes idle, so memory returns after a burst of connections.
pub type ReleaseFreeMemory = fn();

pub fn main() -> ExitCode {
    main_with(None)
}

/// [`main`], with the allocator's [`ReleaseFreeMemory`] when it has one.
pub fn main_with(release: Option<ReleaseFreeMemory>) -> ExitCode {
    let cli = Cli::parse();
    // Plugin commands print their own report (with the plugin's log lines
    // under a failing case); only errors go to stderr.
    let default_level = match cli.command {
        Command::Plugin { .. } | Command::Bans(_) => "error",
        _ => "info",
    };
    if let Err(e) = init_logging(default_level) {
        eprintln!("tailgate: {e:#}");
        return ExitCode::FAILURE;
    }
    let outcome = match cli.command {
        Command::Run { config } => run(&config, release),
        Command::Check { config } => check(&config),
        Command::Plugin { command } => return crate::plugin_cmd::main(command),
        Command::Bans(args) => return crate::bans_cmd::main(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Diagnostics go to stderr (stdout is the access log), filtered by
/// `TAILGATE_LOG`, else `RUST_LOG`, else `default_level`; colours only on a terminal.
fn init_logging(default_level: &str) -> anyhow::Result<()> {
    let (var, directives) = ["TAILGATE_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().map(|value| (var, value)))
        .unwrap_or(("default", default_level.to_owned()));
    let filter = EnvFilter::try_new(&directives)
        .with_context(|| format!("{var}: invalid log filter {directives:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("setting up logging: {e}"))
}

/// The plugin runtime and every route's chain for `config`. Runs inside a
/// tokio runtime context, in case the plugin runtime needs one.
/// `serving` opens the state directory (`tailgate run`); `tailgate check`
/// leaves it alone.
fn load_plugins(
    path: &Path,
    config: &Config,
    serving: bool,
) -> anyhow::Result<(Runtime, PluginChains)> {
    let runtime = Runtime::with_options(
        RuntimeConfig {
            max_instances: config.runtime.max_instances,
            max_calls_per_instance: config.runtime.max_calls_per_instance,
            output_lines_per_second: config.runtime.output_lines_per_second,
            state_dir: serving.then(|| config.state.dir.clone()),
            redis: if serving {
                config.state.redis.clone()
            } else {
                None
            },
            ..RuntimeConfig::new(&config.runtime.cache_dir)
        },
        RuntimeOptions {
            state_limits: config.state.limits,
            redis_dialer: match &config.state.redis {
                Some(_) if serving => Some(Arc::new(
                    crate::upstream::redis_dialer::TailnetRedisDialer::new(&config.tailnet)
                        .map_err(|e| anyhow::anyhow!("[state] TLS setup: {e}"))?,
                )),
                _ => None,
            },
            ..RuntimeOptions::default()
        },
    )
    .context("starting the plugin runtime")?;
    let chains = PluginChains::load(config, &runtime)
        .with_context(|| format!("{}: loading plugins", path.display()))?;
    Ok((runtime, chains))
}

/// Run `release` as a worker goes idle, at most once a second per thread:
/// after a burst (thousands of connections closed) the memory they used
/// goes back to the system instead of staying with idle workers; under
/// load a worker parks often, and pays for one collection a second at most.
fn release_when_idle(release: ReleaseFreeMemory) {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    LAST.with(|last| {
        if last
            .get()
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            last.set(Some(now));
            release();
        }
    });
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = config::load(path)?;
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let _context = tokio_runtime.enter();
    let (_runtime, chains) = load_plugins(path, &config, false)?;
    println!(
        "{}: ok ({} routes, {} plugins)",
        path.display(),
        config.routes.len(),
        chains.loaded_plugins()
    );
    Ok(())
}

fn run(path: &Path, release: Option<ReleaseFreeMemory>) -> anyhow::Result<()> {
    let config = config::load(path)?;
    // Every client and upstream connection is a file descriptor: use all
    // the process may have (`server.max_connections` defaults from it).
    let fd_limit = crate::server::raise_fd_limit();
    tracing::debug!(?fd_limit, "open file limit");
    let workers = config.server.worker_threads();
    // One worker (`workers = 1`, or a one-CPU machine such as Fly.io's
    // shared-cpu-1x): everything on this thread, with tokio's current-thread
    // scheduler (no cross-thread queues or wake-ups to pay for, like one
    // nginx worker process). Otherwise a work-stealing pool.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().thread_name("tailgate-worker");
    if let Some(release) = release {
        builder.on_thread_park(move || release_when_idle(release));
    }
    let tokio_runtime = builder.build().context("starting the tokio runtime")?;
    let (telemetry, runtime, chains) = {
        let _context = tokio_runtime.enter();
        // First: plugins register their metric handles when configured.
        let telemetry = Arc::new(
            crate::telemetry::Telemetry::start(&config.telemetry).context("starting telemetry")?,
        );
        let (runtime, chains) = load_plugins(path, &config, true)?;
        (telemetry, runtime, chains)
    };
    tracing::info!(
        config = %path.display(),
        routes = config.routes.len(),
        plugins = chains.loaded_plugins(),
        "config loaded"
    );
    let served = tokio_runtime.block_on(crate::server::run(
        config,
        chains,
        Arc::new(runtime),
        telemetry.clone(),
    ));
    // Push the last metrics and log lines, bounded.
    tokio_runtime.block_on(telemetry.shutdown(std::time::Duration::from_secs(5)));
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_to_config_toml_and_check_needs_a_path() {
        let cli = Cli::try_parse_from(["tailgate", "run"]).unwrap();
        assert!(
            matches!(cli.command, Command::Run { config } if config == Path::new("config.toml"))
        );
        let cli = Cli::try_parse_from(["tailgate", "run", "--config", "/etc/tg.toml"]).unwrap();
        assert!(
            matches!(cli.command, Command::Run { config } if config == Path::new("/etc/tg.toml"))
        );
        let cli = Cli::try_parse_from(["tailgate", "check", "x.toml"]).unwrap();
        assert!(matches!(cli.command, Command::Check { config } if config == Path::new("x.toml")));
        assert!(Cli::try_parse_from(["tailgate", "check"]).is_err());
        assert!(Cli::try_parse_from(["tailgate"]).is_err());
    }
}
