//! Numbers written into a line in `on-log`: decimals, zero-padded fields of
//! a timestamp, and seconds to the millisecond. Written by hand because
//! `core::fmt` cost ~10,000 instructions per line in the wasm guest, over a
//! quarter of the whole hook (docs/performance-passes.md): two digits at a
//! time from a table, straight into the line.

/// "00" to "99", two bytes each.
const PAIRS: &str = "\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The two digits of `n % 100`, as text.
#[inline(always)]
pub fn pair(n: u32) -> &'static str {
    let at = (n % 100) as usize * 2;
    &PAIRS[at..at + 2]
}

/// The digit `n % 10`.
#[inline(always)]
fn digit(n: u32) -> char {
    char::from(b'0' + (n % 10) as u8)
}

/// `n % 100` as two digits.
#[inline(always)]
pub fn push2(out: &mut String, n: u32) {
    out.push_str(pair(n));
}

/// `n % 1000` as three digits.
#[inline(always)]
pub fn push3(out: &mut String, n: u32) {
    let n = n % 1000;
    out.push(digit(n / 100));
    out.push_str(pair(n));
}

/// `n % 10_000` as four digits.
#[inline(always)]
pub fn push4(out: &mut String, n: u32) {
    let n = n % 10_000;
    out.push_str(pair(n / 100));
    out.push_str(pair(n));
}

/// `n` in decimal, left-padded with zeros to at least `width` digits
/// (`width` <= 4).
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    match width {
        4 if n < 10_000 => push4(out, n as u32),
        3 if n < 1000 => push3(out, n as u32),
        2 if n < 100 => push2(out, n as u32),
        _ => {
            for _ in decimal_len(n)..width {
                out.push('0');
            }
            push_decimal(out, n);
        }
    }
}

/// How many digits `n` has in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// `n` in decimal: no leading zeros, up to four digits at a time.
#[inline(always)]
pub fn push_decimal(out: &mut String, n: u64) {
    if n < 10_000 {
        push_short(out, n as u32);
    } else {
        push_long(out, n);
    }
}

/// `n` < 10,000 in decimal.
#[inline(always)]
fn push_short(out: &mut String, n: u32) {
    if n < 10 {
        out.push(digit(n));
    } else if n < 100 {
        push2(out, n);
    } else if n < 1000 {
        push3(out, n);
    } else {
        push4(out, n);
    }
}

/// `n` >= 10,000 in decimal.
fn push_long(out: &mut String, n: u64) {
    if n < 100_000_000 {
        push_short(out, (n / 10_000) as u32);
    } else {
        push_decimal(out, n / 100_000_000);
        push4(out, (n / 10_000 % 10_000) as u32);
    }
    push4(out, (n % 10_000) as u32);
}

/// Milliseconds as seconds with three decimals: `12345` -> `12.345`.
#[inline(always)]
pub fn push_millis_as_seconds(out: &mut String, ms: u64) {
    push_decimal(out, ms / 1000);
    out.push('.');
    push3(out, (ms % 1000) as u32);
}

/// Seconds rounded to the millisecond like nginx's `$request_time`;
/// negative values give 0. `secs` is finite. The same as
/// `(secs.max(0.0) * 1000.0).round() as u64`, without the call to `round`
/// (wasm has no round-half-away-from-zero instruction).
#[inline(always)]
pub fn seconds_to_millis(secs: f64) -> u64 {
    // `max(0.0)` without its call (wasm's `f64.max` differs on NaN, and
    // `secs` is finite); a negative zero gives 0 either way.
    let ms = if secs > 0.0 { secs } else { 0.0 } * 1000.0;
    let whole = ms.trunc();
    // `ms - whole` is exact; ties go up, as `round` does for positives.
    let rounded = if ms - whole >= 0.5 {
        whole + 1.0
    } else {
        whole
    };
    // `as` saturates: absurdly large values print as u64::MAX ms.
    rounded as u64
}

/// Seconds with three decimals like nginx's `$request_time`, rounded to
/// the millisecond; negative values print as `0.000`. `secs` is finite.
#[inline(always)]
pub fn push_seconds(out: &mut String, secs: f64) {
    push_millis_as_seconds(out, seconds_to_millis(secs));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        write(&mut out);
        out
    }

    #[test]
    fn decimals_match_display() {
        let mut samples = vec![0, 7, 9, 10, 11, 99, 100, 101, 999, 1000, 12_345];
        samples.extend([u64::from(u32::MAX), u64::MAX, u64::MAX - 1]);
        for p in 1..20 {
            samples.extend([10u64.pow(p) - 1, 10u64.pow(p), 10u64.pow(p) + 1]);
        }
        for n in samples {
            assert_eq!(text(|out| push_decimal(out, n)), n.to_string());
            assert_eq!(text(|out| push_padded(out, n, 4)), format!("{n:04}"));
            assert_eq!(text(|out| push_padded(out, n, 2)), format!("{n:02}"));
            assert_eq!(text(|out| push_padded(out, n, 3)), format!("{n:03}"));
        }
        for n in 0..100_000 {
            assert_eq!(text(|out| push_decimal(out, n)), n.to_string());
            assert_eq!(pair(n as u32), format!("{:02}", n % 100));
            assert_eq!(text(|out| push2(out, n as u32)), format!("{:02}", n % 100));
            assert_eq!(text(|out| push3(out, n as u32)), format!("{:03}", n % 1000));
            assert_eq!(
                text(|out| push4(out, n as u32)),
                format!("{:04}", n % 10_000)
            );
        }
    }

    #[test]
    fn seconds_keep_three_decimals() {
        assert_eq!(
            text(|out| push_millis_as_seconds(out, 1_735_787_045_008)),
            "1735787045.008"
        );
        assert_eq!(text(|out| push_millis_as_seconds(out, 5)), "0.005");
        assert_eq!(
            text(|out| push_millis_as_seconds(out, u64::MAX)),
            "18446744073709551.615"
        );
        for (secs, expected) in [
            (0.0, "0.000"),
            (-0.0, "0.000"),
            (0.0125, "0.013"),
            (0.0005, "0.001"),
            (0.0004999, "0.000"),
            (0.9995, "1.000"),
            (12.3456, "12.346"),
            (-1.0, "0.000"),
            (1e300, "18446744073709551.615"),
        ] {
            assert_eq!(text(|out| push_seconds(out, secs)), expected, "{secs}");
        }
    }

    #[test]
    fn rounding_matches_f64_round() {
        let old = |secs: f64| (secs.max(0.0) * 1000.0).round() as u64;
        let mut samples = vec![
            0.0,
            -0.0,
            0.000_412,
            0.000_301,
            0.499_999_999_999_999_94 / 1000.0,
            4_503_599_627_370_495.5 / 1000.0,
            9_007_199_254_740_993.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            -5.0,
        ];
        // Every half millisecond and its neighbours up to 20 s.
        for half in 0..40_000u32 {
            let x = f64::from(half) * 0.0005;
            samples.extend([x, x.next_up(), x.next_down()]);
        }
        // A spread of magnitudes.
        let mut x: f64 = 1e-9;
        while x < 1e20 {
            samples.extend([x, x * 1.000_123_4, x.next_up()]);
            x *= 1.7;
        }
        for secs in samples {
            assert_eq!(seconds_to_millis(secs), old(secs), "{secs:e}");
        }
    }
}
