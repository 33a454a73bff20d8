//! The process-wide metrics recorder: every `metrics::counter!` /
//! `histogram!` / `gauge!` in Tailgate and in plugins lands here. It renames
//! `tailgate_*` metrics to the configured prefix, adds the constant labels,
//! gives every histogram cumulative buckets, and renders the Prometheus text
//! format that `/metrics` serves and the remote_write pusher sends.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// The name every metric is recorded under in the code.
pub const CODE_PREFIX: &str = "tailgate";

/// Request and upstream latency buckets (seconds), the ones nginx dashboards use.
pub const HTTP_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Plugin hook call time (seconds): calls take micro- to milliseconds.
pub const PLUGIN_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// Build the recorder for `prefix` with `labels` on every series.
pub fn build(
    prefix: &str,
    labels: &[(String, String)],
) -> Result<(PrefixedRecorder, PrometheusHandle), BuildError> {
    let mut builder = PrometheusBuilder::new()
        .set_buckets(&HTTP_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(format!("{prefix}_plugin_call_duration_seconds")),
            &PLUGIN_BUCKETS,
        )?;
    for (name, value) in labels {
        builder = builder.add_global_label(name, value);
    }
    let inner = builder.build_recorder();
    let handle = inner.handle();
    let recorder = PrefixedRecorder {
        inner,
        prefix: (prefix != CODE_PREFIX).then(|| prefix.to_owned()),
    };
    Ok((recorder, handle))
}

/// Renames `tailgate_<rest>` to `<prefix>_<rest>` on the way to `inner`;
/// other names (plugins' own are `tailgate_plugin_*` too) pass unchanged.
#[derive(Debug)]
pub struct PrefixedRecorder<R = metrics_exporter_prometheus::PrometheusRecorder> {
    inner: R,
    /// `None` when the prefix is the code's own: nothing to rename.
    prefix: Option<String>,
}

impl<R> PrefixedRecorder<R> {
    #[cfg(test)]
    pub fn new(inner: R, prefix: &str) -> Self {
        PrefixedRecorder {
            inner,
            prefix: (prefix != CODE_PREFIX).then(|| prefix.to_owned()),
        }
    }

    fn rename(&self, name: &str) -> Option<String> {
        let prefix = self.prefix.as_ref()?;
        let rest = name.strip_prefix(CODE_PREFIX)?.strip_prefix('_')?;
        Some(format!("{prefix}_{rest}"))
    }

    fn key_name(&self, name: KeyName) -> KeyName {
        match self.rename(name.as_str()) {
            Some(renamed) => KeyName::from(renamed),
            None => name,
        }
    }

    fn with_key<T>(&self, key: &Key, register: impl FnOnce(&Key) -> T) -> T {
        match self.rename(key.name()) {
            Some(renamed) => {
                let key = Key::from_parts(renamed, key.labels().cloned().collect::<Vec<_>>());
                register(&key)
            }
            None => register(key),
        }
    }
}

impl<R: Recorder> Recorder for PrefixedRecorder<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner
            .describe_counter(self.key_name(key), unit, description)
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner
            .describe_gauge(self.key_name(key), unit, description)
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner
            .describe_histogram(self.key_name(key), unit, description)
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.with_key(key, |key| self.inner.register_counter(key, metadata))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.with_key(key, |key| self.inner.register_gauge(key, metadata))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.with_key(key, |key| self.inner.register_histogram(key, metadata))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(prefix: &str, labels: &[(&str, &str)], record: impl FnOnce()) -> String {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (recorder, handle) = build(prefix, &labels).expect("recorder");
        metrics::with_local_recorder(&recorder, record);
        handle.render()
    }

    #[test]
    fn the_prefix_replaces_tailgate_and_leaves_other_names() {
        let text = render("flyio_nginx", &[], || {
            metrics::counter!("tailgate_http_requests_total", "status" => "200").increment(2);
            metrics::counter!("up_like_total").increment(1);
            metrics::counter!("tailgatex_total").increment(1);
        });
        assert!(
            text.contains("flyio_nginx_http_requests_total{status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("up_like_total 1"), "{text}");
        assert!(text.contains("tailgatex_total 1"), "{text}");
        assert!(!text.contains("tailgate_http"), "{text}");
    }

    #[test]
    fn histograms_have_the_nginx_buckets_and_constant_labels() {
        let text = render("tailgate", &[("instance", "flyio-proxy")], || {
            metrics::histogram!("tailgate_http_request_duration_seconds", "host" => "a")
                .record(0.3);
            metrics::histogram!("tailgate_plugin_call_duration_seconds").record(0.0002);
        });
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ] {
            let want = format!("le=\"{le}\"");
            assert!(
                text.lines().any(|l| l
                    .starts_with("tailgate_http_request_duration_seconds_bucket")
                    && l.contains(&want)),
                "no bucket {le}:\n{text}"
            );
        }
        for (le, n) in [("0.25", 0), ("0.5", 1), ("+Inf", 1)] {
            let line = format!(
                "tailgate_http_request_duration_seconds_bucket{{instance=\"flyio-proxy\",host=\"a\",le=\"{le}\"}} {n}"
            );
            assert!(text.contains(&line), "no {line}:\n{text}");
        }
        assert!(text.contains(
            "tailgate_http_request_duration_seconds_count{instance=\"flyio-proxy\",host=\"a\"} 1"
        ));
        assert!(
            text.contains("tailgate_plugin_call_duration_seconds_bucket{instance=\"flyio-proxy\",le=\"0.00025\"} 1"),
            "{text}"
        );
        assert!(text.contains("instance=\"flyio-proxy\""), "{text}");
    }
}
