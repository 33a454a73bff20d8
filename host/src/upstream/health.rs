//! Upstream health, per address of an upstream: passive (nginx `max_fails`
//! consecutive failures take an address out of rotation for `fail_timeout`)
//! and, when configured, active (a periodic `GET` marks it up or down). The
//! HTTP client asks for the order to try addresses in (up ones in config
//! order, then down ones, soonest back first — an upstream is never left
//! with nothing to try) and reports each attempt's outcome.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::model::{Endpoint, HealthPolicy};

/// The health of every address of one upstream.
#[derive(Debug)]
pub struct UpstreamHealth {
    upstream: String,
    max_fails: u32,
    fail_timeout: Duration,
    endpoints: Vec<EndpointHealth>,
}

#[derive(Debug)]
struct EndpointHealth {
    label: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    down_until: Option<Instant>,
}

impl UpstreamHealth {
    pub fn new(upstream: &str, policy: &HealthPolicy, endpoints: &[Endpoint]) -> Self {
        UpstreamHealth {
            upstream: upstream.to_owned(),
            max_fails: policy.max_fails,
            fail_timeout: policy.fail_timeout,
            endpoints: endpoints
                .iter()
                .map(|e| EndpointHealth {
                    label: format!("{}:{}", e.host, e.port),
                    state: Mutex::new(State::default()),
                })
                .collect(),
        }
    }

    /// Indexes of the addresses to try, best first.
    pub fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut up = Vec::with_capacity(self.endpoints.len());
        let mut down = Vec::new();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            match endpoint.lock().down_until.filter(|until| *until > now) {
                None => up.push(i),
                Some(until) => down.push((until, i)),
            }
        }
        down.sort();
        up.extend(down.into_iter().map(|(_, i)| i));
        up
    }

    /// Whether address `i` is in rotation now.
    pub fn is_up(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| {
            e.lock()
                .down_until
                .is_none_or(|until| until <= Instant::now())
        })
    }

    /// Address `i` answered.
    pub fn success(&self, i: usize) {
        let Some(endpoint) = self.endpoints.get(i) else {
            return;
        };
        let mut state = endpoint.lock();
        let was_down = state.down_until.take().is_some();
        state.consecutive_failures = 0;
        drop(state);
        if was_down {
            tracing::info!(upstream = %self.upstream, address = %endpoint.label, "upstream address is back up");
            self.gauge(endpoint, 1.0);
        }
    }

    /// Address `i` failed (connect, exchange or timeout). Marks it down once
    /// `max_fails` failures are consecutive.
    pub fn failure(&self, i: usize, why: &dyn std::fmt::Display) {
        let Some(endpoint) = self.endpoints.get(i) else {
            return;
        };
        let mut state = endpoint.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.max_fails {
            let already = state.down_until.is_some_and(|u| u > Instant::now());
            state.down_until = Some(Instant::now() + self.fail_timeout);
            state.consecutive_failures = 0;
            drop(state);
            // A lone address is tried anyway: no news worth a warning.
            if !already && self.endpoints.len() > 1 {
                tracing::warn!(
                    upstream = %self.upstream,
                    address = %endpoint.label,
                    "upstream address marked down for {:?}: {why}",
                    self.fail_timeout
                );
                self.gauge(endpoint, 0.0);
            }
        }
    }

    fn gauge(&self, endpoint: &EndpointHealth, value: f64) {
        metrics::gauge!(
            "tailgate_upstream_address_up",
            "upstream" => self.upstream.clone(),
            "address" => endpoint.label.clone()
        )
        .set(value);
    }
}

impl EndpointHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(max_fails: u32, fail_timeout: Duration, n: usize) -> UpstreamHealth {
        let endpoints: Vec<Endpoint> = (0..n)
            .map(|i| Endpoint {
                host: format!("h{i}"),
                port: 80,
                authority: format!("h{i}").parse().expect("authority"),
            })
            .collect();
        let policy = HealthPolicy {
            max_fails,
            fail_timeout,
            active: None,
        };
        UpstreamHealth::new("u", &policy, &endpoints)
    }

    #[test]
    fn consecutive_failures_take_an_address_out_until_fail_timeout() {
        let h = health(2, Duration::from_millis(80), 3);
        assert_eq!(h.order(), vec![0, 1, 2]);
        h.failure(0, &"refused");
        assert_eq!(h.order(), vec![0, 1, 2], "one failure of two allowed");
        h.success(0);
        h.failure(0, &"refused");
        assert!(h.is_up(0), "a success resets the count");
        h.failure(0, &"refused");
        assert!(!h.is_up(0));
        assert_eq!(h.order(), vec![1, 2, 0], "down addresses are tried last");
        std::thread::sleep(Duration::from_millis(100));
        assert!(h.is_up(0));
        assert_eq!(h.order(), vec![0, 1, 2]);
    }

    #[test]
    fn all_down_still_gives_every_address_soonest_back_first() {
        let h = health(1, Duration::from_secs(10), 2);
        h.failure(1, &"x");
        std::thread::sleep(Duration::from_millis(5));
        h.failure(0, &"x");
        assert_eq!(h.order(), vec![1, 0]);
        h.success(0);
        assert_eq!(h.order(), vec![0, 1]);
    }
}
