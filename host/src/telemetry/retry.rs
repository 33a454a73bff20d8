//! Delivery of one encoded batch: POST, and on a connection error, timeout,
//! 429 or 5xx wait (exponential backoff with jitter, at least the server's
//! `Retry-After`) and POST again, up to the policy's retry count. Other 4xx
//! answers end the batch at once: sending it again cannot succeed. Counts
//! every attempt in `tailgate_telemetry_push_requests_total{sink,result}`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rand::Rng;

use super::push_client::{PushClient, PushResult};
use crate::config::model::telemetry::RetryPolicy;

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The server refused it (4xx other than 429).
    Rejected(String),
    /// Still failing after every retry.
    GaveUp(String),
}

/// The waits between attempts of one batch.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    retries: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Backoff { policy, retries: 0 }
    }

    /// The wait before the next attempt, or `None` when the retries are used
    /// up. The step doubles from `min_backoff` to `max_backoff`; the wait is
    /// a random point in its upper half (so many proxies do not retry in
    /// step), and never shorter than the server's `Retry-After`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.retries >= self.policy.max_retries {
            return None;
        }
        let step = self
            .policy
            .min_backoff
            .saturating_mul(1u32 << self.retries.min(20))
            .min(self.policy.max_backoff);
        self.retries += 1;
        let jittered = step.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        Some(jittered.max(retry_after.unwrap_or_default()))
    }
}

/// POST `body` until it is accepted, refused, or the retries run out.
pub async fn deliver(
    client: &PushClient,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    policy: RetryPolicy,
    sink: &'static str,
) -> Delivery {
    let mut backoff = Backoff::new(policy);
    loop {
        match client.post(headers, body.clone()).await {
            PushResult::Accepted => {
                count_attempt(sink, "ok");
                return Delivery::Sent;
            }
            PushResult::Rejected { message, .. } => {
                count_attempt(sink, "rejected");
                return Delivery::Rejected(message);
            }
            PushResult::Retry {
                reason,
                retry_after,
            } => {
                count_attempt(sink, "retry");
                let Some(wait) = backoff.next_delay(retry_after) else {
                    return Delivery::GaveUp(reason);
                };
                tracing::warn!(sink, "push failed ({reason}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn count_attempt(sink: &'static str, result: &'static str) {
    metrics::counter!(
        "tailgate_telemetry_push_requests_total",
        "sink" => sink,
        "result" => result
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_retries,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_then_stops() {
        let mut b = Backoff::new(policy(6));
        let steps = [100, 200, 400, 800, 1000, 1000];
        for step in steps {
            let d = b.next_delay(None).expect("a retry left");
            let step = Duration::from_millis(step);
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} not in the upper half of {step:?}"
            );
        }
        assert_eq!(b.next_delay(None), None);
    }

    #[test]
    fn retry_after_is_a_lower_bound() {
        let mut b = Backoff::new(policy(3));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(4))),
            Some(Duration::from_secs(4))
        );
        let d = b.next_delay(Some(Duration::from_millis(1))).unwrap();
        assert!(d >= Duration::from_millis(100), "{d:?}");
    }

    #[test]
    fn no_retries_means_one_attempt() {
        assert_eq!(Backoff::new(policy(0)).next_delay(None), None);
    }
}
