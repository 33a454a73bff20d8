//! Durations and sizes written the way `config.toml` writes them
//! (docs/config.md), so a plugin's config reads like the proxy's own:
//!
//! - a **duration** is a whole number and one unit, `ms`, `s`, `m` or `h`
//!   (`"50ms"`, `"5s"`, `"10m"`, `"1h"`); zero is not allowed, and
//!   `"1.5s"`, `"5 s"`, `"1h30m"` and `"1d"` are errors;
//! - a **size** is a whole number of bytes (a TOML integer, or a string of
//!   digits) or a string with one unit, `B`, `KB`, `MB`, `GB` (powers of
//!   1000) or `KiB`, `MiB`, `GiB` (powers of 1024): `"16MiB"`, `"4KiB"`,
//!   `"100MB"`, `1048576`. nginx's `"1m"` is an error: write `"1MiB"`.
//!
//! The errors are the proxy's, so [`Config::parse`](crate::Config::parse)
//! reports e.g. `window: invalid duration "1.5s": expected a whole number
//! and a unit ms, s, m or h (e.g. "50ms", "5s", "1m")`.
//!
//! ```
//! use tailgate_plugin_sdk::config::{Duration, Size};
//!
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     window: Duration,
//!     max_body: Size,
//! }
//!
//! let config = tailgate_plugin_sdk::Config::new(r#"{"window": "10m", "max_body": "16MiB"}"#);
//! let settings: Settings = config.parse().expect("valid");
//! assert_eq!(settings.window.as_millis(), 600_000);
//! assert_eq!(settings.max_body.bytes(), 16 << 20);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

const DURATION_FORM: &str =
    "expected a whole number and a unit ms, s, m or h (e.g. \"50ms\", \"5s\", \"1m\")";
const SIZE_FORM: &str = "expected a whole number of bytes, or a whole number and a unit B, KB, MB, GB, KiB, MiB or GiB (e.g. \"16MiB\", \"100MB\")";

/// `"50ms"`, `"5s"`, `"10m"`, `"1h"`: a whole number and one unit; not zero.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = |reason: &str| format!("invalid duration \"{text}\": {reason}");
    let (number, unit) = split_number(text).ok_or_else(|| bad(DURATION_FORM))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad(DURATION_FORM)),
    };
    let millis = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .ok_or_else(|| bad("number too large"))?;
    if millis == 0 {
        return Err(bad("must be greater than zero"));
    }
    Ok(std::time::Duration::from_millis(millis))
}

/// `"16MiB"`, `"4KiB"`, `"100MB"`, `"512B"`, `"1024"`: bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = |reason: &str| format!("invalid size \"{text}\": {reason}");
    let (number, unit) = split_number(text).ok_or_else(|| bad(SIZE_FORM))?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad(SIZE_FORM)),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| bad("number too large"))
}

/// Splits `"16MiB"` into `("16", "MiB")`; `None` unless it starts with digits.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0).then(|| text.split_at(digits))
}

/// A config duration (`"10m"`), for a settings field; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// As `std`'s.
    pub fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole milliseconds (what the [`host`](crate::host) calls take).
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(duration: Duration) -> Self {
        duration.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Duration)
    }
}

impl fmt::Display for Duration {
    /// In the largest unit that divides it: `"90s"`, `"10m"`, `"1500ms"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        let (n, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
            .into_iter()
            .find(|(per, _)| ms.is_multiple_of(*per))
            .map_or((ms, "ms"), |(per, unit)| (ms / per, unit));
        write!(f, "{n}{unit}")
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"50ms\", \"5s\", \"10m\" or \"1h\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: {DURATION_FORM}; a bare number has no unit"
                )))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
                Err(E::custom(format!("invalid duration {n}: {DURATION_FORM}")))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// A config size (`"16MiB"`, or bytes as an integer), for a settings
/// field; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl From<Size> for u64 {
    fn from(size: Size) -> u64 {
        size.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_size(text).map(Size)
    }
}

