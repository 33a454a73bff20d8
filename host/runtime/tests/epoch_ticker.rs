//! The epoch ticker thread lives exactly as long as its runtime (and the
//! plugins loaded from it). Its own test binary: it counts the process's
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

#[test]
fn one_ticker_per_runtime_stopped_when_the_last_user_drops() {
    assert_eq!(epoch_threads(), 0);
    let runtime = runtime();
    assert_eq!(epoch_threads(), 1);
    let plugin = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    // Configuring and calling plugins starts no more tickers.
    plugin.on_request(&request("r", "/", "ip")).expect("call");
    assert_eq!(epoch_threads(), 1);
    // The configured plugin still needs the ticker for its time budget.
    drop(runtime);
    assert_eq!(epoch_threads(), 1);
    drop(plugin);
    assert_eq!(epoch_threads(), 0);
}
