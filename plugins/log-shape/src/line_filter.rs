//! Which lines `on-log` keeps: `drop` rules (a request class whose lines
//! are never written, e.g. health checks) and `sample` (keep 1 in N lines
//! of a class, always keeping errors). The sampling count lives in the
//! host's shared `counter-incr`, so every instance and worker thread counts
//! on the same sequence.

use regex::{Regex, RegexBuilder};
use tailgate_plugin_sdk::validate::http_methods;
use tailgate_plugin_sdk::{ConfigError, LogFieldSet, LogRecord};

use crate::config::{RawMatch, RawSample};
use crate::status_set::StatusSet;

/// Compiled-size cap of one path regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Highest sampling rate: 1 in a million.
const MAX_SAMPLE_RATE: u32 = 1_000_000;

/// A class of requests: every condition given must hold.
#[derive(Debug, Clone)]
pub struct RequestClass {
    path: Option<Regex>,
    status: Option<StatusSet>,
    /// Upper case.
    methods: Option<Vec<String>>,
}

impl RequestClass {
    /// `at` names the table in errors (`drop[0]`, `sample.when`).
    pub fn build(
        at: &str,
        raw: &RawMatch,
        allow_everything: bool,
    ) -> Result<RequestClass, ConfigError> {
        if !allow_everything && raw.path.is_none() && raw.status.is_none() && raw.methods.is_none()
        {
            return Err(ConfigError::new(
                at,
                "give `path`, `status`, `methods` or several (a rule matching every line would drop them all)",
            ));
        }
        let path = match &raw.path {
            Some(pattern) => Some(
                RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|err| ConfigError::new(format!("{at}.path"), err))?,
            ),
            None => None,
        };
        let status = match &raw.status {
            Some(text) => Some(
                StatusSet::parse(text)
                    .map_err(|err| ConfigError::new(format!("{at}.status"), err))?,
            ),
            None => None,
        };
        let methods = match &raw.methods {
            Some(methods) => Some(http_methods(&format!("{at}.methods"), methods)?),
            None => None,
        };
        Ok(RequestClass {
            path,
            status,
            methods,
        })
    }

    /// The record fields [`RequestClass::matches`] reads: the URI for
    /// `path` (the method and status always come).
    pub fn log_fields(&self) -> LogFieldSet {
        let mut fields = LogFieldSet::empty();
        if self.path.is_some() {
            fields |= LogFieldSet::URI;
        }
        fields
    }

    pub fn matches(&self, rec: &LogRecord) -> bool {
        self.status
            .as_ref()
            .is_none_or(|set| set.contains(rec.status))
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|name| name == rec.method.as_str()))
            && self.path.as_ref().is_none_or(|re| {
                let path = rec.uri.split_once('?').map_or(rec.uri.as_str(), |(p, _)| p);
                re.is_match(path)
            })
    }
}

/// `sample`: keep 1 in `rate` lines of `when`, never sampling `always_keep`.
#[derive(Debug, Clone)]
pub struct Sampling {
    rate: u32,
    when: RequestClass,
    always_keep: StatusSet,
}

/// How a sampled line's fate is decided: the next number of a shared count.
pub trait SampleCounter {
    /// Add 1 to the shared counter `key` and return the new value.
    fn next(&self, key: &str) -> i64;
}

impl Sampling {
    pub fn build(raw: &RawSample) -> Result<Sampling, ConfigError> {
        if raw.rate == 0 || raw.rate > MAX_SAMPLE_RATE {
            return Err(ConfigError::new(
                "sample.rate",
                format!(
                    "{} is not a sampling rate: keep 1 line in `rate`, 1 to {MAX_SAMPLE_RATE}",
                    raw.rate
                ),
            ));
        }
        let when = RequestClass::build("sample.when", &raw.when, true)?;
        let always_keep = StatusSet::parse(raw.always_keep.as_deref().unwrap_or("400-599"))
            .map_err(|err| ConfigError::new("sample.always_keep", err))?;
        Ok(Sampling {
            rate: raw.rate,
            when,
            always_keep,
        })
    }

    /// The record fields [`Sampling::keeps`] reads: the class's and the
    /// route (it names the shared count); none at rate 1, which keeps
    /// every line unread.
    pub fn log_fields(&self) -> LogFieldSet {
        if self.rate == 1 {
            return LogFieldSet::empty();
        }
        self.when.log_fields() | LogFieldSet::ROUTE
    }

