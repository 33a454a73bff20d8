//! The `on-log` export, written here instead of by wit-bindgen (bindings.rs
//! skips it): each record of the batch is read from the canonical-ABI list
//! the host lowered straight into the [`LogRecord`] the plugin reads, with
//! no `Vec` of the contract's records in between (a ~250-byte record stored
//! and loaded twice more per record); that one `LogRecord` is refilled for
//! each record, so the fields a plugin did not ask for (and their marks)
//! are written once per batch; and the verdicts go back without
//! wit-bindgen's `into_boxed_slice` of every line: they stay alive until
//! the post-return, which frees them with their own capacity.
//!
//! The layout is the canonical ABI's for `list<log-record>` and
//! `list<log-verdict>` (as wit-bindgen's generated code reads and writes
//! them, offsets in terms of the pointer size `P`); the host validated
//! every discriminant and string when it lowered the records.

#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::cell::{Cell, OnceCell};
use std::net::IpAddr;

use crate::records::{field, optional};
use crate::{
    CacheStatus, Field, Header, LogFieldSet, LogRecord, LogVerdict, Method, Plugin, Protocol,
    Scheme, Var,
};

/// The pointer size: 4 on wasm32 (the layouts below are written for any).
const P: usize = std::mem::size_of::<*const u8>();
/// One `log-record` in the list the host passes (its last field ends at
/// `104 + 41 * P`; a record's size is a multiple of its alignment).
const RECORD_SIZE: usize = (104 + 41 * P).next_multiple_of(RECORD_ALIGN);
const RECORD_ALIGN: usize = 8;
/// One `log-verdict` in the list handed back: tag, line, labels.
const VERDICT_SIZE: usize = 5 * P;
/// One `header`, `var` or label (`tuple<string, string>`): two lists.
const PAIR_SIZE: usize = 4 * P;

std::thread_local! {
    /// The last call's verdicts, whose lines and labels the returned list
    /// points into, until the post-return drops them.
    static IN_FLIGHT: Cell<Vec<LogVerdict>> = const { Cell::new(Vec::new()) };
}

/// Where the returned list's pointer and length are written.
static mut RET_AREA: [usize; 2] = [0; 2];

/// `on-log(records)`: the plugin's `on_log` for each record, in order.
///
/// # Safety
/// `records` and `count` are the canonical-ABI list the host lowered into
/// this instance: `count` records, each string and list allocated by
/// `cabi_realloc` and owned by this call.
pub unsafe fn on_log<T: Plugin>(slot: &OnceCell<T>, records: *mut u8, count: usize) -> *mut u8 {
    #[cfg(target_arch = "wasm32")]
    wit_bindgen::rt::run_ctors_once();
    let fields = crate::plugin::dispatch::log_fields();
    let plugin = crate::plugin::dispatch::configured(slot);
    let list = alloc_block(count * VERDICT_SIZE, P);
    let mut verdicts = Vec::with_capacity(count);
    // One record, refilled for each of the batch: only what changes from
    // one to the next is written.
    let mut rec = blank_record(fields);
    for i in 0..count {
        // SAFETY: record `i` of the list, owned by this call; slot `i` of
        // the block just allocated for `count` verdicts.
        unsafe {
            lift_into(&mut rec, records.add(i * RECORD_SIZE), fields);
            let verdict = plugin.on_log(&rec);
            lower_verdict(list.add(i * VERDICT_SIZE), &verdict);
            verdicts.push(verdict);
        }
    }
    drop(rec);
    // SAFETY: the list's block, allocated by the host for `count` records.
    unsafe { dealloc(records, count * RECORD_SIZE, RECORD_ALIGN) };
    IN_FLIGHT.set(verdicts);
    let ret = (&raw mut RET_AREA).cast::<usize>();
    // SAFETY: the return area is two words, written only here, and the
    // instance is single-threaded.
    unsafe {
        ret.write(list as usize);
        ret.add(1).write(count);
    }
    ret.cast()
}

/// The post-return of `on-log`: frees the returned list and the labels'
/// lists, then the verdicts themselves.
///
/// # Safety
/// `ret` is what [`on_log`] returned, and this runs once after it.
pub unsafe fn post_return(ret: *mut u8) {
    // SAFETY: `on_log`'s return area: the list's pointer and length.
    unsafe {
        let list = read::<*mut u8>(ret, 0);
        let count = read::<usize>(ret, P);
        for i in 0..count {
            let verdict = list.add(i * VERDICT_SIZE);
            if read::<u8>(verdict, 0) == 1 {
                let labels = read::<usize>(verdict, 4 * P);
                dealloc(read(verdict, 3 * P), labels * PAIR_SIZE, P);
            }
        }
        dealloc(list, count * VERDICT_SIZE, P);
    }
    drop(IN_FLIGHT.take());
}

