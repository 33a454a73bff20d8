//! Ban durations as the operator writes them: the SDK's config durations
//! (`"500ms"`, `"30s"`, `"10m"`, `"1h"`, [`parse_duration`]) plus days and
//! weeks (`"1d"`, `"1w"`), which fail2ban's `bantime` / `maxtime` use and
//! the SDK's form (the proxy's own config durations) does not have.

use tailgate_plugin_sdk::config::parse_duration;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Milliseconds of `text`: `"500ms"`, `"30s"`, `"10m"`, `"1h"`, `"1d"`,
/// `"1w"`; a whole number and one unit, not zero.
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let per_unit = match text.as_bytes().last() {
        Some(b'd') => DAY_MS,
        Some(b'w') => 7 * DAY_MS,
        _ => {
            return parse_duration(text)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|err| format!("{err}, or days \"1d\" or weeks \"1w\""));
        }
    };
    let number = &text[..text.len() - 1];
    let bad = |reason: &str| format!("invalid duration \"{text}\": {reason}");
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "expected a whole number and a unit ms, s, m, h, d or w (e.g. \"10m\", \"1h\", \"1w\")",
        ));
    }
    let ms = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| bad("number too large"))?;
    if ms == 0 {
        return Err(bad("must be greater than zero"));
    }
    Ok(ms)
}

/// `ms` in the largest unit that divides it, as the config writes it.
pub fn display(ms: u64) -> String {
    let (n, unit) = [
        (7 * DAY_MS, "w"),
        (DAY_MS, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ]
    .into_iter()
    .find(|(per, _)| ms != 0 && ms.is_multiple_of(*per))
    .map_or((ms, "ms"), |(per, unit)| (ms / per, unit));
    format!("{n}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_from_milliseconds_to_weeks() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("2d", 2 * DAY_MS),
            ("1w", 7 * DAY_MS),
        ] {
            assert_eq!(parse_ms(text), Ok(ms), "{text}");
            assert_eq!(display(ms), text);
        }
        assert_eq!(display(90_000), "90s");
        assert_eq!(display(1_500), "1500ms");
    }

    #[test]
    fn malformed_durations_say_how_to_write_one() {
        for text in ["1.5h", "w", "-1d", "1 w", "", "10", "1y"] {
            let err = parse_ms(text).expect_err(text);
            assert!(
                err.starts_with(&format!("invalid duration \"{text}\"")),
                "{err}"
            );
            assert!(err.contains("\"1w\""), "{err}");
        }
        assert!(parse_ms("0w")
            .expect_err("zero")
            .contains("greater than zero"));
        assert!(parse_ms("99999999999999999999w")
            .expect_err("huge")
            .contains("too large"));
    }
}
