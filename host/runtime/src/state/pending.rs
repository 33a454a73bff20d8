//! TEMPORARY scaffolding while the state stores land on branch `state`; not committed.
#![allow(dead_code, unused_variables)]
use crate::bindings::types::{Ban, BanOutcome, BanRequest};
#[derive(Default)]
pub(crate) struct Windows;
impl Windows {
    pub(crate) fn record(&self, key: &str, now: u64, window_ms: u64, max: u32) -> u32 { unimplemented!() }
    pub(crate) fn count(&self, key: &str, now: u64, window_ms: u64) -> u32 { unimplemented!() }
    pub(crate) fn reset(&self, key: &str) { unimplemented!() }
}
#[derive(Default)]
pub(crate) struct Bans;
impl Bans {
    pub(crate) fn add(&self, jail: &str, key: &str, r: BanRequest, now: u64) -> BanOutcome { unimplemented!() }
    pub(crate) fn check(&self, jail: &str, key: &str, now: u64) -> Option<Ban> { unimplemented!() }
    pub(crate) fn remove(&self, jail: &str, key: &str, now: u64) -> bool { unimplemented!() }
}
impl super::kv::KvStore {
    pub(crate) fn set_if_absent(&self, key: &str, v: Vec<u8>, ttl: u64, now: u64) -> bool { unimplemented!() }
    pub(crate) fn compare_and_set(&self, key: &str, e: Option<&[u8]>, v: Vec<u8>, ttl: u64, now: u64) -> bool { unimplemented!() }
    pub(crate) fn ttl_ms(&self, key: &str, now: u64) -> Option<u64> { unimplemented!() }
}
