//! Which origins a route lets in: `*`, an exact origin
//! (`https://app.example.com`, `http://localhost:8080`) or a subdomain
//! wildcard (`https://*.example.com`). Parsed and checked at configure
//! time; matched per request in `on-request` (preflights) and
//! `on-response` (the `Access-Control-Allow-Origin` answer).

/// One entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// `*`: every origin.
    Any,
    /// One origin, lower case.
    Exact(String),
    /// `scheme://*.domain[:port]`: any subdomain of `domain`, not `domain` itself.
    Subdomains {
        /// `https://`
        scheme: String,
        /// `.example.com` or `.example.com:8443`
        suffix: String,
    },
}

impl OriginRule {
    /// Parses one `allow_origins` entry; the error says what is wrong.
    pub fn parse(text: &str) -> Result<OriginRule, String> {
        if text == "*" {
            return Ok(OriginRule::Any);
        }
        let lower = text.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(format!(
                "`{text}` is not an origin: write scheme://host[:port], e.g. \"https://app.example.com\""
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{text}`: the scheme must be http or https"));
        }
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "`{text}`: an origin has no path (browsers send `{scheme}://{}`)",
                rest.split(['/', '?', '#']).next().unwrap_or_default()
            ));
        }
        if let Some(domain) = rest.strip_prefix("*.") {
            check_host_port(text, domain)?;
            return Ok(OriginRule::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{domain}"),
            });
        }
        check_host_port(text, rest)?;
        Ok(OriginRule::Exact(lower))
    }

    /// Whether `origin` (the request's `Origin` header) is let in.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            OriginRule::Subdomains { scheme, suffix } => {
                let origin = origin.to_ascii_lowercase();
                let Some(host) = origin.strip_prefix(scheme.as_str()) else {
                    return false;
                };
                let Some(sub) = host.strip_suffix(suffix.as_str()) else {
                    return false;
                };
                !sub.is_empty()
                    && sub
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    && !sub.starts_with('.')
                    && !sub.ends_with('.')
            }
        }
    }
}

fn check_host_port(text: &str, host_port: &str) -> Result<(), String> {
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (host_port, None),
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[') && host.ends_with(']')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok || host.contains('*') {
        return Err(format!("`{text}`: `{host}` is not a host name"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{text}`: `{port}` is not a port"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> OriginRule {
        OriginRule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn exact_origins_match_case_insensitively_and_nothing_else() {
        let r = rule("https://App.example.com");
        assert!(r.allows("https://app.example.com"));
        assert!(r.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(!r.allows("http://app.example.com"));
        assert!(!r.allows("https://app.example.com:8443"));
        assert!(!r.allows("https://app.example.com.evil.test"));
        assert!(rule("http://localhost:8080").allows("http://localhost:8080"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let r = rule("https://*.example.com");
        assert!(r.allows("https://a.example.com"));
        assert!(r.allows("https://a.b.example.com"));
        assert!(!r.allows("https://example.com"));
        assert!(!r.allows("https://.example.com"));
        assert!(!r.allows("https://evilexample.com"));
        assert!(!r.allows("http://a.example.com"));
        assert!(!r.allows("https://a.example.com:8443"));
        assert!(!r.allows("https://a/b.example.com"));
    }

    #[test]
    fn any_matches_everything() {
        assert!(rule("*").allows("null"));
    }

    #[test]
    fn malformed_origins_are_refused_with_a_reason() {
        let err = |t: &str| OriginRule::parse(t).expect_err(t);
        assert!(err("app.example.com").contains("is not an origin"));
        assert!(err("ftp://a.example.com").contains("scheme must be http or https"));
        assert_eq!(
            err("https://a.example.com/app"),
            "`https://a.example.com/app`: an origin has no path (browsers send `https://a.example.com`)"
        );
        assert!(err("https://a.*.example.com").contains("is not a host name"));
        assert!(err("https://a.example.com:0").contains("is not a port"));
        assert!(err("https://").contains("is not a host name"));
    }
}