impl fmt::Display for Size {
    /// In the largest binary unit that divides it: `"16MiB"`, `"1000B"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
            .into_iter()
            .find(|(per, _)| self.0 != 0 && self.0.is_multiple_of(*per))
            .map_or((self.0, "B"), |(per, unit)| (self.0 / per, unit));
        write!(f, "{n}{unit}")
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Size;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"16MiB\", \"100MB\" or a number of bytes")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Size, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size {n}: {SIZE_FORM}")))
            }
        }
        deserializer.deserialize_any(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn ms(text: &str) -> Result<u64, String> {
        parse_duration(text).map(|d| d.as_millis() as u64)
    }

    #[test]
    fn durations_are_a_whole_number_and_one_unit() {
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("50ms"), Ok(50));
        assert_eq!(ms("5s"), Ok(5_000));
        assert_eq!(ms("10m"), Ok(600_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("90m"), Ok(5_400_000));
    }

    #[test]
    fn other_durations_are_refused_as_the_proxy_refuses_them() {
        for bad in [
            "1.5s", "5 s", "1d", "1h30m", "", "s", "10", "-5s", " 5s", "5S", "1m ",
        ] {
            let err = ms(bad).expect_err(bad);
            assert_eq!(
                err,
                format!(
                    "invalid duration \"{bad}\": expected a whole number and a unit ms, s, m \
                     or h (e.g. \"50ms\", \"5s\", \"1m\")"
                )
            );
        }
        assert_eq!(
            ms("0s"),
            Err("invalid duration \"0s\": must be greater than zero".to_owned())
        );
        assert_eq!(
            ms("99999999999999999999h"),
            Err("invalid duration \"99999999999999999999h\": number too large".to_owned())
        );
        assert_eq!(
            ms("6000000000000000h"),
            Err("invalid duration \"6000000000000000h\": number too large".to_owned())
        );
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("2KB"), Ok(2_000));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn other_sizes_are_refused_as_the_proxy_refuses_them() {
        for bad in ["1m", "1 MiB", "1.5MiB", "MiB", "", "16mib", "1MiB2", "-1"] {
            assert_eq!(
                parse_size(bad),
                Err(format!(
                    "invalid size \"{bad}\": expected a whole number of bytes, or a whole number \
                     and a unit B, KB, MB, GB, KiB, MiB or GiB (e.g. \"16MiB\", \"100MB\")"
                )),
                "{bad}"
            );
        }
        assert_eq!(
            parse_size("99999999999GiB"),
            Err("invalid size \"99999999999GiB\": number too large".to_owned())
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        window: Duration,
        #[serde(default)]
        max_body: Size,
    }

    fn settings(json: &str) -> Result<Settings, String> {
        Config::new(json).parse().map_err(String::from)
    }

    #[test]
    fn settings_fields_parse_and_errors_name_the_key() {
        let parsed = settings(r#"{"window": "10m", "max_body": "16MiB"}"#).expect("valid");
        assert_eq!(parsed.window.as_millis(), 600_000);
        assert_eq!(
            std::time::Duration::from(parsed.window),
            std::time::Duration::from_secs(600)
        );
        assert_eq!(parsed.max_body.bytes(), 16 << 20);
        let bytes = settings(r#"{"window": "500ms", "max_body": 1048576}"#).expect("valid");
        assert_eq!(u64::from(bytes.max_body), 1 << 20);
        assert_eq!(
            settings(r#"{"window": "1.5s"}"#).expect_err("refused"),
            "window: invalid duration \"1.5s\": expected a whole number and a unit ms, s, m or h \
             (e.g. \"50ms\", \"5s\", \"1m\")"
        );
        assert!(settings(r#"{"window": 10}"#)
            .expect_err("refused")
            .starts_with("window: invalid duration 10: "));
        assert!(settings(r#"{"window": "1s", "max_body": "1m"}"#)
            .expect_err("refused")
            .starts_with("max_body: invalid size \"1m\": "));
        assert!(settings(r#"{"window": "1s", "max_body": -1}"#)
            .expect_err("refused")
            .starts_with("max_body: invalid size -1: "));
    }

    #[test]
    fn values_print_in_the_largest_unit() {
        let d = |text: &str| text.parse::<Duration>().expect(text).to_string();
        assert_eq!(d("90m"), "90m");
        assert_eq!(d("120m"), "2h");
        assert_eq!(d("1500ms"), "1500ms");
        assert_eq!(d("60s"), "1m");
        let s = |text: &str| text.parse::<Size>().expect(text).to_string();
        assert_eq!(s("16384KiB"), "16MiB");
        assert_eq!(s("1000"), "1000B");
        assert_eq!(s("0"), "0B");
        assert_eq!(s("1GiB"), "1GiB");
    }
}
