//! The rules that answer a request in `on-request` instead of letting it go
//! upstream: `deny` (a fixed status and body, like nginx
//! `location /x { return 403 "..."; }`) and `redirect` (a status and a
//! `Location` built from a template and the path regex's captures).

use regex::{Regex, RegexBuilder};
use tailgate_plugin_sdk::validate::http_methods;
use tailgate_plugin_sdk::{ConfigError, ImmediateResponse, RequestFieldSet, RequestHead};

use crate::config::{RawDenyRule, RawRedirectRule};
use crate::header_plan::check_field_text;
use crate::template::{CaptureRefs, Template};

/// Compiled-size cap of one path regex: far above any sane path pattern,
/// well below the instance's memory limit, so a runaway pattern fails
/// `configure` with a message instead of exhausting memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Name of the var a matching rule attaches (`deny[0]`, `redirect[2]`), so
/// the access log tells which rule answered.
pub const RULE_VAR: &str = "header_rewrite_rule";

/// A validated `deny[i]`.
#[derive(Debug, Clone)]
pub struct DenyRule {
    path: Option<Regex>,
    /// Upper case.
    methods: Option<Vec<String>>,
    /// Built once; cloned per match.
    response: ImmediateResponse,
}

/// A validated `redirect[i]`.
#[derive(Debug, Clone)]
pub struct RedirectRule {
    path: Regex,
    status: u16,
    location: Template,
    /// `deny[i]`-style label for the var.
    label: String,
}

impl DenyRule {
    pub fn build(index: usize, raw: &RawDenyRule) -> Result<DenyRule, ConfigError> {
        let at = format!("deny[{index}]");
        if raw.path.is_none() && raw.methods.is_none() {
            return Err(ConfigError::new(
                &at,
                "give `path`, `methods` or both (a rule matching everything is a route, not a rule)",
            ));
        }
        let path = match &raw.path {
            Some(pattern) => Some(path_regex(&format!("{at}.path"), pattern)?),
            None => None,
        };
        let methods = match &raw.methods {
            Some(methods) => Some(http_methods(&format!("{at}.methods"), methods)?),
            None => None,
        };
        if !(200..=599).contains(&raw.status) {
            return Err(ConfigError::new(
                format!("{at}.status"),
                format!("{} is not a final HTTP status (200-599)", raw.status),
            ));
        }
        if !raw.body.is_empty() && matches!(raw.status, 204 | 304) {
            return Err(ConfigError::new(
                format!("{at}.body"),
                format!("a {} response has no body", raw.status),
            ));
        }
        check_field_text(&format!("{at}.content_type"), &raw.content_type)?;
        let mut response = ImmediateResponse::new(raw.status).var(RULE_VAR, at);
        if !raw.body.is_empty() {
            response = response
                .header("content-type", raw.content_type.as_str())
                .body(raw.body.as_str());
        }
        Ok(DenyRule {
            path,
            methods,
            response,
        })
    }

    /// The request fields [`DenyRule::matches`] reads: the path when
    /// `path` is given (the method always comes).
    pub fn request_fields(&self) -> RequestFieldSet {
        let mut fields = RequestFieldSet::empty();
        if self.path.is_some() {
            fields |= RequestFieldSet::PATH;
        }
        fields
    }

    /// Whether this rule answers the request: the path regex (if any)
    /// matches AND the method (if listed) is one of `methods`.
    pub fn matches(&self, req: &RequestHead) -> bool {
        let method_ok = self
            .methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == req.method.as_str()));
        method_ok && self.path.as_ref().is_none_or(|re| re.is_match(&req.path))
    }

    pub fn response(&self) -> ImmediateResponse {
        self.response.clone()
    }
}

