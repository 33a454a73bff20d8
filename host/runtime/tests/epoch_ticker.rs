//! The epoch ticker thread starts with the first plugin load and lives
//! exactly as long as its runtime (and the plugins loaded from it). Its own test binary: it counts the process's
//! threads, which other tests would disturb.

mod common;

use common::*;

fn epoch_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| {
            let comm = task.ok()?.path().join("comm");
            std::fs::read_to_string(comm).ok()
        })
        .filter(|name| name.trim() == "tailgate-epoch")
        .count()
}

/// The ticker count once it settles: a new thread names itself when it
/// starts running, a moment after `spawn` returns.
fn settled_epoch_threads(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let count = epoch_threads();
        if count == expected || std::time::Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn one_ticker_per_runtime_stopped_when_the_last_user_drops() {
    assert_eq!(epoch_threads(), 0);
    let runtime = runtime();
    // No plugin loaded, no thread (a proxy without plugins pays nothing).
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(epoch_threads(), 0);
    assert!(!runtime.epoch_ticker_started());
    let plugin = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    assert!(runtime.epoch_ticker_started());
    assert_eq!(settled_epoch_threads(1), 1);
    // Configuring and calling plugins starts no more tickers.
    plugin
        .on_request(&mut request("r", "/", "192.0.2.1"))
        .expect("call");
    // (Time for a stray new thread to name itself.)
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(epoch_threads(), 1);
    // The configured plugin still needs the ticker for its time budget.
    drop(runtime);
    assert_eq!(epoch_threads(), 1);
    // Dropping the last user joins the thread: gone at once.
    drop(plugin);
    assert_eq!(epoch_threads(), 0);
}
