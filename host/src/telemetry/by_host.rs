//! Metric handles kept by `host` label, for the request-path series that
//! carry one: the log phase's `tailgate_http_*` and the cache's
//! `tailgate_cache_requests_total`. Registering a series hashes its key and
//! allocates its labels, per request a measurable share of the proxy's CPU
//! (docs/performance-passes.md). At most [`MAX_CACHED_HOSTS`] hosts are kept;
//! past that, a host's handles are made per request, as the `metrics`
//! macros do.

use dashmap::DashMap;
use foldhash::fast::RandomState;

/// Hosts whose handles are kept.
pub const MAX_CACHED_HOSTS: usize = 1024;

/// The handles `V` of each host label.
pub struct ByHost<V> {
    hosts: DashMap<String, V, RandomState>,
}

impl<V> Default for ByHost<V> {
    fn default() -> Self {
        ByHost {
            hosts: DashMap::default(),
        }
    }
}

impl<V> ByHost<V> {
    /// Run `use_handles` on `host`'s handles, made by `make` the first time.
    pub fn with(&self, host: &str, make: impl FnOnce() -> V, use_handles: impl FnOnce(&V)) {
        if let Some(handles) = self.hosts.get(host) {
            return use_handles(&handles);
        }
        if self.hosts.len() < MAX_CACHED_HOSTS {
            use_handles(&self.hosts.entry(host.to_owned()).or_insert_with(make));
        } else {
            use_handles(&make());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn handles_are_made_once_per_host_up_to_the_cap() {
        let by_host: ByHost<usize> = ByHost::default();
        let made = Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            made.get()
        };
        let seen = Cell::new(0);
        for _ in 0..3 {
            by_host.with("a.test", make, |v| seen.set(*v));
        }
        assert_eq!((made.get(), seen.get()), (1, 1));
        for i in 0..MAX_CACHED_HOSTS + 2 {
            by_host.with(&format!("h{i}.test"), make, |_| {});
        }
        assert_eq!(by_host.hosts.len(), MAX_CACHED_HOSTS);
        // Past the cap: made on every use, never kept.
        let before = made.get();
        by_host.with("late.test", make, |_| {});
        by_host.with("late.test", make, |_| {});
        assert_eq!(made.get(), before + 2);
    }
}
