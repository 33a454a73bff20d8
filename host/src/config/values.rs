//! Strict parsers for the scalar values of `config.toml`: durations, sizes,
//! identifiers, host patterns, CIDRs and error-page file types. Used while
//! loading the config; each returns the `ConfigErrorKind` to report, and the
//! caller attaches the place in the file.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::error::ConfigErrorKind;
use super::model::HostPattern;

/// Upper bound of `server.workers`.
pub const MAX_WORKERS: usize = 1024;
/// Upper bound of `plugin_runtime.max_instances`.
pub const MAX_INSTANCES: u32 = 100_000;
/// Bounds of a plugin instance's memory cap: one wasm page to the runtime's
/// ceiling (the address space reserved per instance).
pub const MIN_MEMORY_LIMIT: u64 = 64 * 1024;
pub const MAX_MEMORY_LIMIT: u64 = tailgate_runtime::MAX_MEMORY_BYTES as u64;

const DURATION_FORM: &str =
    "expected a whole number and a unit ms, s, m or h (e.g. \"50ms\", \"5s\", \"1m\")";
const SIZE_FORM: &str = "expected a whole number of bytes, or a whole number and a unit B, KB, MB, GB, KiB, MiB or GiB (e.g. \"16MiB\", \"100MB\")";

/// `"50ms"`, `"5s"`, `"1m"`, `"1h"`: a whole number and one unit; not zero.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigErrorKind> {
    let bad = |reason| ConfigErrorKind::Duration {
        value: text.to_owned(),
        reason,
    };
    let (number, unit) = split_number(text).ok_or_else(|| bad(DURATION_FORM))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad(DURATION_FORM)),
    };
    let n: u64 = number.parse().map_err(|_| bad("number too large"))?;
    let millis = n
        .checked_mul(millis_per_unit)
        .ok_or_else(|| bad("number too large"))?;
    if millis == 0 {
        return Err(bad("must be greater than zero"));
    }
    Ok(Duration::from_millis(millis))
}

/// A hook's time budget: a duration of at least the runtime's epoch tick
/// (10 ms), the clock that stops runaway hooks; a shorter budget could not
/// be kept.
pub fn hook_timeout(text: &str) -> Result<Duration, ConfigErrorKind> {
    tailgate_runtime::check_hook_budget(parse_duration(text)?)
        .map_err(|reason| ConfigErrorKind::HookTimeout(text.to_owned(), reason))
}

/// `"16MiB"`, `"100MB"`, `"512B"`, `"1024"` or a TOML integer: bytes.
pub fn parse_size(text: &str) -> Result<u64, ConfigErrorKind> {
    let bad = |reason| ConfigErrorKind::Size {
        value: text.to_owned(),
        reason,
    };
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
    let n: u64 = number.parse().map_err(|_| bad("number too large"))?;
    n.checked_mul(multiplier)
        .ok_or_else(|| bad("number too large"))
}

/// Splits `"16MiB"` into `("16", "MiB")`; `None` unless it starts with digits.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0).then(|| text.split_at(digits))
}

/// Route, upstream and plugin names: non-empty `[A-Za-z0-9_.-]+`.
pub fn check_identifier(what: &'static str, text: &str) -> Result<String, ConfigErrorKind> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ConfigErrorKind::Identifier {
            what,
            value: text.to_owned(),
        })
    }
}

/// A route host: `example.com`, `*.example.com`, `*`, an IPv4 address or a
/// bracketed IPv6 address. Lower-cased; ports are rejected.
pub fn parse_host_pattern(text: &str) -> Result<HostPattern, ConfigErrorKind> {
    let bad = |reason| ConfigErrorKind::HostPattern {
        value: text.to_owned(),
        reason,
    };
    if text == "*" {
        return Ok(HostPattern::Any);
    }
    let lower = text.to_ascii_lowercase();
    if let Some(inner) = lower.strip_prefix('[') {
        let addr = inner
            .strip_suffix(']')
            .ok_or_else(|| bad("a port is not part of a host; routes match any port"))?;
        return match addr.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => Ok(HostPattern::Exact(lower)),
            _ => Err(bad("not an IPv6 address")),
        };
    }
    if lower.contains(':') {
        return Err(bad("a port is not part of a host; routes match any port"));
    }
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    if name.contains('*') {
        return Err(bad(
            "a wildcard is allowed only as the whole host \"*\" or as a leading \"*.\"",
        ));
    }
    check_hostname(name).map_err(bad)?;
    Ok(if wildcard {
        HostPattern::WildcardSuffix(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_owned())
    })
}

