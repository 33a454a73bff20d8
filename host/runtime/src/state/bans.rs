//! The ban list behind the `ban-add` / `ban-check` / `ban-remove` host
//! imports and the admin API's `/bans`: fail2ban inside the proxy. One list
//! per [`crate::Runtime`] (jails are global names: every plugin and route
//! naming a jail shares it), apart from kv and never evicted by other
//! stores' keys. Bounded by `max_bans`: a full list makes room by dropping
//! the ban that expires first.
//!
//! A ban's length escalates with repeat offences: the list remembers, per
//! (jail, key), how many times it was banned until [`OFFENCE_RETENTION_MS`]
//! after its last ban ended, and a new ban lasts
//! `duration_ms × increment_factor^(previous offences)`, capped at
//! `max_duration_ms` when that is above 0. Expired bans read as absent and
//! are dropped lazily. With a state directory every change is written to
//! `bans.json` in the background ([`persist`]).

pub(crate) mod persist;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use super::bounded_map::evictions_counter;
use persist::{BanWriter, StateFileError};

/// How long the offence count of a (jail, key) is remembered after its
/// last ban ended: 24 hours.
pub const OFFENCE_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

const BANS_ACTIVE: &str = "tailgate_bans_active";
const BANS_TOTAL: &str = "tailgate_bans_total";

/// What `ban-add` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BanRequest {
    /// Length of a first ban, ms (0 is taken as 1).
    pub duration_ms: u64,
    /// Failures that led to it (kept with the ban, for operators).
    pub failures: u32,
    /// Each earlier offence multiplies the length by this (below 1, or not
    /// a number, is taken as 1: no escalation).
    pub increment_factor: f64,
    /// Longest ban, ms; 0 = no cap.
    pub max_duration_ms: u64,
}

impl BanRequest {
    /// A fixed-length ban: no escalation, no cap (the admin API's).
    pub fn fixed(duration_ms: u64) -> Self {
        BanRequest {
            duration_ms,
            failures: 0,
            increment_factor: 1.0,
            max_duration_ms: 0,
        }
    }

    /// The length of a ban after `previous` offences.
    fn length_ms(&self, previous: u32) -> u64 {
        let factor = if self.increment_factor.is_finite() && self.increment_factor >= 1.0 {
            self.increment_factor
        } else {
            1.0
        };
        let exponent = i32::try_from(previous).unwrap_or(i32::MAX);
        let scaled = self.duration_ms.max(1) as f64 * factor.powi(exponent);
        // `as` saturates at u64::MAX for huge and infinite values.
        let length = (scaled as u64).max(1);
        if self.max_duration_ms > 0 {
            length.min(self.max_duration_ms)
        } else {
            length
        }
    }
}

/// One ban (the WIT `ban` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    pub jail: String,
    pub key: String,
    pub since_unix_ms: u64,
    pub expires_unix_ms: u64,
    pub failures: u32,
    /// Bans of this (jail, key) within the retention, this one included.
    pub offences: u32,
}

impl BanEntry {
    fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_unix_ms
    }
}

/// What `ban-add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanOutcome {
    /// A new ban.
    Banned(BanEntry),
    /// The key was banned already: that ban, unchanged.
    Already(BanEntry),
}

/// Remembered offences of one (jail, key), as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Offences {
    pub(crate) count: u32,
    /// Forgotten at this time, ms: [`OFFENCE_RETENTION_MS`] after the last
    /// ban ended.
    pub(crate) forget_unix_ms: u64,
}

type BanKey = (String, String);

/// The list itself, under the [`BanList`]'s lock.
#[derive(Default)]
pub(crate) struct Bans {
    /// jail -> key -> ban: looked up with `&str`s on every check.
    active: HashMap<String, HashMap<String, BanEntry>>,
    active_len: usize,
    /// (expires, jail, key) of every active ban: the soonest first.
    by_expiry: BTreeSet<(u64, String, String)>,
    offences: HashMap<BanKey, Offences>,
    /// (forget, jail, key) of every offence record.
    offences_by_forget: BTreeSet<(u64, String, String)>,
}

impl Bans {
    fn get(&self, jail: &str, key: &str) -> Option<&BanEntry> {
        self.active.get(jail)?.get(key)
    }

    fn insert(&mut self, ban: BanEntry) {
        self.by_expiry
            .insert((ban.expires_unix_ms, ban.jail.clone(), ban.key.clone()));
        active_gauge(&ban.jail).increment(1.0);
        let jail = self.active.entry(ban.jail.clone()).or_default();
        if jail.insert(ban.key.clone(), ban).is_none() {
            self.active_len += 1;
        }
    }