/// Writes `verdict` at `at` (its lines stay owned by the verdict).
///
/// # Safety
/// `at` is `VERDICT_SIZE` writable bytes, aligned for a pointer.
unsafe fn lower_verdict(at: *mut u8, verdict: &LogVerdict) {
    // SAFETY: within the slot (the caller's guarantee).
    unsafe {
        match verdict {
            LogVerdict::Keep => write::<u8>(at, 0, 0),
            LogVerdict::Drop => write::<u8>(at, 0, 2),
            LogVerdict::Shape(line) => {
                write::<u8>(at, 0, 1);
                write(at, P, line.line.as_ptr());
                write(at, 2 * P, line.line.len());
                let labels = alloc_block(line.labels.len() * PAIR_SIZE, P);
                for (i, (name, value)) in line.labels.iter().enumerate() {
                    let pair = labels.add(i * PAIR_SIZE);
                    write(pair, 0, name.as_ptr());
                    write(pair, P, name.len());
                    write(pair, 2 * P, value.as_ptr());
                    write(pair, 3 * P, value.len());
                }
                write(at, 3 * P, labels);
                write(at, 4 * P, line.labels.len());
            }
        }
    }
}

/// A record with every field empty, and those the plugin did not ask for
/// marked so, for [`lift_into`] to refill per record.
fn blank_record(fields: LogFieldSet) -> LogRecord {
    let asked = |flag| fields.contains(flag);
    LogRecord {
        host: field(None, asked(LogFieldSet::HOST), "LogFieldSet::HOST"),
        uri: field(None, asked(LogFieldSet::URI), "LogFieldSet::URI"),
        upstream_addr: optional(
            None,
            asked(LogFieldSet::UPSTREAM_ADDR),
            "LogFieldSet::UPSTREAM_ADDR",
        ),
        route: field(None, asked(LogFieldSet::ROUTE), "LogFieldSet::ROUTE"),
        request_id: field(
            None,
            asked(LogFieldSet::REQUEST_ID),
            "LogFieldSet::REQUEST_ID",
        ),
        user_agent: field(
            None,
            asked(LogFieldSet::USER_AGENT),
            "LogFieldSet::USER_AGENT",
        ),
        referer: field(None, asked(LogFieldSet::REFERER), "LogFieldSet::REFERER"),
        http_host: field(
            None,
            asked(LogFieldSet::HTTP_HOST),
            "LogFieldSet::HTTP_HOST",
        ),
        vars: field(None, asked(LogFieldSet::VARS), "LogFieldSet::VARS"),
        path: field(None, asked(LogFieldSet::PATH), "LogFieldSet::PATH"),
        ..LogRecord::default()
    }
}

/// Refills `rec` (from [`blank_record`] for `fields`) with the record at
/// `base`: what a plugin that asked for `fields` reads, as
/// [`LogRecord::from_wit`] of wit-bindgen's lifting builds it. The previous
/// record's strings are freed as they are replaced; the fields the plugin
/// did not ask for keep their mark (the host sends them empty; anything
/// it sent is freed).
///
/// # Safety
/// `base` is one canonical-ABI `log-record` owned by the caller; its
/// strings and lists move into `rec`.
#[inline(always)]
unsafe fn lift_into(rec: &mut LogRecord, base: *const u8, fields: LogFieldSet) {
    // SAFETY: the fields of the record (the caller's guarantee).
    unsafe {
        rec.time_unix_ms = read(base, 0);
        rec.client_ip = ip(base, 8);
        rec.peer_ip = ip(base, 32);
        rec.peer_port = read(base, 56);
        rec.method = method(base, 56 + P);
        rec.scheme = Scheme::_lift(read(base, 56 + 4 * P));
        rec.protocol = Protocol::_lift(read(base, 57 + 4 * P));
        rec.status = read(base, 58 + 4 * P);
        rec.bytes_sent = read(base, 64 + 4 * P);
        rec.bytes_received = read(base, 72 + 4 * P);
        rec.request_time = read(base, 80 + 4 * P);
        rec.upstream_response_time = match read::<u8>(base, 88 + 4 * P) {
            0 => None,
            _ => Some(read(base, 96 + 4 * P)),
        };
        rec.cache_status = match read::<u8>(base, 104 + 4 * P) {
            0 => None,
            _ => Some(CacheStatus::_lift(read(base, 105 + 4 * P))),
        };
        let asked = |flag| fields.contains(flag);
        let text_field = |field: &mut Field<String>, at, flag| {
            let value = text(base, at);
            if asked(flag) {
                field.set(value.unwrap_or_default());
            }
        };
        text_field(&mut rec.host, 104 + 5 * P, LogFieldSet::HOST);
        text_field(&mut rec.uri, 104 + 8 * P, LogFieldSet::URI);
        let upstream_addr = text(base, 104 + 11 * P);
        if asked(LogFieldSet::UPSTREAM_ADDR) {
            rec.upstream_addr.set(upstream_addr);
        }
        text_field(&mut rec.route, 104 + 14 * P, LogFieldSet::ROUTE);
        text_field(&mut rec.request_id, 104 + 17 * P, LogFieldSet::REQUEST_ID);
        text_field(&mut rec.user_agent, 104 + 20 * P, LogFieldSet::USER_AGENT);
        text_field(&mut rec.referer, 104 + 23 * P, LogFieldSet::REFERER);
        text_field(&mut rec.http_host, 104 + 26 * P, LogFieldSet::HTTP_HOST);
        rec.request_headers = pairs(base, 104 + 29 * P, header).unwrap_or_default();
        rec.response_headers = pairs(base, 104 + 32 * P, header).unwrap_or_default();
        let vars = pairs(base, 104 + 35 * P, var);
        if asked(LogFieldSet::VARS) {
            rec.vars.set(vars.unwrap_or_default());
        }
        text_field(&mut rec.path, 104 + 38 * P, LogFieldSet::PATH);
    }
}

