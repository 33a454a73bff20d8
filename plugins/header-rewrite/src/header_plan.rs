//! One side's header edits (`request.*`, `response.*`): validated at
//! configure time into a [`HeaderPlan`], the edits in the fixed order
//! remove -> set -> append, given to the host as fixed edits (it renders
//! the templates per request without calling the plugin). Also the HTTP
//! syntax checks for header names and values.

use std::collections::BTreeMap;

use tailgate_plugin_sdk::{ConfigError, FixedEdit, HeaderOp};

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

    /// The edits as fixed edits, in order: the host makes them without a
    /// call, rendering the templates' placeholders (`{client_ip}`,
    /// `{http_<name>}` ...) from each request itself.
    pub fn fixed_edits(&self) -> Vec<FixedEdit> {
        self.edits
            .iter()
            .map(|edit| match &edit.value {
                None => FixedEdit::remove(edit.name.clone()),
                Some(template) => FixedEdit::template(edit.op, edit.name.clone(), template)
                    .expect("header values parse `$n` as text: no captures"),
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
    use tailgate_plugin_sdk::testing::rendered_fixed;
    use tailgate_plugin_sdk::{HeaderEdit, ValuePart};

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
        let fixed = plan.fixed_edits();
        assert_eq!(
            fixed,
            vec![
                FixedEdit::remove("server"),
                FixedEdit::remove("x-powered-by"),
                FixedEdit {
                    op: HeaderOp::Set,
                    name: "x-request-id".into(),
                    value: vec![ValuePart::RequestId],
                },
                FixedEdit::text(HeaderOp::Append, "vary", "Accept-Encoding"),
            ]
        );
        assert_eq!(
            rendered_fixed(&fixed, &request("GET", "/", None)),
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
        assert!(plan.fixed_edits().is_empty());
    }

    #[test]
    fn templated_and_plain_edits_keep_their_order() {
        let plan = HeaderPlan::build(
            "request",
            &names(&["cookie"]),
            &table(&[("X-Real-IP", "{client_ip}"), ("X-Route", "bench")]),
            &table(&[("X-Real-IP", "proxy"), ("Via", "tailgate")]),
        )
        .expect("valid");
        let req = request("GET", "/", None);
        assert_eq!(
            rendered_fixed(&plan.fixed_edits(), &req),
            vec![
                HeaderEdit::remove("cookie"),
                HeaderEdit::set("x-real-ip", "203.0.113.7"),
                HeaderEdit::set("x-route", "bench"),
                // The append of x-real-ip follows its templated set.
                HeaderEdit::append("via", "tailgate"),
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
