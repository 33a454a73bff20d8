//! A wake-up for the one task that watches a client connection's timeouts
//! (the listener's `expired`, or the handshake): the connection table
//! raises it when a deadline may have moved or the connection is shed.
//!
//! A flag and an `AtomicWaker`, where `tokio::sync::Notify` takes a lock
//! at every poll of a waiting `Notified` (the connection's task polls its
//! timeouts several times per request; docs/performance-passes-3.md
//! section 18).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use futures_util::task::AtomicWaker;

/// Raised by any thread, taken by one waiting task at a time. A raise with
/// nobody waiting is kept for the next wait (as `Notify::notify_one`'s
/// permit is). As a [`Wake`], waking it raises it.
#[derive(Default)]
pub struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Raise it and wake the task waiting, if any.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready (and lowered) once raised; either way the task of `cx` is woken
    /// by the next raise (a re-polled waiter, `super::woken::PollWhenWoken`,
    /// needs that after a ready poll too). Only the most recent waiter is
    /// woken.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the flag is read: a raise in between is seen.
        self.waker.register(cx.waker());
        if self.raised.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Wait until raised.
    pub async fn wait(&self) {
        poll_fn(|cx| self.poll_take(cx)).await;
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.raise();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raise();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_raise_wakes_the_waiter_and_one_before_the_wait_is_kept() {
        let signal = Arc::new(Signal::default());
        let raiser = signal.clone();
        let waiting = tokio::spawn(async move { signal.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        std::thread::spawn(move || raiser.raise())
            .join()
            .expect("raise");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");

        let signal = Signal::default();
        signal.raise();
        tokio::time::timeout(Duration::from_secs(5), signal.wait())
            .await
            .expect("kept");
        // Taken: the next wait waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), signal.wait())
                .await
                .is_err()
        );
    }
}
