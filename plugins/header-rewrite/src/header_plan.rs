//! One side's header edits (`request.*` for `on-request`, `response.*` for
//! `on-response`): validated at configure time into a [`HeaderPlan`] that
//! renders, per request, the edits in the fixed order remove -> set ->
//! append. Also the HTTP syntax checks for header names and values.

use std::collections::BTreeMap;

use tailgate_plugin_sdk::{ConfigError, HeaderEdit, HeaderOp, RequestFieldSet, RequestHead};

use crate::template::{CaptureRefs, Template};

/// The edits of one side, in the order they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPlan {
    edits: Vec<PlannedEdit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedEdit {
    op: HeaderOp,
    /// Lower case.
    name: String,
    /// `None` for a removal.
    value: Option<Template>,
}

impl HeaderPlan {
    /// Validate the `remove`, `set` and `append` entries of the table at
    /// `section` (`"request"` or `"response"`, for error paths).
    pub fn build(
        section: &str,
        remove: &[String],
        set: &BTreeMap<String, String>,
        append: &BTreeMap<String, String>,
    ) -> Result<HeaderPlan, ConfigError> {
        let mut edits = Vec::with_capacity(remove.len() + set.len() + append.len());
        let mut seen = Vec::new();
        for (i, name) in remove.iter().enumerate() {
            let path = format!("{section}.remove[{i}]");
            let name = header_name(&path, name)?;
            check_unique(&mut seen, &path, &name)?;
            edits.push(PlannedEdit {
                op: HeaderOp::Remove,
                name,
                value: None,
            });
        }
        for (op, key, table) in [
            (HeaderOp::Set, "set", set),
            (HeaderOp::Append, "append", append),
        ] {
            seen.clear();
            for (name, value) in table {
                let path = format!("{section}.{key}.{name}");
                let lower = header_name(&path, name)?;
                check_unique(&mut seen, &path, &lower)?;
                edits.push(PlannedEdit {
                    op,
                    name: lower,
                    value: Some(header_value(&path, value)?),
                });
            }
        }
        Ok(HeaderPlan { edits })
    }

    /// The request headers the values read (`{http_<name>}`).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.edits
            .iter()
            .filter_map(|edit| edit.value.as_ref())
            .flat_map(Template::header_names)
    }

    /// The request fields the values read (`{client_ip}`, `{uri}`, ...).
    pub fn request_fields(&self) -> RequestFieldSet {
        self.edits
            .iter()
            .filter_map(|edit| edit.value.as_ref())
            .fold(RequestFieldSet::empty(), |set, value| {
                set | value.request_fields()
            })
    }

    /// Split into the edits that are the same for every request, given
    /// once as fixed edits (which the host applies before the hook's), and
    /// the plan of the rest for the hook. A plain-text edit moves ahead only
    /// when no edit the hook keeps before it names the same header (edits of
    /// different headers commute), so the two apply exactly as the whole
    /// plan did: with `X-Real-IP: {client_ip}` beside constants, only that
    /// one crosses per request.
    pub fn split_fixed(&self) -> (Vec<HeaderEdit>, HeaderPlan) {
        let mut fixed = Vec::new();
        let mut rest: Vec<PlannedEdit> = Vec::new();
        for edit in &self.edits {
            let literal = match &edit.value {
                Some(template) => template.literal(),
                None => Some(Vec::new()),
            };
            match literal {
                Some(value) if !rest.iter().any(|kept| kept.name == edit.name) => {
                    fixed.push(HeaderEdit {
                        op: edit.op,
                        name: edit.name.clone(),
                        value,
                    });
                }
                _ => rest.push(edit.clone()),
            }
        }
        (fixed, HeaderPlan { edits: rest })
    }

    /// True when the plan makes no edit.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The edits for this request, values rendered.
    pub fn render(&self, req: &RequestHead) -> Vec<HeaderEdit> {
        self.edits
            .iter()
            .map(|edit| HeaderEdit {
                op: edit.op,
                name: edit.name.clone(),
                value: match &edit.value {
                    Some(template) => template.render(req),
                    None => Vec::new(),
                },
            })
            .collect()
    }
}

fn check_unique(seen: &mut Vec<String>, path: &str, name: &str) -> Result<(), ConfigError> {
    if seen.iter().any(|other| other == name) {
        return Err(ConfigError::new(
            path,
            format!("header `{name}` is listed twice (names are case-insensitive)"),
        ));
    }
    seen.push(name.to_owned());
    Ok(())
}

