//! Numbers written into a line in `on-log`: decimals, zero-padded fields of
//! a timestamp, and seconds to the millisecond. Written by hand because
//! `core::fmt` cost ~10,000 instructions per line in the wasm guest, over a
//! quarter of the whole hook (docs/performance-passes.md).

/// `n` in decimal, left-padded with zeros to at least `width` digits.
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = at.min(digits.len().saturating_sub(width));
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// `n` in decimal.
pub fn push_decimal(out: &mut String, n: u64) {
    push_padded(out, n, 1);
}

/// Milliseconds as seconds with three decimals: `12345` -> `12.345`.
pub fn push_millis_as_seconds(out: &mut String, ms: u64) {
    push_decimal(out, ms / 1000);
    out.push('.');
    push_padded(out, ms % 1000, 3);
}

/// Seconds with three decimals like nginx's `$request_time`, rounded to
/// the millisecond; negative values print as `0.000`. `secs` is finite.
pub fn push_seconds(out: &mut String, secs: f64) {
    // `as` saturates: absurdly large values print as u64::MAX ms.
    push_millis_as_seconds(out, (secs.max(0.0) * 1000.0).round() as u64);
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
        for n in [0, 7, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(text(|out| push_decimal(out, n)), n.to_string());
            assert_eq!(text(|out| push_padded(out, n, 4)), format!("{n:04}"));
        }
    }

    #[test]
    fn seconds_keep_three_decimals() {
        assert_eq!(
            text(|out| push_millis_as_seconds(out, 1_735_787_045_008)),
            "1735787045.008"
        );
        assert_eq!(text(|out| push_millis_as_seconds(out, 5)), "0.005");
        for (secs, expected) in [
            (0.0, "0.000"),
            (0.0125, "0.013"),
            (12.3456, "12.346"),
            (-1.0, "0.000"),
        ] {
            assert_eq!(text(|out| push_seconds(out, secs)), expected, "{secs}");
        }
    }
}