/// An `ip-address` (tag, then the address at +8).
unsafe fn ip(base: *const u8, at: usize) -> IpAddr {
    // SAFETY: within the record (the caller's guarantee).
    unsafe {
        match read::<u8>(base, at) {
            0 => IpAddr::from(read::<u32>(base, at + 8).to_be_bytes()),
            _ => {
                let high = u128::from(read::<u64>(base, at + 8));
                let low = u128::from(read::<u64>(base, at + 16));
                IpAddr::from(((high << 64) | low).to_be_bytes())
            }
        }
    }
}

/// A `method` (tag, then `other`'s name at +P).
unsafe fn method(base: *const u8, at: usize) -> Method {
    // SAFETY: within the record (the caller's guarantee).
    unsafe {
        match read::<u8>(base, at) {
            0 => Method::Get,
            1 => Method::Head,
            2 => Method::Post,
            3 => Method::Put,
            4 => Method::Delete,
            5 => Method::Connect,
            6 => Method::Options,
            7 => Method::Trace,
            8 => Method::Patch,
            _ => Method::Other(string(base, at + P)),
        }
    }
}

/// An `option<string>` (tag, then the string at +P).
unsafe fn text(base: *const u8, at: usize) -> Option<String> {
    // SAFETY: within the record (the caller's guarantee).
    unsafe {
        match read::<u8>(base, at) {
            0 => None,
            _ => Some(string(base, at + P)),
        }
    }
}

/// A string (pointer, length), taken over.
unsafe fn string(base: *const u8, at: usize) -> String {
    // SAFETY: a string the host allocated with `cabi_realloc` for exactly
    // its length, valid UTF-8 (checked by the host's lowering).
    unsafe { String::from_utf8_unchecked(bytes(base, at)) }
}

/// A `list<u8>` (pointer, length), taken over.
unsafe fn bytes(base: *const u8, at: usize) -> Vec<u8> {
    // SAFETY: as `string`.
    unsafe {
        let len = read::<usize>(base, at + P);
        Vec::from_raw_parts(read(base, at), len, len)
    }
}

/// An `option<list<..>>` of two-list elements (headers, vars), taken over.
#[inline(always)]
unsafe fn pairs<T>(base: *const u8, at: usize, pair: unsafe fn(*const u8) -> T) -> Option<Vec<T>> {
    // SAFETY: within the record (the caller's guarantee); the list block
    // holds `len` elements and is freed once they are read.
    unsafe {
        if read::<u8>(base, at) == 0 {
            return None;
        }
        let list = read::<*mut u8>(base, at + P);
        let len = read::<usize>(base, at + 2 * P);
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            out.push(pair(list.add(i * PAIR_SIZE)));
        }
        dealloc(list, len * PAIR_SIZE, P);
        Some(out)
    }
}

unsafe fn header(at: *const u8) -> Header {
    // SAFETY: one `header` (the caller's guarantee).
    unsafe {
        Header {
            name: string(at, 0),
            value: bytes(at, 2 * P),
        }
    }
}

unsafe fn var(at: *const u8) -> Var {
    // SAFETY: one `var` (the caller's guarantee).
    unsafe {
        Var {
            name: string(at, 0),
            value: string(at, 2 * P),
        }
    }
}

