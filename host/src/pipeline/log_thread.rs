//! The log phase's line, off the request workers: every exchange's record
//! is built, and shaped by the route's log hooks (log-shape's `on-log`, one
//! call per route's share of a batch) or written as the default line, on
//! one thread of its own, in batches, and handed to the access log from
//! there. The worker that finished the
//! exchange only queues it (a short lock, no wake-up but the first of a
//! batch), as the access log's writer does with lines: the shaping is the
//! work Grafana Alloy did beside nginx, in its own process. A line is never
//! lost: when the queue holds [`MAX_QUEUED`] exchanges (the thread has
//! fallen behind), the line is built in a task on the workers instead. Log
//! hooks are async (a guest yields at each epoch tick): the thread drives
//! them on a current-thread runtime of its own.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tailgate_runtime::LogRecord;

use super::log_phase::{Finished, PendingLog};
use crate::access_log::{default_line, AccessLog};
use crate::plugin_chain::{LogDecision, RouteChain};

/// Longest an exchange waits for its line.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Exchanges taken at once; a full batch wakes the thread before the interval.
const BATCH: usize = 256;
/// Exchanges waiting at most; past this the worker builds the line itself.
pub const MAX_QUEUED: usize = 8192;

/// One finished exchange, waiting for its line.
pub(super) struct LogJob {
    pub pending: PendingLog,
    pub finished: Finished,
}

/// Queue `job` for the log thread, or run it in a task of the caller's
/// runtime when the queue is full or the thread cannot be started (outside
/// a runtime: here, to its end).
pub(super) fn submit(job: LogJob) {
    let job = match queue() {
        Some(queue) => match queue.push(job) {
            Ok(()) => return,
            Err(job) => job,
        },
        None => job,
    };
    metrics::counter!("tailgate_log_hooks_inline_total").increment(1);
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(run(job));
        }
        Err(_) => match log_runtime() {
            Ok(runtime) => runtime.block_on(run(job)),
            Err(e) => tracing::error!("cannot run a log hook, its line is lost: {e}"),
        },
    }
}

/// A runtime for the log hooks of one thread: current-thread, with timers
/// (a guest's WASI clock may wait).
fn log_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Build the exchange's record and write its line: a batch of one.
async fn run(job: LogJob) {
    run_batch(vec![job]).await;
}

/// The line for `record` (with its Loki labels) once the chain's log hooks
/// decided: theirs, the default line when there are none or they leave it
/// to the host or fail, or none when they drop it.
fn line_of(decision: LogDecision, record: &LogRecord) -> Option<(String, Vec<(String, String)>)> {
    match decision {
        LogDecision::Line(line) => Some((line.line, line.labels)),
        LogDecision::Drop => None,
        // A failure is reported and counted by the chain; a line is never
        // lost.
        LogDecision::Default => Some((default_line(record), Vec::new())),
    }
}

/// A batch of exchanges' lines, written in the order the exchanges
/// finished: each route's records go through its chain's log hooks
/// together (one call per hook for the route's share of the batch, where
/// the crossing into a plugin is paid once), the others get the default
/// line.
async fn run_batch(jobs: Vec<LogJob>) {
    let mut exchanges: Vec<(AccessLog, Option<Arc<RouteChain>>)> = Vec::with_capacity(jobs.len());
    let mut records: Vec<LogRecord> = Vec::with_capacity(jobs.len());
    for LogJob { pending, finished } in jobs {
        exchanges.push((pending.access_log().clone(), pending.chain().cloned()));
        records.push(pending.into_record(finished));
    }
    let mut decisions: Vec<Option<LogDecision>> = records.iter().map(|_| None).collect();
    for first in 0..records.len() {
        if decisions[first].is_some() {
            continue;
        }
        let Some(chain) = exchanges[first].1.clone() else {
            decisions[first] = Some(LogDecision::Default);
            continue;
        };
        let same_route: Vec<usize> = (first..records.len())
            .filter(|&i| {
                decisions[i].is_none()
                    && exchanges[i]
                        .1
                        .as_ref()
                        .is_some_and(|c| Arc::ptr_eq(c, &chain))
            })
            .collect();
        let mut group: Vec<LogRecord> = same_route
            .iter()
            .map(|&i| std::mem::take(&mut records[i]))
            .collect();
        let made = chain.on_log_batch(&mut group).await;
        for ((&i, record), decision) in same_route.iter().zip(group).zip(made) {
            records[i] = record;
            decisions[i] = Some(decision);
        }
    }
    for (((access_log, _), record), decision) in exchanges.iter().zip(&records).zip(decisions) {
        let decision = decision.unwrap_or(LogDecision::Default);
        if let Some((line, labels)) = line_of(decision, record) {
            access_log.write_labelled_line(line, &labels);
        }
    }
}