    fn take(&mut self, jail: &str, key: &str) -> Option<BanEntry> {
        let bans = self.active.get_mut(jail)?;
        let ban = bans.remove(key)?;
        if bans.is_empty() {
            self.active.remove(jail);
        }
        self.active_len -= 1;
        self.by_expiry
            .remove(&(ban.expires_unix_ms, ban.jail.clone(), ban.key.clone()));
        active_gauge(jail).decrement(1.0);
        Some(ban)
    }

    /// The ban that expires first, taken out.
    fn take_soonest(&mut self) -> Option<BanEntry> {
        let (_, jail, key) = self.by_expiry.first()?.clone();
        self.take(&jail, &key)
    }

    /// Drops every ban expired at `now_ms` and every offence record past
    /// its retention.
    fn sweep(&mut self, now_ms: u64) {
        while let Some((expires, jail, key)) = self.by_expiry.first().cloned() {
            if expires > now_ms {
                break;
            }
            self.take(&jail, &key);
        }
        while let Some((forget, jail, key)) = self.offences_by_forget.first().cloned() {
            if forget > now_ms {
                break;
            }
            self.offences_by_forget.pop_first();
            self.offences.remove(&(jail, key));
        }
    }

    /// Sets the offence record of (jail, key), keeping at most `cap`
    /// records (the soonest forgotten goes first).
    fn remember(&mut self, jail: &str, key: &str, offences: Offences, cap: usize) {
        let id = (jail.to_owned(), key.to_owned());
        match self.offences.get(&id) {
            Some(old) => {
                self.offences_by_forget
                    .remove(&(old.forget_unix_ms, id.0.clone(), id.1.clone()));
            }
            None => {
                while self.offences.len() >= cap.max(1) {
                    let Some((_, j, k)) = self.offences_by_forget.pop_first() else {
                        break;
                    };
                    self.offences.remove(&(j, k));
                }
            }
        }
        self.offences_by_forget
            .insert((offences.forget_unix_ms, id.0.clone(), id.1.clone()));
        self.offences.insert(id, offences);
    }

    /// Restarts the retention of (jail, key)'s offences from `ended_ms`.
    fn ended(&mut self, jail: &str, key: &str, ended_ms: u64, cap: usize) {
        let id = (jail.to_owned(), key.to_owned());
        if let Some(old) = self.offences.get(&id).copied() {
            let forget_unix_ms = ended_ms.saturating_add(OFFENCE_RETENTION_MS);
            self.remember(
                jail,
                key,
                Offences {
                    forget_unix_ms,
                    ..old
                },
                cap,
            );
        }
    }

    pub(crate) fn bans(&self) -> impl Iterator<Item = &BanEntry> {
        self.active.values().flat_map(HashMap::values)
    }

    pub(crate) fn offence_records(&self) -> impl Iterator<Item = (&BanKey, &Offences)> {
        self.offences.iter()
    }
}

/// The runtime's bans: see the module docs. Safe to share between threads;
/// checks take a read lock only.
pub struct BanList {
    bans: Arc<RwLock<Bans>>,
    max_bans: usize,
    evictions: metrics::Counter,
    /// Writes `bans.json` after changes (with a state directory).
    writer: Option<BanWriter>,
}

impl BanList {
    /// An empty list of at most `max_bans` bans, kept in memory only.
    pub fn new(max_bans: usize) -> Self {
        BanList {
            bans: Arc::default(),
            max_bans: max_bans.max(1),
            evictions: evictions_counter("bans"),
            writer: None,
        }
    }

    /// The list kept in `dir/bans.json`: loaded now (expired bans dropped,
    /// offence records kept; a broken file is set aside with a warning),
    /// and written back in the background after every change. Fails only
    /// when `dir` cannot be created.
    pub fn open(dir: &Path, max_bans: usize, now_ms: u64) -> Result<Self, StateFileError> {
        let mut list = BanList::new(max_bans);
        let loaded = persist::load(dir, now_ms)?;
        for ban in loaded.bans {
            list.insert_loaded(ban);
        }
        {
            let mut bans = list.write();
            for ((jail, key), offences) in loaded.offences {
                bans.remember(&jail, &key, offences, list.max_bans);
            }
        }
        list.writer = Some(BanWriter::start(dir, list.bans.clone()));
        Ok(list)
    }

