//! Checks plugins share when they validate their per-route config in
//! `configure`: RFC 9110 tokens (header names, methods) and method lists,
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
}
