//! nginx's time formats, from the log record's Unix milliseconds (UTC, as
//! nginx prints them on a host whose zone is UTC, like Fly.io machines):
//! `$time_iso8601` and `$time_local` (`$msec` is a plain decimal). Used when a line is rendered
//! in `on-log`.

use std::cell::RefCell;

use crate::decimal::{push2, push3, push_padded};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    fn from_unix_secs(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rem = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// `03:04:05`.
    fn push_clock(&self, out: &mut String) {
        push2(out, self.hour);
        out.push(':');
        push2(out, self.minute);
        out.push(':');
        push2(out, self.second);
    }

    /// `2025-01-02T03:04:05`.
    fn push_date_time(&self, out: &mut String) {
        push_padded(out, self.year.unsigned_abs(), 4);
        out.push('-');
        push2(out, self.month);
        out.push('-');
        push2(out, self.day);
        out.push('T');
        self.push_clock(out);
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The last second a line was stamped with, as a calendar time and as
/// `2025-01-02T03:04:05+00:00`: lines come many to a second, and the
/// calendar arithmetic is the dearest part of a timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clock {
    last: RefCell<Option<Second>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Second {
    unix_secs: u64,
    civil: Civil,
    /// `$time_iso8601`.
    iso8601: String,
}

/// What `$time_iso8601` adds to the date and time.
const ISO_ZONE: &str = "+00:00";

impl Clock {
    /// Calls `write` with the second of `unix_ms`, made current first.
    #[inline(always)]
    fn at<R>(&self, unix_ms: u64, write: impl FnOnce(&Second) -> R) -> R {
        let unix_secs = unix_ms / 1000;
        let mut last = self.last.borrow_mut();
        match &mut *last {
            Some(second) if second.unix_secs == unix_secs => write(second),
            slot => write(Clock::turn(slot, unix_secs)),
        }
    }

    /// Makes `unix_secs` the current second.
    #[cold]
    fn turn(slot: &mut Option<Second>, unix_secs: u64) -> &Second {
        let civil = Civil::from_unix_secs(unix_secs);
        // The old text's buffer is reused.
        let mut iso8601 = slot.take().map(|old| old.iso8601).unwrap_or_default();
        iso8601.clear();
        civil.push_date_time(&mut iso8601);
        iso8601.push_str(ISO_ZONE);
        slot.insert(Second {
            unix_secs,
            civil,
            iso8601,
        })
    }

    /// nginx `$time_iso8601`: `2025-01-02T03:04:05+00:00`.
    #[inline(always)]
    pub fn iso8601(&self, unix_ms: u64, out: &mut String) {
        self.at(unix_ms, |second| out.push_str(&second.iso8601));
    }

    /// RFC 3339 with milliseconds, UTC: `2025-01-02T03:04:05.678Z`.
    pub fn rfc3339_millis(&self, unix_ms: u64, out: &mut String) {
        self.at(unix_ms, |second| {
            let date_time = second.iso8601.len() - ISO_ZONE.len();
            out.push_str(second.iso8601.get(..date_time).unwrap_or_default())
        });
        out.push('.');
        push3(out, (unix_ms % 1000) as u32);
        out.push('Z');
    }

    /// nginx `$time_local` (the combined log format's):
    /// `02/Jan/2025:03:04:05 +0000`.
    pub fn local(&self, unix_ms: u64, out: &mut String) {
        let t = self.at(unix_ms, |second| second.civil);
        push2(out, t.day);
        out.push('/');
        out.push_str(MONTHS[(t.month as usize).saturating_sub(1) % 12]);
        out.push('/');
        push_padded(out, t.year.unsigned_abs(), 4);
        out.push(':');
        t.push_clock(out);
        out.push_str(" +0000");
    }
}

/// nginx `$time_iso8601`: `2025-01-02T03:04:05+00:00`.
pub fn iso8601(unix_ms: u64, out: &mut String) {
    Clock::default().iso8601(unix_ms, out);
}

/// RFC 3339 with milliseconds, UTC: `2025-01-02T03:04:05.678Z` (the
/// default line's `time`).
pub fn rfc3339_millis(unix_ms: u64, out: &mut String) {
    Clock::default().rfc3339_millis(unix_ms, out);
}

/// nginx `$time_local` (the combined log format's): `02/Jan/2025:03:04:05 +0000`.
pub fn local(unix_ms: u64, out: &mut String) {
    Clock::default().local(unix_ms, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: fn(u64, &mut String), ms: u64) -> String {
        let mut out = String::new();
        f(ms, &mut out);
        out
    }

    #[test]
    fn iso8601_like_nginx() {
        assert_eq!(render(iso8601, 0), "1970-01-01T00:00:00+00:00");
        // 2025-01-02T03:04:05.678Z
        assert_eq!(
            render(iso8601, 1_735_787_045_678),
            "2025-01-02T03:04:05+00:00"
        );
        // Leap day and the last second of a year.
        assert_eq!(
            render(iso8601, 1_709_208_000_000),
            "2024-02-29T12:00:00+00:00"
        );
        assert_eq!(
            render(iso8601, 1_704_067_199_999),
            "2023-12-31T23:59:59+00:00"
        );
        // 2000-03-01 (a 400-year leap rule) and far future.
        assert_eq!(
            render(iso8601, 951_868_800_000),
            "2000-03-01T00:00:00+00:00"
        );
        assert_eq!(
            render(iso8601, 4_102_444_800_000),
            "2100-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn local_time_like_the_combined_format() {
        assert_eq!(
            render(local, 1_735_787_045_678),
            "02/Jan/2025:03:04:05 +0000"
        );
        assert_eq!(
            render(local, 1_704_067_199_999),
            "31/Dec/2023:23:59:59 +0000"
        );
    }

    #[test]
    fn every_day_of_a_span_follows_the_previous() {
        // Walk 1000 years day by day: each date is the day after the last,
        // and no month runs past its length.
        let days_in = |y: i64, m: u32| match m {
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = civil_from_days(-1);
        assert_eq!(prev, (1969, 12, 31));
        for days in 0..365_250 {
            let next = civil_from_days(days);
            let (py, pm, pd) = prev;
            let expected = if pd < days_in(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {days}");
            prev = next;
        }
    }

    /// The three formats as first written, with `format!`.
    fn formatted(ms: u64) -> [String; 3] {
        let secs = ms / 1000;
        let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let month = MONTHS[mo as usize - 1];
        [
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00"),
            format!("{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000"),
            format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                ms % 1000
            ),
        ]
    }

    #[test]
    fn one_clock_across_seconds_formats_like_format() {
        // One clock for all, in an order that goes back and forth across
        // seconds, days, years and the four-digit year limit.
        let clock = Clock::default();
        let mut times = vec![0, 999, 1000, 0, u64::MAX, u64::MAX - 1000];
        for base in [1_735_787_045_000u64, 951_868_799_000, 253_402_300_799_000] {
            for step in [0, 1, 500, 999, 1000, 1001, 86_399_999, 86_400_000, 0, 999] {
                times.push(base + step);
            }
        }
        times.extend((0..2000).map(|i| 1_700_000_000_000 + i * 7_777_777));
        for ms in times {
            let [iso, local_time, rfc] = formatted(ms);
            let mut out = String::new();
            clock.iso8601(ms, &mut out);
            assert_eq!(out, iso, "{ms}");
            out.clear();
            clock.local(ms, &mut out);
            assert_eq!(out, local_time, "{ms}");
            out.clear();
            clock.rfc3339_millis(ms, &mut out);
            assert_eq!(out, rfc, "{ms}");
            assert_eq!(render(iso8601, ms), iso);
            assert_eq!(render(local, ms), local_time);
            assert_eq!(render(rfc3339_millis, ms), rfc);
        }
    }
}