/// DNS name syntax: dot-separated labels of letters, digits and '-', lower case.
fn check_hostname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty host name");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    if name.ends_with('.') {
        return Err("remove the trailing dot");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label between dots");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("use letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with '-'");
        }
    }
    Ok(())
}

/// A trusted-proxy network: `10.0.0.0/8`, `::1/128`, or a bare address (a
/// single host). Host bits must be zero, so a typo is not silently widened.
pub fn parse_cidr(text: &str) -> Result<IpNet, ConfigErrorKind> {
    let bad = |reason: String| ConfigErrorKind::Cidr {
        value: text.to_owned(),
        reason,
    };
    if !text.contains('/') {
        return text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| bad("not an IP address or network (e.g. \"10.0.0.0/8\")".into()));
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| bad("not an IP network (e.g. \"10.0.0.0/8\", \"fd7a::/48\")".into()))?;
    if net.trunc() != net {
        return Err(bad(format!(
            "host bits are set; did you mean \"{}\"?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Content type of an error page, from its file extension.
pub fn error_page_content_type(ext: Option<&str>) -> Option<&'static str> {
    let ext = ext?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_whole_number_and_one_unit() {
        assert_eq!(parse_duration("50ms").ok(), Some(Duration::from_millis(50)));
        assert_eq!(parse_duration("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m").ok(), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h").ok(), Some(Duration::from_secs(7200)));
        for bad in [
            "", "5", "s", "5 s", "5S", "1.5s", "-5s", "5sec", "5s ", "0ms", "1d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        let err = parse_duration("99999999999999999999h").unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn sizes_know_decimal_and_binary_units() {
        assert_eq!(parse_size("1MiB").ok(), Some(1 << 20));
        assert_eq!(parse_size("16MiB").ok(), Some(16 << 20));
        assert_eq!(parse_size("100MB").ok(), Some(100_000_000));
        assert_eq!(parse_size("3KB").ok(), Some(3_000));
        assert_eq!(parse_size("2GiB").ok(), Some(2 << 30));
        assert_eq!(parse_size("512B").ok(), Some(512));
        assert_eq!(parse_size("1024").ok(), Some(1024));
        assert_eq!(parse_size("0").ok(), Some(0));
        for bad in ["", "1m", "1mb", "1 MiB", "1.5MiB", "MiB", "-1", "1TiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn identifiers_are_letters_digits_and_three_marks() {
        assert!(check_identifier("route name", "site_2.v-1").is_ok());
        for bad in ["", "my site", "a/b", "é", "x:y"] {
            assert!(check_identifier("route name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_patterns_are_lower_cased_and_portless() {
        assert_eq!(
            parse_host_pattern("Example.COM").ok(),
            Some(HostPattern::Exact("example.com".into()))
        );
        assert_eq!(
            parse_host_pattern("*.Example.com").ok(),
            Some(HostPattern::WildcardSuffix(".example.com".into()))
        );
        assert_eq!(parse_host_pattern("*").ok(), Some(HostPattern::Any));
        assert_eq!(
            parse_host_pattern("127.0.0.1").ok(),
            Some(HostPattern::Exact("127.0.0.1".into()))
        );
        assert_eq!(
            parse_host_pattern("[::1]").ok(),
            Some(HostPattern::Exact("[::1]".into()))
        );
        for bad in [
            "example.com:8080",
            "[::1]:80",
            "a.*.com",
            "*example.com",
            "**.x",
            "",
            "a..b",
            "example.com.",
            "ex ample.com",
            "-a.com",
            "[1.2.3.4]",
        ] {
            assert!(parse_host_pattern(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cidrs_accept_networks_and_single_hosts_but_not_stray_host_bits() {
        assert_eq!(
            parse_cidr("10.0.0.0/8").ok(),
            "10.0.0.0/8".parse::<IpNet>().ok()
        );
        assert_eq!(parse_cidr("::1").ok(), "::1/128".parse::<IpNet>().ok());
        assert_eq!(
            parse_cidr("192.0.2.7").ok(),
            "192.0.2.7/32".parse::<IpNet>().ok()
        );
        let err = parse_cidr("10.1.2.3/8").unwrap_err().to_string();
        assert!(err.contains("did you mean \"10.0.0.0/8\""), "{err}");
        for bad in ["10.0.0.0/33", "10.0.0/8", "fly", ""] {
            assert!(parse_cidr(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn error_page_types_come_from_the_extension() {
        assert_eq!(
            error_page_content_type(Some("HTML")),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            error_page_content_type(Some("json")),
            Some("application/json")
        );
        assert_eq!(error_page_content_type(Some("exe")), None);
        assert_eq!(error_page_content_type(None), None);
    }
}
