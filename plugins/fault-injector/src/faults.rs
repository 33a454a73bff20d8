//! The misbehaviours: what `trap`, `loop` and `alloc` modes do inside the
//! chosen hook, and the shared call count that decides when they start.

use crate::config::{Config, Hook, Mode};
use crate::tailgate::plugin::host;

/// Runs the configured fault if `hook` is the chosen hook and its call count
/// has reached `after`. Returns normally when no fault is due.
pub fn maybe_fault(config: &Config, hook: Hook, path: Option<&str>) {
    if config.hook != hook || !matches!(config.mode, Mode::Trap | Mode::Loop | Mode::Alloc) {
        return;
    }
    if config
        .only_path
        .as_deref()
        .is_some_and(|only| Some(only) != path)
    {
        return;
    }
    if let Some(after) = config.after {
        let calls = host::counter_incr(&config.counter_key(), 1, 0);
        let last = config.times.map_or(i64::MAX, |times| {
            (after as i64)
                .saturating_add(times as i64)
                .saturating_sub(1)
        });
        if calls < after as i64 || calls > last {
            return;
        }
    }
    match config.mode {
        Mode::Trap => panic!("fault-injector: trap in {}", hook.name()),
        Mode::Loop => spin_forever(),
        Mode::Alloc => allocate_without_bound(),
        Mode::Ok | Mode::Reject | Mode::State => {}
    }
}

/// Keeps the CPU busy for `ms` milliseconds of the WASI clock (no sleep:
/// the guest runs, and yields only at the host's epoch ticks).
pub fn busy_for(ms: u64) {
    if ms == 0 {
        return;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    let mut n: u64 = 0;
    while std::time::Instant::now() < until {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn allocate_without_bound() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every chunk so the allocation is real.
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(std::hint::black_box(chunk));
    }
}