#[inline(always)]
unsafe fn read<T: Copy>(base: *const u8, at: usize) -> T {
    // SAFETY: the caller's guarantee: an aligned `T` at `base + at`.
    unsafe { base.add(at).cast::<T>().read() }
}

#[inline(always)]
unsafe fn write<T>(base: *mut u8, at: usize, value: T) {
    // SAFETY: the caller's guarantee: room for an aligned `T` there.
    unsafe { base.add(at).cast::<T>().write(value) }
}

/// A block for a list of `size` bytes (a dangling, aligned pointer when
/// empty, as the canonical ABI allows).
fn alloc_block(size: usize, align: usize) -> *mut u8 {
    if size == 0 {
        return align as *mut u8;
    }
    let Ok(layout) = Layout::from_size_align(size, align) else {
        panic!("on-log: {size} bytes of verdicts");
    };
    // SAFETY: `layout` has a non-zero size.
    let block = unsafe { alloc::alloc(layout) };
    if block.is_null() {
        alloc::handle_alloc_error(layout);
    }
    block
}

/// Frees a list block (nothing for an empty list).
unsafe fn dealloc(block: *mut u8, size: usize, align: usize) {
    if size == 0 {
        return;
    }
    // SAFETY: `block` was allocated with this size and alignment.
    unsafe { alloc::dealloc(block, Layout::from_size_align_unchecked(size, align)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string as the host lowers it: a block of exactly its length.
    fn lowered(text: &str) -> (*mut u8, usize) {
        let bytes = text.as_bytes().to_vec().into_boxed_slice();
        let len = bytes.len();
        (Box::into_raw(bytes).cast::<u8>(), len)
    }

    /// One canonical-ABI record: GET from 203.0.113.7 (peer ::1), with
    /// `uri` and `user-agent` set, `http-host` as given.
    fn record(uri: &str, http_host: Option<&str>) -> Vec<u64> {
        let mut words = vec![0u64; RECORD_SIZE / 8];
        let base = words.as_mut_ptr().cast::<u8>();
        unsafe {
            write(base, 0, 1_735_787_045_678u64);
            write(base, 8 + 8, 0xCB00_7107u32);
            write::<u8>(base, 32, 1);
            write(base, 32 + 16, 1u64);
            write(base, 56, 40_000u16);
            write::<u8>(base, 57 + 4 * P, 2);
            write(base, 58 + 4 * P, 404u16);
            write(base, 64 + 4 * P, 1024u64);
            write::<u8>(base, 104 + 4 * P, 1);
            write::<u8>(base, 105 + 4 * P, 6);
            for (at, text) in [
                (104 + 8 * P, Some(uri)),
                (104 + 20 * P, Some("curl")),
                (104 + 26 * P, http_host),
                (104 + 38 * P, Some(uri)),
            ] {
                if let Some(text) = text {
                    let (ptr, len) = lowered(text);
                    write::<u8>(base, at, 1);
                    write(base, at + P, ptr);
                    write(base, at + 2 * P, len);
                }
            }
        }
        words
    }

    #[test]
    fn records_refill_one_in_place_and_fields_not_asked_stay_marked() {
        let fields = LogFieldSet::URI | LogFieldSet::HTTP_HOST | LogFieldSet::PATH;
        let mut rec = blank_record(fields);
        let mut first = record("/a", Some("example.com:8080"));
        unsafe { lift_into(&mut rec, first.as_mut_ptr().cast(), fields) };
        assert_eq!(rec.time_unix_ms, 1_735_787_045_678);
        assert_eq!(rec.client_ip.to_string(), "203.0.113.7");
        assert_eq!(rec.peer_ip.to_string(), "::1");
        assert_eq!(
            (rec.peer_port, rec.status, rec.bytes_sent),
            (40_000, 404, 1024)
        );
        assert_eq!(
            (rec.method.clone(), rec.protocol),
            (Method::Get, Protocol::Http2)
        );
        assert_eq!(rec.cache_status, Some(CacheStatus::Hit));
        assert_eq!(
            (rec.uri.as_str(), rec.http_host.as_str()),
            ("/a", "example.com:8080")
        );
        assert!(!rec.user_agent.is_asked() && !rec.host.is_asked());
        assert_eq!(rec.path.as_str(), "/a", "the last field of the record");
        let mut second = record("/b", None);
        unsafe { lift_into(&mut rec, second.as_mut_ptr().cast(), fields) };
        assert_eq!((rec.uri.as_str(), rec.http_host.as_str()), ("/b", ""));
        assert!(!rec.user_agent.is_asked());
    }
}
