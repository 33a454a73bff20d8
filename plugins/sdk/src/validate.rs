//! Checks plugins share when they validate their per-route config in
//! `configure`: RFC 9110 tokens (header names, methods), method lists and
//! the names plugins give shared state (rate-limit's zones, ban's jails),
//! with errors that name the offending key the way [`ConfigError`] does.

use crate::ConfigError;

/// RFC 9110 `token`: header names and methods.
pub fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A config's list of HTTP methods at key `at`, upper-cased. An empty list
/// is an error (leaving the key out is how a config matches every method);
/// so is an entry that is not a token (`at[i]` names it).
pub fn http_methods(at: &str, methods: &[String]) -> Result<Vec<String>, ConfigError> {
    if methods.is_empty() {
        return Err(ConfigError::new(
            at,
            "must not be empty (leave it out to match every method)",
        ));
    }
    methods
        .iter()
        .enumerate()
        .map(|(i, method)| {
            if is_token(method) {
                Ok(method.to_ascii_uppercase())
            } else {
                Err(ConfigError::new(
                    format!("{at}[{i}]"),
                    format!("`{method}` is not a valid HTTP method"),
                ))
            }
        })
        .collect()
}

/// Longest [`name`]: the host takes keys up to 512 bytes, and names are
/// also metric labels.
pub const MAX_NAME_BYTES: usize = 64;

/// A name of shared state at key `at` (a rate-limit zone, a ban jail):
/// also a metric label and log text, so short, with no spaces or quotes,
/// and no `|` (which separates a name from its key in the host's keys).
pub fn name(at: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(at, "must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ConfigError::new(
            at,
            format!("`{name}` is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        return Err(ConfigError::new(
            at,
            format!("`{name}`: use letters, digits, `_`, `-`, `.` and `:`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("X-Custom_1.a~"));
        assert!(!is_token("a:b"));
        assert!(!is_token("a b"));
        assert!(!is_token("é"));
        assert!(!is_token(""));
    }

    #[test]
    fn methods_are_upper_cased_and_bad_ones_named() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            http_methods("deny[0].methods", &list(&["get", "POST"])).expect("valid"),
            vec!["GET", "POST"]
        );
        assert_eq!(
            http_methods("deny[0].methods", &list(&["GET", "B AD"]))
                .expect_err("invalid")
                .to_string(),
            "deny[0].methods[1]: `B AD` is not a valid HTTP method"
        );
        assert!(http_methods("m", &[])
            .expect_err("empty")
            .to_string()
            .contains("must not be empty"));
    }

    #[test]
    fn names_are_short_labels() {
        assert!(name("zones.a", "login_2.v1:x-y").is_ok());
        let refused = |text: &str| name("jails[0].name", text).expect_err(text).to_string();
        assert_eq!(refused(""), "jails[0].name: must not be empty");
        assert_eq!(
            refused("a zone"),
            "jails[0].name: `a zone`: use letters, digits, `_`, `-`, `.` and `:`"
        );
        assert!(refused("a|b").contains("use letters"));
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            refused(&long),
            format!("jails[0].name: `{long}` is longer than 64 bytes")
        );
        assert!(name("z", &"n".repeat(MAX_NAME_BYTES)).is_ok());
    }
}