/// The process's queue, its thread started on first use.
fn queue() -> Option<&'static JobQueue<LogJob>> {
    static QUEUE: OnceLock<Option<&'static JobQueue<LogJob>>> = OnceLock::new();
    *QUEUE.get_or_init(|| {
        let queue: &'static JobQueue<LogJob> =
            Box::leak(Box::new(JobQueue::new(MAX_QUEUED, FLUSH_INTERVAL)));
        let started = log_runtime().and_then(|runtime| {
            std::thread::Builder::new()
                .name("tailgate-log".into())
                .spawn(move || run_batches(queue, runtime))
        });
        match started {
            Ok(_) => Some(queue),
            Err(e) => {
                tracing::error!(
                    "cannot start the log thread, building log lines on the workers: {e}"
                );
                None
            }
        }
    })
}

/// Exchanges waiting for the thread, in arrival order.
struct JobQueue<T> {
    jobs: Mutex<Vec<T>>,
    /// Signalled on the first exchange of a batch and when a batch fills.
    wake: Condvar,
    capacity: usize,
    /// Longest a partial batch waits ([`FLUSH_INTERVAL`]).
    interval: Duration,
}

impl<T> JobQueue<T> {
    fn new(capacity: usize, interval: Duration) -> Self {
        JobQueue {
            jobs: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            capacity,
            interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // Records are pushed and taken whole under the lock.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `job`; hands it back when the queue is full.
    fn push(&self, job: T) -> Result<(), T> {
        let mut jobs = self.lock();
        let before = jobs.len();
        if before >= self.capacity {
            return Err(job);
        }
        jobs.push(job);
        drop(jobs);
        if before == 0 || before + 1 == BATCH {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Wait for the first exchange, then for a full batch or the flush
    /// interval; move what is queued into `out`.
    fn next_batch(&self, out: &mut Vec<T>) {
        let mut jobs = crate::batch_wait::wait_for_batch(
            &self.wake,
            self.lock(),
            self.interval,
            |jobs| !jobs.is_empty(),
            |jobs| jobs.len() >= BATCH,
        );
        std::mem::swap(&mut *jobs, out);
    }
}

/// The log thread: forever, a batch at a time, on its own current-thread
/// runtime. A panic in one job (a host bug; a guest's trap is an error, not
/// a panic) loses that line only.
fn run_batches(queue: &JobQueue<LogJob>, runtime: tokio::runtime::Runtime) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        queue.next_batch(&mut batch);
        let jobs = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        let count = jobs.len() as u64;
        if catch_unwind(AssertUnwindSafe(|| runtime.block_on(run_batch(jobs)))).is_err() {
            metrics::counter!("tailgate_access_log_dropped_total").increment(count);
            tracing::error!("a log hook panicked; the lines of its batch are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_full_queue_hands_the_record_back_and_a_batch_takes_them_all() {
        let queue = JobQueue::new(3, FLUSH_INTERVAL);
        for n in 0..3 {
            assert!(queue.push(n).is_ok());
        }
        assert_eq!(queue.push(3), Err(3), "full: the caller runs it itself");
        let mut batch = Vec::new();
        let started = Instant::now();
        queue.next_batch(&mut batch);
        assert_eq!(batch, [0, 1, 2]);
        assert!(
            started.elapsed() >= FLUSH_INTERVAL,
            "a partial batch waits for the interval"
        );
        assert!(queue.push(4).is_ok(), "room again");
    }

    #[test]
    fn a_full_batch_is_taken_before_the_interval() {
        let interval = Duration::from_secs(30);
        let queue: &'static JobQueue<usize> =
            Box::leak(Box::new(JobQueue::new(MAX_QUEUED, interval)));
        for n in 0..BATCH - 1 {
            queue.push(n).expect("room");
        }
        let started = Instant::now();
        let taker = std::thread::spawn(move || {
            let mut batch = Vec::new();
            queue.next_batch(&mut batch);
            batch.len()
        });
        queue.push(BATCH).expect("room");
        assert_eq!(taker.join().expect("taker"), BATCH);
        assert!(started.elapsed() < interval / 2, "{:?}", started.elapsed());
    }
}