    /// Whether to keep `rec`: lines outside the class and kept statuses
    /// always; the others when their number in the route's shared sequence
    /// is 1, 1 + rate, 1 + 2 * rate, ...
    pub fn keeps(&self, rec: &LogRecord, counter: &impl SampleCounter) -> bool {
        if self.rate == 1 || self.always_keep.contains(rec.status) || !self.when.matches(rec) {
            return true;
        }
        let n = counter.next(&format!("sample:{}", rec.route));
        (n - 1).rem_euclid(i64::from(self.rate)) == 0
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::fields::tests::record;

    #[derive(Default)]
    struct Count(Cell<i64>);

    impl SampleCounter for Count {
        fn next(&self, key: &str) -> i64 {
            assert_eq!(key, "sample:docs");
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
    }

    fn class(path: Option<&str>, status: Option<&str>, methods: Option<&[&str]>) -> RequestClass {
        RequestClass::build(
            "drop[0]",
            &RawMatch {
                path: path.map(str::to_owned),
                status: status.map(str::to_owned),
                methods: methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect()),
            },
            false,
        )
        .unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn classes_need_every_condition() {
        let health = class(Some("^/healthz$"), Some("200-399"), Some(&["get", "HEAD"]));
        let mut rec = record();
        rec.uri = "/healthz?probe=1".into();
        assert!(health.matches(&rec));
        rec.status = 503;
        assert!(!health.matches(&rec), "a failing health check is kept");
        rec.status = 200;
        rec.method = tailgate_plugin_sdk::Method::from_name("POST");
        assert!(!health.matches(&rec));
        rec.method = tailgate_plugin_sdk::Method::from_name("GET");
        rec.uri = "/healthz/deep".into();
        assert!(!health.matches(&rec));
        // The path regex sees the path, not the query.
        let by_query = class(Some("probe"), None, None);
        rec.uri = "/x?probe=1".into();
        assert!(!by_query.matches(&rec));
    }

    #[test]
    fn a_rule_must_say_what_it_matches() {
        let err = RequestClass::build("drop[1]", &RawMatch::default(), false)
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("drop[1]: give `path`, `status`, `methods` or several"),
            "{err}"
        );
        let err = RequestClass::build(
            "drop[0]",
            &RawMatch {
                status: Some("2xx-3xx".into()),
                ..RawMatch::default()
            },
            false,
        )
        .expect_err("refused")
        .to_string();
        assert!(
            err.starts_with("drop[0].status: `2xx-3xx` is not a status"),
            "{err}"
        );
        let err = RequestClass::build(
            "drop[0]",
            &RawMatch {
                methods: Some(vec!["G ET".into()]),
                ..RawMatch::default()
            },
            false,
        )
        .expect_err("refused")
        .to_string();
        assert_eq!(err, "drop[0].methods[0]: `G ET` is not a valid HTTP method");
        assert!(RequestClass::build(
            "drop[0]",
            &RawMatch {
                path: Some("(".into()),
                ..RawMatch::default()
            },
            false
        )
        .expect_err("refused")
        .to_string()
        .starts_with("drop[0].path: regex parse error"));
    }

    fn sampling(rate: u32, when_status: Option<&str>, always_keep: Option<&str>) -> Sampling {
        Sampling::build(&RawSample {
            rate,
            when: RawMatch {
                status: when_status.map(str::to_owned),
                ..RawMatch::default()
            },
            always_keep: always_keep.map(str::to_owned),
        })
        .unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn keeps_one_in_n_of_the_class_from_the_shared_count() {
        let sample = sampling(4, Some("200-399"), None);
        let count = Count::default();
        let rec = record();
        let kept: Vec<bool> = (0..9).map(|_| sample.keeps(&rec, &count)).collect();
        assert_eq!(
            kept,
            vec![true, false, false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn errors_and_other_classes_are_always_kept_and_not_counted() {
        let sample = sampling(1000, Some("200-599"), None);
        let count = Count::default();
        let mut rec = record();
        for status in [400, 404, 500, 503] {
            rec.status = status;
            assert!(sample.keeps(&rec, &count));
        }
        assert_eq!(count.0.get(), 0);
        rec.status = 101;
        assert!(sample.keeps(&rec, &count), "outside `when`");
        assert_eq!(count.0.get(), 0);

        let keep_5xx_only = sampling(2, None, Some("5xx"));
        rec.status = 404;
        assert!(keep_5xx_only.keeps(&rec, &count));
        assert!(!keep_5xx_only.keeps(&rec, &count));
        rec.status = 502;
        assert!(keep_5xx_only.keeps(&rec, &count));
    }

    #[test]
    fn rate_one_keeps_everything_without_counting() {
        let sample = sampling(1, None, None);
        let count = Count::default();
        assert!(sample.keeps(&record(), &count));
        assert_eq!(count.0.get(), 0);
    }

    #[test]
    fn bad_sampling_config_names_the_key() {
        let err = |rate, keep: Option<&str>| {
            Sampling::build(&RawSample {
                rate,
                when: RawMatch::default(),
                always_keep: keep.map(str::to_owned),
            })
            .expect_err("refused")
            .to_string()
        };
        assert_eq!(
            err(0, None),
            "sample.rate: 0 is not a sampling rate: keep 1 line in `rate`, 1 to 1000000"
        );
        assert!(err(10, Some("bad")).starts_with("sample.always_keep: `bad` is not a status"));
    }
}