impl RedirectRule {
    /// The request headers the location reads (`{http_<name>}`).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.location.header_names()
    }

    /// The request fields [`RedirectRule::answer`] reads: the path (for
    /// the regex) and the location's fields.
    pub fn request_fields(&self) -> RequestFieldSet {
        RequestFieldSet::PATH | self.location.request_fields()
    }

    pub fn build(index: usize, raw: &RawRedirectRule) -> Result<RedirectRule, ConfigError> {
        let at = format!("redirect[{index}]");
        let path = path_regex(&format!("{at}.path"), &raw.path)?;
        if !matches!(raw.status, 301 | 302 | 303 | 307 | 308) {
            return Err(ConfigError::new(
                format!("{at}.status"),
                format!(
                    "{} is not a redirect status (301, 302, 303, 307, 308)",
                    raw.status
                ),
            ));
        }
        let location_at = format!("{at}.location");
        if raw.location.is_empty() {
            return Err(ConfigError::new(&location_at, "must not be empty"));
        }
        check_field_text(&location_at, &raw.location)?;
        let location = Template::parse(&raw.location, CaptureRefs::Allowed)
            .map_err(|err| ConfigError::new(&location_at, err))?;
        let groups = path.captures_len() - 1;
        if location.max_capture() > groups {
            return Err(ConfigError::new(
                &location_at,
                format!(
                    "uses `${}` but the path regex has {groups} capture group{}",
                    location.max_capture(),
                    if groups == 1 { "" } else { "s" }
                ),
            ));
        }
        Ok(RedirectRule {
            path,
            status: raw.status,
            location,
            label: at,
        })
    }

    /// The redirect for this request, if the path regex matches.
    pub fn answer(&self, req: &RequestHead) -> Option<ImmediateResponse> {
        let location = if self.location.max_capture() == 0 {
            if !self.path.is_match(&req.path) {
                return None;
            }
            self.location.render(req)
        } else {
            let captures = self.path.captures(&req.path)?;
            self.location
                .render_with_captures(req, |n| captures.get(n).map(|m| m.as_str()))
        };
        Some(
            ImmediateResponse::new(self.status)
                .header("location", location)
                .var(RULE_VAR, self.label.as_str()),
        )
    }
}

fn path_regex(at: &str, pattern: &str) -> Result<Regex, ConfigError> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|err| ConfigError::new(at, err))
}

#[cfg(test)]
mod tests {
    use tailgate_plugin_sdk::{Header, Var};

    use super::*;
    use crate::template::tests::request;

