//! What the limits made of one request: each limit's [`Outcome`] (nginx's
//! `$limit_req_status` values) and the [`Verdict`] they add up to in
//! `on-request` — any enforced rejection rejects, enforced delays take the
//! longest, dry-run outcomes are only reported.

use tailgate_plugin_sdk::RateDecision;

/// The per-request var the log phase reads, like nginx's variable.
pub const STATUS_VAR: &str = "limit_req_status";
/// The var naming the zone that decided a non-`PASSED` outcome.
pub const ZONE_VAR: &str = "limit_req_zone";

/// One limit's verdict on one request: nginx's `$limit_req_status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    // Ordered by weight: a request's outcome is the heaviest of its limits'.
    Passed,
    DelayedDryRun,
    RejectedDryRun,
    Delayed,
    Rejected,
}

impl Outcome {
    pub fn of(decision: RateDecision, dry_run: bool) -> Outcome {
        match (decision, dry_run) {
            (RateDecision::Pass, _) => Outcome::Passed,
            (RateDecision::Delay(_), false) => Outcome::Delayed,
            (RateDecision::Delay(_), true) => Outcome::DelayedDryRun,
            (RateDecision::Reject(_), false) => Outcome::Rejected,
            (RateDecision::Reject(_), true) => Outcome::RejectedDryRun,
        }
    }

    /// The `$limit_req_status` value.
    pub fn var_value(self) -> &'static str {
        match self {
            Outcome::Passed => "PASSED",
            Outcome::Delayed => "DELAYED",
            Outcome::Rejected => "REJECTED",
            Outcome::DelayedDryRun => "DELAYED_DRY_RUN",
            Outcome::RejectedDryRun => "REJECTED_DRY_RUN",
        }
    }
}

/// The limits' combined verdict on one request, built limit by limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The heaviest outcome so far and the index of the limit that gave it
    /// (the first one, among equals); `None` until a limit applied.
    decided_by: Option<(Outcome, usize)>,
    /// Longest enforced delay, ms.
    delay_ms: u32,
    /// With an enforced rejection: ms until the rejecting bucket admits again.
    retry_after_ms: u32,
}

impl Verdict {
    /// Add limit `index`'s decision.
    pub fn add(&mut self, index: usize, decision: RateDecision, dry_run: bool) {
        let outcome = Outcome::of(decision, dry_run);
        let takes_over = match self.outcome() {
            None => true,
            Some(current) if outcome != current => outcome > current,
            // Among enforced delays, the longest decides.
            Some(_) => matches!(decision, RateDecision::Delay(ms)
                if outcome == Outcome::Delayed && ms > self.delay_ms),
        };
        if takes_over {
            self.decided_by = Some((outcome, index));
            if let (Outcome::Rejected, RateDecision::Reject(ms)) = (outcome, decision) {
                self.retry_after_ms = ms;
            }
        }
        if let (Outcome::Delayed, RateDecision::Delay(ms)) = (outcome, decision) {
            self.delay_ms = self.delay_ms.max(ms);
        }
    }

    /// The request's outcome; `None` when no limit applied to it.
    pub fn outcome(&self) -> Option<Outcome> {
        self.decided_by.map(|(outcome, _)| outcome)
    }

    /// The limit that decided the outcome.
    pub fn decided_by(&self) -> Option<usize> {
        self.decided_by.map(|(_, index)| index)
    }

    pub fn is_rejected(&self) -> bool {
        self.outcome() == Some(Outcome::Rejected)
    }

    /// How long to hold the request (enforced delays only).
    pub fn delay_ms(&self) -> u32 {
        if self.is_rejected() {
            0
        } else {
            self.delay_ms
        }
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u32 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(decisions: &[(RateDecision, bool)]) -> Verdict {
        let mut verdict = Verdict::default();
        for (i, (decision, dry_run)) in decisions.iter().enumerate() {
            verdict.add(i, *decision, *dry_run);
        }
        verdict
    }

    #[test]
    fn var_values_are_nginx_limit_req_status() {
        let all = [
            (RateDecision::Pass, false, "PASSED"),
            (RateDecision::Pass, true, "PASSED"),
            (RateDecision::Delay(5), false, "DELAYED"),
            (RateDecision::Delay(5), true, "DELAYED_DRY_RUN"),
            (RateDecision::Reject(5), false, "REJECTED"),
            (RateDecision::Reject(5), true, "REJECTED_DRY_RUN"),
        ];
        for (decision, dry_run, value) in all {
            assert_eq!(Outcome::of(decision, dry_run).var_value(), value);
        }
    }

    #[test]
    fn no_limit_no_outcome() {
        let verdict = Verdict::default();
        assert_eq!(verdict.outcome(), None);
        assert_eq!(verdict.delay_ms(), 0);
    }

    #[test]
    fn any_enforced_rejection_rejects() {
        let v = verdict(&[
            (RateDecision::Delay(300), false),
            (RateDecision::Reject(1500), false),
        ]);
        assert_eq!(
            (v.outcome(), v.decided_by()),
            (Some(Outcome::Rejected), Some(1))
        );
        assert_eq!(v.retry_after_secs(), 2);
        assert_eq!(v.delay_ms(), 0);
    }

    #[test]
    fn delays_take_the_longest() {
        let v = verdict(&[
            (RateDecision::Delay(100), false),
            (RateDecision::Pass, false),
            (RateDecision::Delay(700), false),
            (RateDecision::Delay(200), false),
        ]);
        assert_eq!(
            (v.outcome(), v.decided_by()),
            (Some(Outcome::Delayed), Some(2))
        );
        assert_eq!(v.delay_ms(), 700);
    }

    #[test]
    fn dry_run_outcomes_are_reported_but_never_enforced() {
        let v = verdict(&[
            (RateDecision::Reject(100), true),
            (RateDecision::Delay(400), true),
            (RateDecision::Pass, false),
        ]);
        assert_eq!(
            (v.outcome(), v.decided_by()),
            (Some(Outcome::RejectedDryRun), Some(0))
        );
        assert_eq!(v.delay_ms(), 0);
        assert!(!v.is_rejected());

        let v = verdict(&[(RateDecision::Delay(400), true)]);
        assert_eq!(v.outcome(), Some(Outcome::DelayedDryRun));
        assert_eq!(v.delay_ms(), 0);

        // An enforced delay outweighs a dry-run rejection.
        let v = verdict(&[
            (RateDecision::Reject(100), true),
            (RateDecision::Delay(50), false),
        ]);
        assert_eq!(
            (v.outcome(), v.decided_by()),
            (Some(Outcome::Delayed), Some(1))
        );
        assert_eq!(v.delay_ms(), 50);
    }

    #[test]
    fn the_first_rejection_sets_retry_after() {
        let v = verdict(&[
            (RateDecision::Reject(2500), false),
            (RateDecision::Reject(100), false),
        ]);
        assert_eq!(v.decided_by(), Some(0));
        assert_eq!(v.retry_after_secs(), 3);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        for (ms, secs) in [(1, 1), (100, 1), (1000, 1), (1001, 2), (59_999, 60), (0, 1)] {
            let v = verdict(&[(RateDecision::Reject(ms), false)]);
            assert_eq!(v.retry_after_secs(), secs, "{ms} ms");
        }
    }

    #[test]
    fn all_passed() {
        let v = verdict(&[(RateDecision::Pass, false), (RateDecision::Pass, true)]);
        assert_eq!(
            (v.outcome(), v.decided_by()),
            (Some(Outcome::Passed), Some(0))
        );
    }
}
