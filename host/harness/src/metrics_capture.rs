//! Metrics recorded while a plugin runs, captured: a `metrics` recorder the
//! harness installs (thread-locally) around every runtime call, so the
//! plugin's own `counter-add` / `histogram-record` metrics and the runtime's
//! (`tailgate_plugin_calls_total`, `..._faults_total`, state gauges) land
//! here with exactly the names and labels the proxy would export. Reading
//! does not reset anything.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Name and sorted labels of one series.
type SeriesKey = (String, Vec<(String, String)>);

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(value);
    }
}

#[derive(Default)]
struct Series {
    counters: BTreeMap<SeriesKey, Arc<AtomicU64>>,
    gauges: BTreeMap<SeriesKey, Arc<AtomicU64>>,
    histograms: BTreeMap<SeriesKey, Arc<Samples>>,
}

/// The recorder: every series ever registered, with live values.
#[derive(Default)]
pub(crate) struct MetricsCapture {
    series: Mutex<Series>,
}

fn series_key(key: &Key) -> SeriesKey {
    let mut labels: Vec<(String, String)> = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

impl MetricsCapture {
    fn lock(&self) -> MutexGuard<'_, Series> {
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` with this recorder as the thread's metrics recorder.
    pub(crate) fn around<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(self, f)
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let series = self.lock();
        let mut values = Vec::new();
        for ((name, labels), counter) in &series.counters {
            values.push(MetricValue {
                name: name.clone(),
                labels: labels.clone(),
                value: Recorded::Counter(counter.load(Ordering::SeqCst)),
            });
        }
        for ((name, labels), gauge) in &series.gauges {
            values.push(MetricValue {
                name: name.clone(),
                labels: labels.clone(),
                value: Recorded::Gauge(f64::from_bits(gauge.load(Ordering::SeqCst))),
            });
        }
        for ((name, labels), samples) in &series.histograms {
            let samples = samples
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            values.push(MetricValue {
                name: name.clone(),
                labels: labels.clone(),
                value: Recorded::Histogram(samples),
            });
        }
        MetricsSnapshot { values }
    }
}

impl Recorder for MetricsCapture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = self
            .lock()
            .counters
            .entry(series_key(key))
            .or_default()
            .clone();
        Counter::from_arc(cell)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let cell = self
            .lock()
            .gauges
            .entry(series_key(key))
            .or_default()
            .clone();
        Gauge::from_arc(cell)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let cell = self
            .lock()
            .histograms
            .entry(series_key(key))
            .or_default()
            .clone();
        Histogram::from_arc(cell)
    }
}

/// What a series holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// One series: name, labels (sorted), value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: Recorded,
}

/// Every metric recorded so far, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    values: Vec<MetricValue>,
}

impl MetricsSnapshot {
    pub fn all(&self) -> &[MetricValue] {
        &self.values
    }

    /// The series `name` having at least `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a MetricValue> + 'a {
        self.values.iter().filter(move |m| {
            m.name == name
                && labels
                    .iter()
                    .all(|(k, v)| m.labels.iter().any(|(hk, hv)| hk == k && hv == v))
        })
    }

    /// Sum of the counters `name` having at least `labels` (0 if none).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|m| match m.value {
                Recorded::Counter(n) => n,
                _ => 0,
            })
            .sum()
    }

    /// The gauge `name` having at least `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).find_map(|m| match m.value {
            Recorded::Gauge(g) => Some(g),
            _ => None,
        })
    }

    /// Every value recorded into the histograms `name` having at least `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|m| match &m.value {
                Recorded::Histogram(samples) => samples.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// A plugin-defined counter by the name the plugin gave `counter-add`
    /// (exported as `tailgate_plugin_<name>`, `-` and `.` as `_`).
    pub fn plugin_counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counter(&plugin_metric_name(name), labels)
    }

    /// A plugin-defined histogram by the name the plugin gave `histogram-record`.
    pub fn plugin_histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.histogram(&plugin_metric_name(name), labels)
    }

    /// One line per series that holds something (counters above 0,
    /// histograms with values, every gauge), for failure messages.
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self
            .values
            .iter()
            .filter(|m| match &m.value {
                Recorded::Counter(n) => *n > 0,
                Recorded::Gauge(_) => true,
                Recorded::Histogram(samples) => !samples.is_empty(),
            })
            .map(|m| {
                let labels: Vec<String> =
                    m.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let value = match &m.value {
                    Recorded::Counter(n) => n.to_string(),
                    Recorded::Gauge(g) => g.to_string(),
                    Recorded::Histogram(samples) => format!("{samples:?}"),
                };
                format!("  {}{{{}}} {value}", m.name, labels.join(","))
            })
            .collect();
        if lines.is_empty() {
            return "  (no metrics recorded)".to_owned();
        }
        lines.join("\n")
    }
}

/// The exported name of a plugin-defined metric, as the runtime builds it.
pub fn plugin_metric_name(name: &str) -> String {
    let sanitized: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("tailgate_plugin_{sanitized}")
}
