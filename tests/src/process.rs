//! A running `tailgate` process under test: writes its config, starts the
//! real binary, waits for its listeners, captures stdout (access log) and
//! stderr (diagnostics), and kills it (by PID) on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::repo_root;

/// Path of the `tailgate` binary under test (`TAILGATE_BIN` or `target/debug/tailgate`).
pub fn tailgate_bin() -> PathBuf {
    let path = std::env::var_os("TAILGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/tailgate"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p tailgate` (or `make test`) first",
        path.display()
    );
    path
}

/// A scratch folder for one test, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tailgate-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, contents).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines a child wrote, shared with the reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().expect("lines lock").clone()
    }
    /// Wait until some line satisfies `pred`, returning it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.snapshot().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn capture(stream: impl std::io::Read + Send + 'static, lines: Lines, echo: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("TAILGATE_E2E_ECHO").is_some() {
                eprintln!("[{echo}] {line}");
            }
            lines.0.lock().expect("lines lock").push(line);
        }
    });
}

/// The shared compiled-plugin cache for all tests, so each plugin compiles once.
pub fn test_cache_dir() -> PathBuf {
    repo_root().join("target/e2e-plugin-cache")
}

/// A running tailgate.
pub struct Tailgate {
    child: Child,
    pub listen: Vec<SocketAddr>,
    pub stdout: Lines,
    pub stderr: Lines,
    pub config_path: PathBuf,
    _dir: TempDir,
}

impl Tailgate {
    /// Start `tailgate run` on `config` (TOML text). The config should listen
    /// on `127.0.0.1:0`; the real ports are read from the startup lines.
    pub fn start(config: &str) -> Tailgate {
        Self::try_start(config).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(config: &str) -> Result<Tailgate, String> {
        Self::try_start_with_env(config, &[])
    }

    /// [`Tailgate::start`] with extra environment variables (e.g. `FLY_REGION`).
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Tailgate {
        Self::try_start_with_env(config, env).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_with_env(config: &str, env: &[(&str, &str)]) -> Result<Tailgate, String> {
        let dir = TempDir::new("tg");
        let config_path = dir.write("config.toml", config);
        let mut child = Command::new(tailgate_bin())
            .envs(env.iter().copied())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn tailgate: {e}"))?;
        let stdout = Lines::default();
        let stderr = Lines::default();
        capture(
            child.stdout.take().expect("stdout"),
            stdout.clone(),
            "stdout",
        );
        capture(
            child.stderr.take().expect("stderr"),
            stderr.clone(),
            "stderr",
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let expected = count_listen(config);
        loop {
            let listen: Vec<SocketAddr> = stderr
                .snapshot()
                .iter()
                .filter_map(|l| parse_listening(l))
                .collect();
            if listen.len() >= expected {
                return Ok(Tailgate {
                    child,
                    listen,
                    stdout,
                    stderr,
                    config_path,
                    _dir: dir,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "tailgate exited with {status} before listening; stderr:\n{}",
                    stderr.snapshot().join("\n")
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "tailgate did not start listening within 60s; stderr:\n{}",
                    stderr.snapshot().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://ADDR` of the first listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen[0])
    }

    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the process so far (VmHWM), bytes.
    pub fn peak_rss(&self) -> u64 {
        read_status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// Current resident memory (VmRSS), bytes.
    pub fn rss(&self) -> u64 {
        read_status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// The admin API's address (from the `admin api on http://ADDR` line).
    pub fn admin_addr(&self) -> SocketAddr {
        self.announced("admin api on http://")
    }

    /// The first `[tls]` listener's address (its `listening on https://` line).
    pub fn https_addr(&self) -> SocketAddr {
        self.announced("listening on https://")
    }

    /// The address on the first stderr line containing `prefix`, right after it.
    fn announced(&self, prefix: &str) -> SocketAddr {
        self.stderr
            .wait_for(Duration::from_secs(10), |l| l.contains(prefix))
            .and_then(|l| {
                let rest = l.split(prefix).nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_else(|| {
                panic!(
                    "no `{prefix}` line; stderr:\n{}",
                    self.stderr.snapshot().join("\n")
                )
            })
    }

    /// Send a signal by name (`TERM`, `HUP`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Wait up to `timeout` for the process to exit; its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Once `file` (a state file the process writes in the background)
    /// contains `text`, kill the process with SIGKILL (no shutdown, no
    /// final write) and wait for it to go: what a crash leaves behind.
    pub async fn kill_9_once_written(mut self, file: &Path, text: &str) {
        let written = crate::eventually(Duration::from_secs(5), || async {
            std::fs::read_to_string(file).is_ok_and(|contents| contents.contains(text))
        })
        .await;
        assert!(written, "{} never had {text}", file.display());
        self.signal("KILL");
        assert!(
            self.wait_exit(Duration::from_secs(10)).is_some(),
            "not killed"
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Access-log lines parsed as JSON (non-JSON lines skipped).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.stdout
            .snapshot()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait for an access-log record whose `field` equals `value`.
    pub fn wait_log(&self, field: &str, value: &str) -> serde_json::Value {
        let line = self
            .stdout
            .wait_for(Duration::from_secs(10), |l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get(field).map(|f| json_str(f) == value))
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no access-log line with {field}={value}; stdout:\n{}",
                    self.stdout.snapshot().join("\n")
                )
            });
        serde_json::from_str(&line).expect("json")
    }
}

/// A JSON value as text, without quotes for strings.
pub fn json_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Drop for Tailgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn count_listen(config: &str) -> usize {
    // Count the addresses in `listen = [...]` (at least one).
    config
        .lines()
        .find(|l| l.trim_start().starts_with("listen"))
        .map(|l| (l.matches('"').count() / 2).max(1))
        .unwrap_or(1)
}
