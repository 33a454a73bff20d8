//! Polls a future only after its own waker fired: a client connection's
//! task polls its timeouts and the shutdown signal beside hyper's
//! connection (`super::parking::drive_http1`), and without this each of the
//! task's wake-ups (several per request, nearly all of them hyper's) polled
//! them too, ~500 instructions a request for nothing
//! (docs/performance-passes-3.md section 18).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::signal::Signal;

/// `inner`, polled on the first poll and then only when it has woken its
/// waker since it was last polled.
pub struct PollWhenWoken<F> {
    inner: F,
    /// Raised by `inner`'s waker; it wakes the task.
    woken: Arc<Signal>,
    /// The waker `inner` is given: raises `woken`.
    waker: Waker,
}

impl<F: Future + Unpin> PollWhenWoken<F> {
    pub fn new(inner: F) -> Self {
        let woken = Arc::new(Signal::default());
        // The first poll polls `inner`.
        woken.raise();
        let waker = Waker::from(woken.clone());
        PollWhenWoken {
            inner,
            woken,
            waker,
        }
    }
}

impl<F: Future + Unpin> Future for PollWhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.woken.poll_take(cx).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts its polls; ready once `ready` is set, and wakes its waker
    /// from another thread after `wake_after`.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker_sent: bool,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if !self.waker_sent {
                self.waker_sent = true;
                let waker = cx.waker().clone();
                let ready = self.ready.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    ready.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_when_it_woke() {
        let polls = Arc::new(AtomicUsize::new(0));
        let probe = Probe {
            polls: polls.clone(),
            ready: Arc::new(AtomicBool::new(false)),
            waker_sent: false,
        };
        let mut watched = PollWhenWoken::new(probe);
        // The task wakes often for other reasons (every 2 ms here): the
        // probe is polled once at the start and once when it woke.
        let mut ticks = tokio::time::interval(Duration::from_millis(2));
        let mut task_polls = 0;
        loop {
            tokio::select! {
                biased;
                () = &mut watched => break,
                _ = ticks.tick() => task_polls += 1,
            }
        }
        assert!(task_polls > 10, "the task woke {task_polls} times");
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