    /// `ban-add`: bans (jail, key) unless it is banned already, atomically
    /// (of a burst of parallel calls, one bans and the rest get `Already`).
    pub fn add(&self, jail: &str, key: &str, request: &BanRequest, now_ms: u64) -> BanOutcome {
        let mut bans = self.write();
        bans.sweep(now_ms);
        if let Some(ban) = bans.get(jail, key) {
            return BanOutcome::Already(ban.clone());
        }
        let previous = bans
            .offences
            .get(&(jail.to_owned(), key.to_owned()))
            .map_or(0, |o| o.count);
        let expires_unix_ms = now_ms.saturating_add(request.length_ms(previous));
        let ban = BanEntry {
            jail: jail.to_owned(),
            key: key.to_owned(),
            since_unix_ms: now_ms,
            expires_unix_ms,
            failures: request.failures,
            offences: previous.saturating_add(1),
        };
        if bans.active_len >= self.max_bans {
            if let Some(evicted) = bans.take_soonest() {
                self.evictions.increment(1);
                bans.ended(&evicted.jail, &evicted.key, now_ms, self.max_bans);
            }
        }
        let offences = Offences {
            count: ban.offences,
            forget_unix_ms: expires_unix_ms.saturating_add(OFFENCE_RETENTION_MS),
        };
        bans.remember(jail, key, offences, self.max_bans);
        bans.insert(ban.clone());
        drop(bans);
        metrics::counter!(BANS_TOTAL, "jail" => jail.to_owned()).increment(1);
        self.changed();
        BanOutcome::Banned(ban)
    }

    /// `ban-check`: the active ban of (jail, key), if any.
    pub fn check(&self, jail: &str, key: &str, now_ms: u64) -> Option<BanEntry> {
        let expired = match self.read().get(jail, key) {
            None => return None,
            Some(ban) if !ban.is_expired(now_ms) => return Some(ban.clone()),
            Some(_) => true,
        };
        if expired {
            self.write().sweep(now_ms);
            self.changed();
        }
        None
    }

    /// `ban-remove`: lifts the ban of (jail, key); true if there was one.
    /// The offence count stays (its retention starts now).
    pub fn remove(&self, jail: &str, key: &str, now_ms: u64) -> bool {
        let mut bans = self.write();
        bans.sweep(now_ms);
        let lifted = bans.take(jail, key).is_some();
        if lifted {
            bans.ended(jail, key, now_ms, self.max_bans);
        }
        drop(bans);
        if lifted {
            self.changed();
        }
        lifted
    }

    /// Every active ban, sorted by jail and key.
    pub fn list(&self, now_ms: u64) -> Vec<BanEntry> {
        let mut out: Vec<BanEntry> = self
            .read()
            .bans()
            .filter(|ban| !ban.is_expired(now_ms))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.jail, &a.key).cmp(&(&b.jail, &b.key)));
        out
    }

    /// Bans held, including expired ones not yet dropped.
    pub fn len(&self) -> usize {
        self.read().active_len
    }

    /// True when no ban is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most bans held at once.
    pub fn capacity(&self) -> usize {
        self.max_bans
    }

    /// Waits until every change so far is in `bans.json` (no-op without a
    /// state directory); false if that took longer than `timeout`.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        self.writer.as_ref().is_none_or(|w| w.flush(timeout))
    }

    /// A ban made on another machine (read from the shared backend): kept
    /// here too, so this machine still enforces it while the backend is
    /// unreachable. A ban already held for (jail, key) is left as it is.
    pub(crate) fn mirror(&self, ban: BanEntry, now_ms: u64) {
        if ban.is_expired(now_ms) || self.read().get(&ban.jail, &ban.key).is_some() {
            return;
        }
        self.insert_loaded(ban);
        self.changed();
    }

    /// A loaded ban, through the same cap as new ones.
    fn insert_loaded(&self, ban: BanEntry) {
        let mut bans = self.write();
        if bans.get(&ban.jail, &ban.key).is_some() {
            return;
        }
        if bans.active_len >= self.max_bans {
            match bans.by_expiry.first() {
                Some((soonest, _, _)) if *soonest < ban.expires_unix_ms => {
                    bans.take_soonest();
                    self.evictions.increment(1);
                }
                _ => return,
            }
        }
        bans.insert(ban);
    }

    fn changed(&self) {
        if let Some(writer) = &self.writer {
            writer.notify();
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Bans> {
        // Every change is a whole insert or removal under the lock; a
        // panic elsewhere cannot leave the list half-changed.
        self.bans.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Bans> {
        self.bans.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for BanList {
    fn drop(&mut self) {
        // Stop the writer first: it writes what is pending.
        drop(self.writer.take());
        // The writer's clone is gone; the gauges follow the bans out.
        let bans = self.write();
        for ban in bans.bans() {
            active_gauge(&ban.jail).decrement(1.0);
        }
    }
}

fn active_gauge(jail: &str) -> metrics::Gauge {
    metrics::gauge!(BANS_ACTIVE, "jail" => jail.to_owned())
}

#[cfg(test)]
mod tests;
