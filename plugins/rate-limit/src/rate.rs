//! A limit's `rate` as the operator writes it (`"10r/s"`, `"30r/m"`, nginx
//! `limit_req_zone ... rate=`), parsed at configure time into the
//! milli-requests per second the host's leaky bucket counts in.

use std::fmt;

/// Requests per second, in thousandths: what `rate-limit.rate-milli` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    milli_per_second: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error(
        "`{0}` is not a rate: write requests per second or minute, e.g. \"10r/s\" or \"30r/m\""
    )]
    Syntax(String),
    #[error("`{0}`: the rate must be at least 1 request")]
    Zero(String),
    #[error("`{0}`: at most 1000000 requests per second")]
    TooHigh(String),
}

/// The highest rate accepted: far above what one proxy serves, low enough
/// that the host's millisecond arithmetic cannot overflow.
const MAX_PER_SECOND: u64 = 1_000_000;

impl Rate {
    /// Parse `"<n>r/s"` or `"<n>r/m"`. Like nginx, a per-minute rate is
    /// `n * 1000 / 60` milli-requests per second, truncated (1r/m = 16).
    pub fn parse(text: &str) -> Result<Rate, RateError> {
        let syntax = || RateError::Syntax(text.to_owned());
        let (count, per) = text.trim().split_once("r/").ok_or_else(syntax)?;
        let scale = match per {
            "s" => 1,
            "m" => 60,
            _ => return Err(syntax()),
        };
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let count: u64 = count
            .parse()
            .map_err(|_| RateError::TooHigh(text.to_owned()))?;
        if count == 0 {
            return Err(RateError::Zero(text.to_owned()));
        }
        if count / scale > MAX_PER_SECOND {
            return Err(RateError::TooHigh(text.to_owned()));
        }
        Ok(Rate {
            milli_per_second: count * 1000 / scale,
        })
    }

    pub fn milli_per_second(self) -> u64 {
        self.milli_per_second
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let milli = self.milli_per_second;
        if milli.is_multiple_of(1000) {
            write!(f, "{}r/s", milli / 1000)
        } else {
            write!(f, "{}.{:03}r/s", milli / 1000, milli % 1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(text: &str) -> u64 {
        Rate::parse(text)
            .unwrap_or_else(|err| panic!("{text}: {err}"))
            .milli_per_second()
    }

    #[test]
    fn per_second_and_per_minute_like_nginx() {
        assert_eq!(milli("10r/s"), 10_000);
        assert_eq!(milli("1r/s"), 1_000);
        assert_eq!(milli("30r/m"), 500);
        assert_eq!(milli("60r/m"), 1_000);
        // nginx truncates: 1r/m is 16 milli-requests per second.
        assert_eq!(milli("1r/m"), 16);
        assert_eq!(milli(" 5r/s "), 5_000);
        assert_eq!(milli("1000000r/s"), 1_000_000_000);
    }

    #[test]
    fn malformed_rates_say_how_to_write_one() {
        for text in [
            "10", "10/s", "r/s", "10r/h", "ten r/s", "-1r/s", "1.5r/s", "10 r/s", "",
        ] {
            assert_eq!(
                Rate::parse(text),
                Err(RateError::Syntax(text.to_owned())),
                "{text:?}"
            );
        }
        assert_eq!(
            RateError::Syntax("10".into()).to_string(),
            "`10` is not a rate: write requests per second or minute, e.g. \"10r/s\" or \"30r/m\""
        );
    }

    #[test]
    fn zero_and_absurd_rates_are_refused() {
        assert_eq!(Rate::parse("0r/s"), Err(RateError::Zero("0r/s".into())));
        assert_eq!(Rate::parse("0r/m"), Err(RateError::Zero("0r/m".into())));
        assert!(matches!(
            Rate::parse("1000001r/s"),
            Err(RateError::TooHigh(_))
        ));
        assert!(matches!(
            Rate::parse("99999999999999999999999r/s"),
            Err(RateError::TooHigh(_))
        ));
    }

    #[test]
    fn displays_as_requests_per_second() {
        assert_eq!(Rate::parse("10r/s").expect("rate").to_string(), "10r/s");
        assert_eq!(Rate::parse("30r/m").expect("rate").to_string(), "0.500r/s");
    }
}