/// A header name (an RFC 9110 token), lower-cased.
pub fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    if !is_token(name) {
        return Err(ConfigError::new(
            path,
            format!("`{name}` is not a valid header name"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// A header value template (no `$n` captures).
pub fn header_value(path: &str, source: &str) -> Result<Template, ConfigError> {
    check_field_text(path, source)?;
    Template::parse(source, CaptureRefs::Literal).map_err(|err| ConfigError::new(path, err))
}

/// Text that goes into a header value: no control characters but tab.
/// (Rendered request fields are valid already: the host parsed them.)
pub fn check_field_text(path: &str, text: &str) -> Result<(), ConfigError> {
    match text
        .bytes()
        .position(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        Some(at) => Err(ConfigError::new(
            path,
            format!(
                "control character 0x{:02x} at byte {at} is not allowed in a header value",
                text.as_bytes()[at]
            ),
        )),
        None => Ok(()),
    }
}

pub use tailgate_plugin_sdk::validate::is_token;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::tests::request;

    fn table(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn renders_remove_then_set_then_append_with_lower_case_names() {
        let plan = HeaderPlan::build(
            "response",
            &names(&["Server", "X-Powered-By"]),
            &table(&[("X-Request-Id", "{request_id}")]),
            &table(&[("Vary", "Accept-Encoding")]),
        )
        .expect("valid");
        let edits = plan.render(&request("GET", "/", None));
        assert_eq!(
            edits,
            vec![
                HeaderEdit::remove("server"),
                HeaderEdit::remove("x-powered-by"),
                HeaderEdit::set("x-request-id", "01HZX"),
                HeaderEdit::append("vary", "Accept-Encoding"),
            ]
        );
    }

    #[test]
    fn empty_tables_make_an_empty_plan() {
        let plan =
            HeaderPlan::build("request", &[], &BTreeMap::new(), &BTreeMap::new()).expect("valid");
        assert!(plan.render(&request("GET", "/", None)).is_empty());
        let (fixed, rest) = plan.split_fixed();
        assert!(fixed.is_empty() && rest.is_empty());
    }

    #[test]
    fn plain_text_edits_go_ahead_unless_a_templated_edit_of_their_header_comes_first() {
        let plan = HeaderPlan::build(
            "request",
            &names(&["cookie"]),
            &table(&[("X-Real-IP", "{client_ip}"), ("X-Route", "bench")]),
            &table(&[("X-Real-IP", "proxy"), ("Via", "tailgate")]),
        )
        .expect("valid");
        let (fixed, rest) = plan.split_fixed();
        assert_eq!(
            fixed,
            vec![
                HeaderEdit::remove("cookie"),
                HeaderEdit::set("x-route", "bench"),
                HeaderEdit::append("via", "tailgate"),
            ]
        );
        // The append of x-real-ip must follow its templated set.
        let req = request("GET", "/", None);
        assert_eq!(
            rest.render(&req),
            vec![
                HeaderEdit::set("x-real-ip", "203.0.113.7"),
                HeaderEdit::append("x-real-ip", "proxy"),
            ]
        );
    }

    #[test]
    fn invalid_header_name_is_rejected_with_its_path() {
        let err = HeaderPlan::build("request", &[], &table(&[("X Bad", "1")]), &BTreeMap::new())
            .expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "request.set.X Bad: `X Bad` is not a valid header name"
        );
        let err = HeaderPlan::build(
            "response",
            &names(&["ok", ""]),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "response.remove[1]: `` is not a valid header name"
        );
    }

    #[test]
    fn control_characters_in_values_are_rejected() {
        let err = HeaderPlan::build(
            "response",
            &[],
            &BTreeMap::new(),
            &table(&[("x-a", "one\r\nInjected: yes")]),
        )
        .expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "response.append.x-a: control character 0x0d at byte 3 is not allowed in a header value"
        );
        assert!(HeaderPlan::build("r", &[], &table(&[("x-a", "a\tb")]), &BTreeMap::new()).is_ok());
    }

    #[test]
    fn unknown_placeholder_names_the_header() {
        let err = HeaderPlan::build(
            "request",
            &[],
            &table(&[("x-a", "{hots}")]),
            &BTreeMap::new(),
        )
        .expect_err("rejected");
        assert!(
            err.to_string()
                .starts_with("request.set.x-a: unknown placeholder `{hots}`"),
            "{err}"
        );
    }

    #[test]
    fn same_header_twice_in_one_table_is_rejected() {
        let err = HeaderPlan::build(
            "response",
            &[],
            &table(&[
                ("X-Frame-Options", "DENY"),
                ("x-frame-options", "SAMEORIGIN"),
            ]),
            &BTreeMap::new(),
        )
        .expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "response.set.x-frame-options: header `x-frame-options` is listed twice \
             (names are case-insensitive)"
        );
        // The same name in different tables is fine: remove, then append.
        assert!(HeaderPlan::build(
            "response",
            &names(&["vary"]),
            &BTreeMap::new(),
            &table(&[("Vary", "Origin")])
        )
        .is_ok());
    }
}
