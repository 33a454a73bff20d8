//! `on-log` in batches, on the real fault-injector plugin: one verdict per
//! record in order, longer batches split into calls of at most
//! `MAX_LOG_BATCH`, and a record that faults losing only its own verdict
//! (the others of its call are made again one at a time).

mod common;

use common::*;
use tailgate_runtime::{block_on, LogRecord, LogVerdict, PluginFault, MAX_LOG_BATCH};

fn record(uri: &str) -> LogRecord {
    LogRecord {
        uri: Some(uri.into()),
        status: 200,
        request_id: Some("req".into()),
        ..LogRecord::default()
    }
}

fn line(verdict: &Result<LogVerdict, PluginFault>) -> String {
    match verdict {
        Ok(LogVerdict::Shape(line)) => line.line.clone(),
        other => panic!("a shaped line, got {other:?}"),
    }
}

#[test]
fn every_record_of_a_long_batch_gets_its_own_verdict_in_order() {
    let runtime = runtime();
    let plugin = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    let count = MAX_LOG_BATCH * 2 + 3;
    let mut records: Vec<LogRecord> = (0..count).map(|n| record(&format!("/{n}"))).collect();
    let verdicts = block_on(plugin.log_batch_hook(&mut records));
    assert_eq!(verdicts.len(), count);
    for (n, verdict) in verdicts.iter().enumerate() {
        assert!(
            line(verdict).starts_with(&format!("GET /{n} 200 req")),
            "record {n}: {verdict:?}"
        );
    }
    assert_eq!(
        records[5].uri.as_deref(),
        Some("/5"),
        "records are whole again"
    );
}

#[test]
fn a_record_that_traps_loses_only_its_own_line() {
    let runtime = runtime();
    let plugin = configured(
        &runtime,
        "r",
        r#"{"mode":"trap","hook":"log","hooks":["log"],"only_path":"/bad"}"#,
    );
    let mut records = vec![record("/a"), record("/bad"), record("/c")];
    let verdicts = block_on(plugin.log_batch_hook(&mut records));
    assert_eq!(verdicts.len(), 3);
    assert!(line(&verdicts[0]).starts_with("GET /a 200"));
    assert!(
        matches!(&verdicts[1], Err(PluginFault::Trap(message)) if message.contains("trap in log")),
        "{:?}",
        verdicts[1]
    );
    assert!(line(&verdicts[2]).starts_with("GET /c 200"));
}