    fn deny(path: Option<&str>, methods: Option<&[&str]>) -> RawDenyRule {
        RawDenyRule {
            path: path.map(str::to_owned),
            methods: methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect()),
            status: 403,
            body: "Forbidden\n".to_owned(),
            content_type: "text/plain".to_owned(),
        }
    }

    fn redirect(path: &str, status: u16, location: &str) -> RawRedirectRule {
        RawRedirectRule {
            path: path.to_owned(),
            status,
            location: location.to_owned(),
        }
    }

    #[test]
    fn deny_by_path_answers_with_status_body_and_type() {
        let rule = DenyRule::build(0, &deny(Some(r"^/\.(git|env)"), None)).expect("valid");
        assert!(rule.matches(&request("GET", "/.git/config", None)));
        assert!(rule.matches(&request("POST", "/.env", None)));
        assert!(!rule.matches(&request("GET", "/a/.git", None)));
        assert_eq!(
            rule.response(),
            ImmediateResponse {
                status: 403,
                headers: vec![Header::new("content-type", "text/plain")],
                body: b"Forbidden\n".to_vec(),
                vars: vec![Var::new(RULE_VAR, "deny[0]")],
            }
        );
    }

    #[test]
    fn deny_by_method_only() {
        let rule = DenyRule::build(1, &deny(None, Some(&["trace", "TRACK"]))).expect("valid");
        assert!(rule.matches(&request("TRACE", "/anything", None)));
        assert!(rule.matches(&request("TRACK", "/", None)));
        assert!(!rule.matches(&request("GET", "/", None)));
    }

    #[test]
    fn deny_needs_both_path_and_method_when_both_are_given() {
        let rule = DenyRule::build(0, &deny(Some("^/swagger"), Some(&["POST"]))).expect("valid");
        assert!(rule.matches(&request("POST", "/swagger/ui", None)));
        assert!(!rule.matches(&request("GET", "/swagger/ui", None)));
        assert!(!rule.matches(&request("POST", "/api", None)));
    }

    #[test]
    fn deny_path_matches_the_path_not_the_query() {
        let rule = DenyRule::build(0, &deny(Some("secret"), None)).expect("valid");
        assert!(!rule.matches(&request("GET", "/a", Some("secret=1"))));
    }

    #[test]
    fn deny_without_body_sends_no_content_type() {
        let mut raw = deny(Some("^/x"), None);
        raw.body.clear();
        raw.status = 404;
        let resp = DenyRule::build(0, &raw).expect("valid").response();
        assert_eq!(resp.status, 404);
        assert!(resp.headers.is_empty());
        assert!(resp.body.is_empty());
    }

    #[test]
    fn invalid_deny_rules_are_rejected_precisely() {
        let cases: Vec<(RawDenyRule, &str)> = vec![
            (
                deny(None, None),
                "deny[3]: give `path`, `methods` or both (a rule matching everything is a route, not a rule)",
            ),
            (
                deny(None, Some(&[])),
                "deny[3].methods: must not be empty (leave it out to match every method)",
            ),
            (
                deny(None, Some(&["GET", "GE T"])),
                "deny[3].methods[1]: `GE T` is not a valid HTTP method",
            ),
            (
                RawDenyRule { status: 99, ..deny(Some("x"), None) },
                "deny[3].status: 99 is not a final HTTP status (200-599)",
            ),
            (
                RawDenyRule { status: 600, ..deny(Some("x"), None) },
                "deny[3].status: 600 is not a final HTTP status (200-599)",
            ),
            (
                RawDenyRule { status: 204, ..deny(Some("x"), None) },
                "deny[3].body: a 204 response has no body",
            ),
            (
                RawDenyRule { content_type: "text/plain\n".to_owned(), ..deny(Some("x"), None) },
                "deny[3].content_type: control character 0x0a at byte 10 is not allowed in a header value",
            ),
        ];
        for (raw, expected) in cases {
            let err = DenyRule::build(3, &raw).expect_err(expected);
            assert_eq!(err.to_string(), expected);
        }
    }

    #[test]
    fn bad_regex_names_the_rule_and_the_regex_error() {
        let err = DenyRule::build(0, &deny(Some("^/(unclosed"), None)).expect_err("rejected");
        let text = err.to_string();
        assert!(
            text.starts_with("deny[0].path: regex parse error:"),
            "{text}"
        );
        assert!(text.contains("unclosed group"), "{text}");
    }

    #[test]
    fn oversized_regex_is_rejected_not_compiled() {
        let err = DenyRule::build(0, &deny(Some("(a{1000}){1000}"), None)).expect_err("rejected");
        assert!(err.to_string().starts_with("deny[0].path: "), "{err}");
    }

    #[test]
    fn case_insensitive_regex_works() {
        let rule = DenyRule::build(0, &deny(Some("(?i)^/wp-admin"), None)).expect("valid");
        assert!(rule.matches(&request("GET", "/WP-Admin/x", None)));
    }

    #[test]
    fn redirect_fills_captures_and_fields() {
        let rule = RedirectRule::build(0, &redirect("^/old/(.*)$", 301, "{scheme}://{host}/$1"))
            .expect("valid");
        let resp = rule
            .answer(&request("GET", "/old/docs/a", Some("q=1")))
            .expect("matches");
        assert_eq!(
            resp,
            ImmediateResponse {
                status: 301,
                headers: vec![Header::new("location", "https://example.com/docs/a")],
                body: Vec::new(),
                vars: vec![Var::new(RULE_VAR, "redirect[0]")],
            }
        );
        assert_eq!(rule.answer(&request("GET", "/new/docs", None)), None);
    }

    #[test]
    fn redirect_without_captures_can_keep_the_query() {
        let rule = RedirectRule::build(2, &redirect("^/blog$", 308, "https://blog.example{uri}"))
            .expect("valid");
        let resp = rule
            .answer(&request("GET", "/blog", Some("p=2")))
            .expect("matches");
        assert_eq!(resp.status, 308);
        assert_eq!(
            resp.headers,
            vec![Header::new("location", "https://blog.example/blog?p=2")]
        );
    }

    #[test]
    fn invalid_redirect_rules_are_rejected_precisely() {
        let cases = [
            (
                redirect("^/a", 200, "/b"),
                "redirect[1].status: 200 is not a redirect status (301, 302, 303, 307, 308)",
            ),
            (redirect("^/a", 301, ""), "redirect[1].location: must not be empty"),
            (
                redirect("^/(a)", 301, "/$2"),
                "redirect[1].location: uses `$2` but the path regex has 1 capture group",
            ),
            (
                redirect("^/a", 301, "/$1"),
                "redirect[1].location: uses `$1` but the path regex has 0 capture groups",
            ),
            (
                redirect("^/a", 301, "/{nope}"),
                "redirect[1].location: unknown placeholder `{nope}`; known: {host}, {http_host}, \
                 {client_ip}, {scheme}, {request_id}, {method}, {path}, {query}, {uri}, {route}, \
                 {http_<header>}",
            ),
            (
                redirect("^/a", 301, "/b\r\nSet-Cookie: x"),
                "redirect[1].location: control character 0x0d at byte 2 is not allowed in a header value",
            ),
        ];
        for (raw, expected) in cases {
            let err = RedirectRule::build(1, &raw).expect_err(expected);
            assert_eq!(err.to_string(), expected);
        }
        let err = RedirectRule::build(0, &redirect("(", 301, "/")).expect_err("rejected");
        assert!(err
            .to_string()
            .starts_with("redirect[0].path: regex parse error:"));
    }
}
