//! The wait shared by the threads that take work off the request path in
//! batches, like nginx's `buffer=... flush=...`: the access log's writer
//! (lines) and the log thread (finished exchanges, for their line). A
//! request only appends under a lock; the thread sleeps until there is
//! work, then gathers a batch for at most one interval.

use std::sync::{Condvar, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Wait on `wake` until `has_work`, then until `batch_ready` or `interval`
/// has passed since the work was seen; returns the guard for the caller to
/// take the batch.
pub(crate) fn wait_for_batch<'a, T>(
    wake: &Condvar,
    mut state: MutexGuard<'a, T>,
    interval: Duration,
    has_work: impl Fn(&T) -> bool,
    batch_ready: impl Fn(&T) -> bool,
) -> MutexGuard<'a, T> {
    while !has_work(&state) {
        state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
    let deadline = Instant::now() + interval;
    while !batch_ready(&state) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        state = wake
            .wait_timeout(state, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    state
}
