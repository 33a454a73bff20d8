//! Which requests a rule applies to (feature `request-filter`): a path
//! regex and a list of methods, each optional (left out: every path, every
//! method). Rate-limit's limits and ban's jails filter with it. Built and
//! checked in `configure`; asked per request with [`RequestFilter::matches`].

use regex::{Regex, RegexBuilder};

use crate::validate::http_methods;
use crate::{ConfigError, Method, RequestFieldSet, RequestHead};

/// Compiled-size cap of one path regex: far above any sane pattern, well
/// below an instance's memory limit.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A path regex and a method list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    path: Option<Regex>,
    /// Upper case.
    methods: Option<Vec<String>>,
}

impl RequestFilter {
    /// The filter of a config's `path` regex and `methods` list, each
    /// given with the config key naming it (for the errors).
    pub fn new(
        path: Option<(&str, &str)>,
        methods: Option<(&[String], &str)>,
    ) -> Result<RequestFilter, ConfigError> {
        let path = match path {
            None => None,
            Some((pattern, at)) => Some(
                RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|err| ConfigError::new(at, err))?,
            ),
        };
        let methods = match methods {
            None => None,
            Some((methods, at)) => Some(http_methods(at, methods)?),
        };
        Ok(RequestFilter { path, methods })
    }

    /// Whether the filter lets every request through (neither a path regex
    /// nor a method list).
    pub fn matches_all(&self) -> bool {
        self.path.is_none() && self.methods.is_none()
    }

    /// Whether the request passes: its method is listed (if methods are)
    /// and its path matches (if a regex is given).
    pub fn matches(&self, req: &RequestHead) -> bool {
        self.matches_parts(&req.method, || &req.path)
    }

    /// [`matches`](Self::matches) for a request known by its method and
    /// normalised path (a log record's `method` and `path`); `path` is read
    /// only when there is a regex (a field the plugin did not ask for
    /// panics when read).
    pub fn matches_parts<'a>(&self, method: &Method, path: impl FnOnce() -> &'a str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method.as_str()))
            && self.path.as_ref().is_none_or(|re| re.is_match(path()))
    }

    /// Whether the filter reads the path (a regex is given).
    pub fn reads_path(&self) -> bool {
        self.path.is_some()
    }

    /// The request fields [`matches`](Self::matches) reads: the path when
    /// there is a regex (the method always comes).
    pub fn request_fields(&self) -> RequestFieldSet {
        if self.path.is_some() {
            RequestFieldSet::PATH
        } else {
            RequestFieldSet::empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::request_head;

    fn filter(path: Option<&str>, methods: Option<&[&str]>) -> Result<RequestFilter, String> {
        let methods: Option<Vec<String>> =
            methods.map(|list| list.iter().map(|m| m.to_string()).collect());
        RequestFilter::new(
            path.map(|p| (p, "jails[0].path")),
            methods.as_deref().map(|m| (m, "jails[0].methods")),
        )
        .map_err(|err| err.to_string())
    }

    /// Whether a filter without a regex matches without reading the path.
    fn matches_without_reading_the_path(filter: &RequestFilter) -> bool {
        filter.matches_parts(&Method::Post, || panic!("the path was read"))
    }

    #[test]
    fn path_and_methods_both_have_to_match() {
        let login = filter(Some("(?i)^/user/login"), Some(&["post"])).expect("valid");
        assert!(login.matches(&request_head("POST", "/User/Login", None)));
        assert!(!login.matches(&request_head("GET", "/user/login", None)));
        assert!(!login.matches(&request_head("POST", "/", None)));
        assert_eq!(login.request_fields(), RequestFieldSet::PATH);
        assert!(login.matches_parts(&Method::Post, || "/user/login/x"));
        assert!(!login.matches_parts(&Method::Get, || "/user/login"));
        assert!(matches_without_reading_the_path(
            &filter(None, Some(&["POST"])).expect("valid")
        ));
        assert!(login.reads_path());

        let any = filter(None, None).expect("valid");
        assert!(any.matches(&request_head("DELETE", "/x", None)));
        assert_eq!(any.request_fields(), RequestFieldSet::empty());
        let gets = filter(None, Some(&["GET"])).expect("valid");
        assert!(gets.matches(&request_head("GET", "/x", None)));
        assert!(!gets.matches(&request_head("HEAD", "/x", None)));
        assert_eq!(gets.request_fields(), RequestFieldSet::empty());
    }

    #[test]
    fn mistakes_name_the_key() {
        assert!(filter(Some("(unclosed"), None)
            .expect_err("refused")
            .starts_with("jails[0].path: "));
        assert_eq!(
            filter(None, Some(&["PO ST"])).expect_err("refused"),
            "jails[0].methods[0]: `PO ST` is not a valid HTTP method"
        );
        let huge = format!("^/({})$", "a{1000}".repeat(50));
        assert!(filter(Some(&huge), None)
            .expect_err("too big")
            .contains("size limit"));
    }
}
