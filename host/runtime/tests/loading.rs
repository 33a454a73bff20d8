//! Loading plugins: errors for files that are not plugins, and the on-disk
//! cache of compiled plugins (written once, reused by the next runtime,
//! rebuilt when damaged).

mod common;

use std::path::Path;
use std::time::SystemTime;

use common::*;
use tailgate_runtime::{CacheOutcome, LoadError, RequestAction, Runtime, RuntimeConfig};

fn runtime_on(cache: &Path) -> Runtime {
    let mut config = RuntimeConfig::new(cache);
    config.max_instances = 16;
    Runtime::new(config).expect("runtime")
}

fn load_err(runtime: &Runtime, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plugin.wasm");
    std::fs::write(&path, bytes).expect("write");
    match runtime.load("bad", &path) {
        Err(err @ LoadError::Invalid { .. }) => err.to_string(),
        Err(other) => panic!("expected Invalid, got {other}"),
        Ok(_) => panic!("loaded a bad plugin"),
    }
}

#[test]
fn files_that_are_not_plugins_are_refused_with_a_reason() {
    let runtime = runtime();
    let text = load_err(&runtime, b"#!/bin/sh\necho hi\n");
    assert!(text.contains("plugin bad:"), "{text}");
    assert!(
        text.contains("is not a valid plugin component: not a WebAssembly file"),
        "{text}"
    );

    // An empty core module: the wasm32-unknown / un-adapted mistake.
    let text = load_err(&runtime, b"\0asm\x01\0\0\0");
    assert!(
        text.contains("a core WebAssembly module, not a component"),
        "{text}"
    );

    // A valid, empty component: compiles, but exports no hooks.
    let text = load_err(&runtime, b"\0asm\x0d\0\x01\0");
    assert!(
        text.contains("does not fit the tailgate:plugin@0.11.0 `plugin` world"),
        "{text}"
    );
    assert!(text.contains("tailgate:plugin/hooks"), "{text}");

    // A truncated component.
    let wasm = std::fs::read(fault_injector_wasm()).expect("read plugin");
    let text = load_err(&runtime, &wasm[..wasm.len() / 2]);
    assert!(text.contains("is not a valid plugin component"), "{text}");
}

#[test]
fn missing_file_is_a_read_error() {
    let runtime = runtime();
    match runtime.load("gone", Path::new("/nonexistent/plugin.wasm")) {
        Err(err @ LoadError::Read { .. }) => {
            assert!(
                err.to_string()
                    .starts_with("plugin gone: reading /nonexistent/plugin.wasm:"),
                "{err}"
            )
        }
        other => panic!("expected a read error, got {:?}", other.err()),
    }
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

fn works(runtime: &Runtime) {
    let plugin = configured(runtime, "r", r#"{"mode":"ok"}"#);
    assert!(matches!(
        plugin.on_request(&mut request("r", "/", "192.0.2.1")),
        Ok(RequestAction::Continue(_))
    ));
}

#[test]
fn compiled_plugins_are_cached_and_reused_by_the_next_runtime() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("not/yet/there");
    let first = runtime_on(&cache);
    let plugin = first
        .load("fault-injector", &fault_injector_wasm())
        .expect("load");
    assert!(matches!(plugin.cache_outcome(), CacheOutcome::Compiled(_)));
    assert!(!plugin.was_cached());
    assert_eq!(plugin.digest().len(), 64);
    let file = plugin.cache_path();
    assert!(file.is_file(), "{} not written", file.display());
    assert!(file
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(plugin.digest()) && n.ends_with(".cwasm")));
    let written = mtime(&file);
    // Only the cache file: no temp files left.
    assert_eq!(std::fs::read_dir(&cache).expect("dir").count(), 1);
    drop(plugin);
    drop(first);

    let second = runtime_on(&cache);
    let again = second
        .load("fault-injector", &fault_injector_wasm())
        .expect("load");
    assert!(again.was_cached());
    assert_eq!(again.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(mtime(&file), written, "the cache file was rewritten");
    works(&second);
}

#[test]
fn a_damaged_cache_file_is_recompiled_and_replaced() {
    let cache = tempfile::tempdir().expect("tempdir");
    let first = runtime_on(cache.path());
    let file = first
        .load("fault-injector", &fault_injector_wasm())
        .expect("load")
        .cache_path();
    std::fs::write(&file, b"not a compiled plugin").expect("damage");
    drop(first);

    let second = runtime_on(cache.path());
    let plugin = second
        .load("fault-injector", &fault_injector_wasm())
        .expect("load");
    assert!(matches!(plugin.cache_outcome(), CacheOutcome::Compiled(_)));
    assert_ne!(
        std::fs::read(&file).expect("read"),
        b"not a compiled plugin"
    );
    works(&second);

    let third = runtime_on(cache.path());
    assert!(third
        .load("fault-injector", &fault_injector_wasm())
        .expect("load")
        .was_cached());
}

#[test]
fn an_unwritable_cache_costs_a_warning_not_the_plugin() {
    let root = tempfile::tempdir().expect("tempdir");
    // The cache "directory" is a file: nothing can be written under it.
    let blocker = root.path().join("cache");
    std::fs::write(&blocker, b"").expect("write");
    let runtime = runtime_on(&blocker);
    let plugin = runtime
        .load("fault-injector", &fault_injector_wasm())
        .expect("load");
    assert!(!plugin.was_cached());
    let configured = runtime
        .configure(&plugin, "r", r#"{"mode":"ok"}"#, limits())
        .expect("configure");
    assert!(configured
        .on_request(&mut request("r", "/", "192.0.2.1"))
        .is_ok());
}
