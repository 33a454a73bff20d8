//! The plugin metric handles one instance has used through `counter-add`
//! and `histogram-record`, kept by the (name, labels) the guest passed, and
//! the `ratelimit_requests` counters `rate-limit-check` bumps, kept by zone.
//! A metric bumped on every request is then checked, renamed and looked up
//! in the recorder once per instance, not once per call (~4.6k instructions
//! a call before).

use foldhash::HashMap;

use metrics::{Counter, Gauge, Histogram};

/// Most handles kept per instance; past it a call registers as it goes.
const MAX_HANDLES: usize = 256;

/// The metric as the guest named it: name and label pairs, unchecked.
pub(crate) type GuestMetric = (String, Vec<(String, String)>);

/// The cached handles of one instance.
#[derive(Default)]
pub(crate) struct MetricHandles {
    /// The recorder the handles belong to (its address). A handle keeps
    /// pointing at the recorder it was made with, so when another one is
    /// current (a test's local recorder) the cache starts over.
    recorder: usize,
    counters: HashMap<GuestMetric, Counter>,
    histograms: HashMap<GuestMetric, Histogram>,
    gauges: HashMap<GuestMetric, Gauge>,
    /// Per rate-limit zone, the counter of each outcome, made when first seen.
    rate_limit_outcomes: HashMap<String, [Option<Counter>; OUTCOMES]>,
}

/// How many `outcome` values `ratelimit_requests` has.
pub(crate) const OUTCOMES: usize = 5;

impl MetricHandles {
    /// The counter for `metric`, made by `register` (which checks and
    /// renames it) the first time.
    pub(crate) fn counter<E>(
        &mut self,
        metric: GuestMetric,
        register: impl FnOnce(&GuestMetric) -> Result<Counter, E>,
    ) -> Result<Counter, E> {
        self.follow_recorder();
        cached(&mut self.counters, metric, register)
    }

    /// The histogram for `metric`, like [`MetricHandles::counter`].
    pub(crate) fn histogram<E>(
        &mut self,
        metric: GuestMetric,
        register: impl FnOnce(&GuestMetric) -> Result<Histogram, E>,
    ) -> Result<Histogram, E> {
        self.follow_recorder();
        cached(&mut self.histograms, metric, register)
    }

    /// The gauge for `metric`, like [`MetricHandles::counter`].
    pub(crate) fn gauge<E>(
        &mut self,
        metric: GuestMetric,
        register: impl FnOnce(&GuestMetric) -> Result<Gauge, E>,
    ) -> Result<Gauge, E> {
        self.follow_recorder();
        cached(&mut self.gauges, metric, register)
    }

    /// The counter of outcome number `outcome` (below [`OUTCOMES`]) in
    /// `zone`, made by `register` the first time.
    pub(crate) fn rate_limit_outcome(
        &mut self,
        zone: &str,
        outcome: usize,
        register: impl FnOnce() -> Counter,
    ) -> Counter {
        self.follow_recorder();
        if let Some(counter) = self
            .rate_limit_outcomes
            .get(zone)
            .and_then(|outcomes| outcomes[outcome].as_ref())
        {
            return counter.clone();
        }
        let counter = register();
        if self.rate_limit_outcomes.len() < MAX_HANDLES
            || self.rate_limit_outcomes.contains_key(zone)
        {
            let outcomes = self.rate_limit_outcomes.entry(zone.to_owned()).or_default();
            outcomes[outcome] = Some(counter.clone());
        }
        counter
    }

    fn follow_recorder(&mut self) {
        let current =
            metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize);
        if current != self.recorder {
            self.counters.clear();
            self.histograms.clear();
            self.gauges.clear();
            self.rate_limit_outcomes.clear();
            self.recorder = current;
        }
    }
}

fn cached<H: Clone, E>(
    handles: &mut HashMap<GuestMetric, H>,
    metric: GuestMetric,
    register: impl FnOnce(&GuestMetric) -> Result<H, E>,
) -> Result<H, E> {
    if let Some(handle) = handles.get(&metric) {
        return Ok(handle.clone());
    }
    let handle = register(&metric)?;
    if handles.len() < MAX_HANDLES {
        handles.insert(metric, handle.clone());
    }
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    fn metric(name: &str) -> GuestMetric {
        (name.to_string(), vec![("zone".into(), "a".into())])
    }

    #[test]
    fn registered_once_per_recorder() {
        let mut handles = MetricHandles::default();
        let registered = std::cell::Cell::new(0);
        let register = |m: &GuestMetric| -> Result<Counter, ()> {
            registered.set(registered.get() + 1);
            Ok(metrics::counter!(m.0.clone()))
        };
        let first = DebuggingRecorder::new();
        let snapshot = first.snapshotter();
        metrics::with_local_recorder(&first, || {
            for _ in 0..3 {
                handles
                    .counter(metric("hits"), register)
                    .expect("ok")
                    .increment(1);
            }
        });
        assert_eq!(registered.get(), 1);
        let counted: u64 = snapshot
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(_, _, _, value)| match value {
                metrics_util::debugging::DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(counted, 3);
        // Another recorder: registered again, into that one.
        let second = DebuggingRecorder::new();
        metrics::with_local_recorder(&second, || {
            handles
                .counter(metric("hits"), register)
                .expect("ok")
                .increment(1);
        });
        assert_eq!(registered.get(), 2);
    }

    #[test]
    fn rate_limit_outcomes_are_registered_once_per_zone_and_outcome() {
        let mut handles = MetricHandles::default();
        let registered = std::cell::Cell::new(0);
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            for (zone, outcome) in [("a", 0), ("a", 0), ("a", 2), ("b", 0), ("a", 2)] {
                handles
                    .rate_limit_outcome(zone, outcome, || {
                        registered.set(registered.get() + 1);
                        metrics::counter!("x")
                    })
                    .increment(1);
            }
        });
        assert_eq!(registered.get(), 3);
    }

    #[test]
    fn a_refused_metric_is_not_kept() {
        let mut handles = MetricHandles::default();
        let refused = handles.counter(metric("bad"), |_| Err("no"));
        assert_eq!(refused.err(), Some("no"));
        assert!(handles.counters.is_empty());
    }
}
