//! Plugin output checked for the wire: header edits parsed into
//! [`WireEdit`]s, path rewrites and immediate responses checked, so a plugin
//! cannot put an invalid header or path on the wire. Used between hooks by
//! [`ChainedPlugin`](crate::ChainedPlugin) (a plugin's place in a route's
//! chain, in the proxy and in the harness alike); the proxy's pipeline
//! applies the resulting [`WireEdit`]s to the header maps it sends.

use std::cell::RefCell;

use crate::{Header, HeaderEdit, HeaderOp, ImmediateResponse, RequestHead};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Plugin output that cannot be applied: an invalid header, path or status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOutput {
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid value for header {0:?} (control characters are not allowed)")]
    HeaderValue(String),
    #[error("invalid path {0:?} (must start with '/' and be a valid URI path)")]
    Path(String),
    #[error("invalid status {0} for an immediate response")]
    Status(u16),
}

/// A plugin's header edit, checked and parsed for the wire: what the chain
/// applies to the plugins' header lists and the pipeline to the header map
/// it sends. A hook's edits are parsed once per request
/// ([`check_header_edits`]); a plugin's fixed edits once, when its chain
/// loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireEdit {
    /// Replace every field of the name with one.
    Set(HeaderName, HeaderValue),
    /// Add a field at the end.
    Append(HeaderName, HeaderValue),
    /// Drop every field of the name.
    Remove(HeaderName),
}

impl WireEdit {
    pub fn name(&self) -> &HeaderName {
        match self {
            WireEdit::Set(name, _) | WireEdit::Append(name, _) | WireEdit::Remove(name) => name,
        }
    }

    /// The value set or appended; `None` for a removal.
    pub fn value(&self) -> Option<&HeaderValue> {
        match self {
            WireEdit::Set(_, value) | WireEdit::Append(_, value) => Some(value),
            WireEdit::Remove(_) => None,
        }
    }

    /// The edit in the contract's terms (name lower case; a removal has an
    /// empty value): what a test of one plugin reads back.
    pub fn to_header_edit(&self) -> HeaderEdit {
        let (op, value) = match self {
            WireEdit::Set(_, value) => (HeaderOp::Set, value.as_bytes().to_vec()),
            WireEdit::Append(_, value) => (HeaderOp::Append, value.as_bytes().to_vec()),
            WireEdit::Remove(_) => (HeaderOp::Remove, Vec::new()),
        };
        HeaderEdit {
            op,
            name: self.name().as_str().to_owned(),
            value,
        }
    }
}

/// Check and parse `edits`, all or nothing: the first name that is no
/// token, or value with control characters, fails them all.
pub fn check_header_edits(edits: &[HeaderEdit]) -> Result<Vec<WireEdit>, InvalidOutput> {
    edits
        .iter()
        .map(|edit| {
            let name = checked_name(&edit.name)?;
            Ok(match edit.op {
                HeaderOp::Remove => WireEdit::Remove(name),
                HeaderOp::Append => {
                    let value = checked_value(&name, &edit.value)?;
                    WireEdit::Append(name, value)
                }
                HeaderOp::Set => {
                    let value = checked_value(&name, &edit.value)?;
                    WireEdit::Set(name, value)
                }
            })
        })
        .collect()
}

/// Apply `edits` to a plugin header list in order. Names are compared
/// case-insensitively and stored lower case. `set` replaces every field of
/// that name with one field at the place of the first; `append` adds a
/// field at the end; `remove` drops every field of that name.
pub fn apply_to_list(headers: &mut Vec<Header>, edits: &[WireEdit]) {
    for edit in edits {
        let name = edit.name().as_str();
        match edit {
            WireEdit::Remove(_) => headers.retain(|h| !h.name.eq_ignore_ascii_case(name)),
            WireEdit::Append(_, value) => headers.push(Header {
                name: name.to_owned(),
                value: value.as_bytes().to_vec(),
            }),
            WireEdit::Set(_, value) => {
                let field = Header {
                    name: name.to_owned(),
                    value: value.as_bytes().to_vec(),
                };
                match headers
                    .iter()
                    .position(|h| h.name.eq_ignore_ascii_case(name))
                {
                    None => headers.push(field),
                    Some(first) => {
                        let mut index = 0;
                        headers.retain(|h| {
                            let keep = index <= first || !h.name.eq_ignore_ascii_case(name);
                            index += 1;
                            keep
                        });
                        headers[first] = field;
                    }
                }
            }
        }
    }
}

/// Apply `edits` to a header map, the same operations on the fields that
/// go on the wire: `set` replaces every field of the name, `append` adds
/// one, `remove` drops them all. (A map keeps a name's fields together, as
/// the serialised head does anyway.)
pub fn apply_to_map(headers: &mut HeaderMap, edits: &[WireEdit]) {
    for edit in edits {
        match edit {
            WireEdit::Remove(name) => {
                headers.remove(name);
            }
            WireEdit::Append(name, value) => {
                headers.append(name.clone(), value.clone());
            }
            WireEdit::Set(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Most names [`wire_name`] keeps per thread.
const KEPT_NAMES: usize = 32;

thread_local! {
    /// Header names plugins edited on this thread, parsed. A chain edits
    /// the same few names on every request; parsing one again costs ~450
    /// instructions and, for a name outside the standard table, an
    /// allocation, where a kept one is a comparison and a clone.
    static EDITED_NAMES: RefCell<Vec<HeaderName>> = const { RefCell::new(Vec::new()) };
}

/// `name` as a `HeaderName` (lower case), if it is one.
fn wire_name(name: &str) -> Option<HeaderName> {
    EDITED_NAMES.with_borrow_mut(|kept| {
        if let Some(known) = kept
            .iter()
            .find(|known| known.as_str().eq_ignore_ascii_case(name))
        {
            return Some(known.clone());
        }
        let parsed = HeaderName::from_bytes(name.as_bytes()).ok()?;
        if kept.len() < KEPT_NAMES {
            kept.push(parsed.clone());
        }
        Some(parsed)
    })
}

/// Rewrite the request target to one [`check_path`] accepted: `/new/path`
/// keeps the query (as nginx's `rewrite` does), `/new/path?q=1` replaces
/// it, `/new/path?` drops it.
/// The path is normalised as the client's was ([`crate::request_path`]):
/// a plugin cannot send upstream a path the route's rules never saw.
pub fn set_target(head: &mut RequestHead, target: &str) {
    let normal = |path: &str| {
        crate::request_path::normalize(path).map_or_else(|_| path.to_owned(), |p| p.into_owned())
    };
    match target.split_once('?') {
        None => head.path = Some(normal(target)),
        Some((path, query)) => {
            head.path = Some(normal(path));
            head.query = (!query.is_empty()).then(|| query.to_owned());
        }
    }
}

/// Check a rewrite target: an origin-form path, optionally with `?query`.
pub fn check_path(target: &str) -> Result<(), InvalidOutput> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let valid = target.starts_with('/')
        && !target.contains('#')
        && target.parse::<http::uri::PathAndQuery>().is_ok()
        && crate::request_path::normalize(path).is_ok();
    if valid {
        Ok(())
    } else {
        Err(InvalidOutput::Path(target.to_owned()))
    }
}

/// Check an immediate response's status and headers; lower-case the names.
pub fn check_immediate_response(resp: &mut ImmediateResponse) -> Result<(), InvalidOutput> {
    if !(100..=599).contains(&resp.status) {
        return Err(InvalidOutput::Status(resp.status));
    }
    for header in &mut resp.headers {
        let name = checked_name(&header.name)?;
        checked_value(&name, &header.value)?;
        header.name = name.as_str().to_owned();
    }
    Ok(())
}

/// `name` as a `HeaderName` (1 to 65,535 token characters, RFC 9110
/// 5.6.2), or the error naming it.
fn checked_name(name: &str) -> Result<HeaderName, InvalidOutput> {
    wire_name(name).ok_or_else(|| InvalidOutput::HeaderName(name.to_owned()))
}

/// `value` as a `HeaderValue` (no control characters but tab), or the error
/// naming its field.
fn checked_value(name: &HeaderName, value: &[u8]) -> Result<HeaderValue, InvalidOutput> {
    HeaderValue::from_bytes(value).map_err(|_| InvalidOutput::HeaderValue(name.as_str().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check `edits` and apply them to `headers`, as the chain does with a
    /// hook's edits. On error `headers` is unchanged.
    fn apply_header_edits(
        headers: &mut Vec<Header>,
        edits: &[HeaderEdit],
    ) -> Result<Vec<WireEdit>, InvalidOutput> {
        let checked = check_header_edits(edits)?;
        apply_to_list(headers, &checked);
        Ok(checked)
    }

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    fn edit(op: HeaderOp, name: &str, value: &str) -> HeaderEdit {
        HeaderEdit {
            op,
            name: name.into(),
            value: value.into(),
        }
    }

    fn pairs(headers: &[Header]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    String::from_utf8_lossy(&h.value).into_owned(),
                )
            })
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wire_edits_match_names_in_any_case_past_the_kept_names() {
        let mut map = HeaderMap::new();
        let mut edits: Vec<HeaderEdit> = (0..KEPT_NAMES + 8)
            .map(|i| edit(HeaderOp::Append, &format!("X-Name-{i}"), "1"))
            .collect();
        edits.push(edit(HeaderOp::Set, "x-NAME-0", "2"));
        edits.push(edit(HeaderOp::Remove, "X-NAME-39", ""));
        edits.push(edit(HeaderOp::Set, "content-type", "text/plain"));
        edits.push(edit(HeaderOp::Append, "Content-Type", "text/html"));
        // Twice: the second pass finds the first names kept.
        for _ in 0..2 {
            let wire = check_header_edits(&edits).expect("valid edits");
            apply_to_map(&mut map, &wire);
        }
        assert_eq!(map.get_all("x-name-0").iter().count(), 1);
        assert_eq!(map["x-name-0"], "2");
        assert_eq!(map.get_all("x-name-1").iter().count(), 2);
        assert_eq!(map.get_all("x-name-38").iter().count(), 2);
        assert!(!map.contains_key("x-name-39"));
        let types: Vec<_> = map.get_all("content-type").iter().collect();
        assert_eq!(types, ["text/plain", "text/html"]);
    }

    #[test]
    fn set_replaces_every_field_of_the_name_in_place_of_the_first() {
        let mut headers = vec![
            h("accept", "*/*"),
            h("x-tag", "a"),
            h("host", "example.com"),
            h("x-tag", "b"),
        ];
        apply_header_edits(&mut headers, &[edit(HeaderOp::Set, "X-Tag", "c")]).unwrap();
        assert_eq!(
            pairs(&headers),
            owned(&[("accept", "*/*"), ("x-tag", "c"), ("host", "example.com")])
        );
        apply_header_edits(&mut headers, &[edit(HeaderOp::Set, "X-New", "1")]).unwrap();
        assert_eq!(pairs(&headers).last(), Some(&("x-new".into(), "1".into())));
    }

    #[test]
    fn append_keeps_existing_fields_and_remove_drops_all_of_them() {
        let mut headers = vec![h("via", "1.1 a"), h("server", "nginx"), h("Server", "x")];
        apply_header_edits(
            &mut headers,
            &[
                edit(HeaderOp::Append, "Via", "1.1 tailgate"),
                edit(HeaderOp::Remove, "SERVER", "ignored\n"),
            ],
        )
        .unwrap();
        assert_eq!(
            pairs(&headers),
            owned(&[("via", "1.1 a"), ("via", "1.1 tailgate")])
        );
    }

    #[test]
    fn edits_apply_in_order() {
        let mut headers = vec![];
        apply_header_edits(
            &mut headers,
            &[
                edit(HeaderOp::Append, "x-a", "1"),
                edit(HeaderOp::Remove, "x-a", ""),
                edit(HeaderOp::Append, "x-a", "2"),
                edit(HeaderOp::Append, "x-a", "3"),
            ],
        )
        .unwrap();
        assert_eq!(pairs(&headers), owned(&[("x-a", "2"), ("x-a", "3")]));
    }

    #[test]
    fn an_invalid_edit_changes_nothing() {
        let mut headers = vec![h("x-a", "1")];
        let err = apply_header_edits(
            &mut headers,
            &[
                edit(HeaderOp::Remove, "x-a", ""),
                edit(HeaderOp::Set, "x-b", "line\r\nInjected: yes"),
            ],
        )
        .unwrap_err();
        assert_eq!(err, InvalidOutput::HeaderValue("x-b".into()));
        assert_eq!(pairs(&headers), owned(&[("x-a", "1")]));
        let err = apply_header_edits(&mut headers, &[edit(HeaderOp::Remove, "bad name", "")])
            .unwrap_err();
        assert_eq!(err, InvalidOutput::HeaderName("bad name".into()));
    }

    #[test]
    fn header_values_may_carry_obs_text_bytes() {
        let mut headers = vec![];
        let e = HeaderEdit {
            op: HeaderOp::Set,
            name: "x-latin1".into(),
            value: vec![b'c', 0xe9],
        };
        apply_header_edits(&mut headers, &[e]).unwrap();
        assert_eq!(headers[0].value, vec![b'c', 0xe9]);
    }

    fn head(path: &str, query: Option<&str>) -> RequestHead {
        RequestHead {
            host: Some("example.com".into()),
            path: Some(path.into()),
            query: query.map(Into::into),
            headers: Some(vec![]),
            route: Some("site".into()),
            request_id: Some("r1".into()),
            ..RequestHead::default()
        }
    }

    /// A path rewrite as the chain makes it: checked, then set.
    fn apply_path_rewrite(head: &mut RequestHead, target: &str) -> Result<(), InvalidOutput> {
        check_path(target)?;
        set_target(head, target);
        Ok(())
    }

    #[test]
    fn path_rewrites_keep_replace_or_drop_the_query() {
        let mut r = head("/old", Some("a=1"));
        apply_path_rewrite(&mut r, "/new").unwrap();
        assert_eq!((r.path(), r.query.as_deref()), ("/new", Some("a=1")));
        apply_path_rewrite(&mut r, "/newer?b=2").unwrap();
        assert_eq!((r.path(), r.query.as_deref()), ("/newer", Some("b=2")));
        apply_path_rewrite(&mut r, "/bare?").unwrap();
        assert_eq!((r.path(), r.query.as_deref()), ("/bare", None));
    }

    #[test]
    fn invalid_path_rewrites_are_refused() {
        for bad in ["relative", "", "/a b", "/a\r\nb", "/x#frag", "http://evil/"] {
            let mut r = head("/keep", None);
            assert_eq!(
                apply_path_rewrite(&mut r, bad),
                Err(InvalidOutput::Path(bad.into())),
                "{bad:?}"
            );
            assert_eq!(r.path(), "/keep");
        }
    }

    #[test]
    fn immediate_responses_need_a_real_status_and_valid_headers() {
        let mut resp = ImmediateResponse {
            status: 403,
            headers: vec![h("Content-Type", "text/plain")],
            body: b"no".to_vec(),
            vars: vec![],
        };
        check_immediate_response(&mut resp).unwrap();
        assert_eq!(resp.headers[0].name, "content-type");
        resp.status = 99;
        assert_eq!(
            check_immediate_response(&mut resp),
            Err(InvalidOutput::Status(99))
        );
        resp.status = 200;
        resp.headers.push(h("x", "a\nb"));
        assert_eq!(
            check_immediate_response(&mut resp),
            Err(InvalidOutput::HeaderValue("x".into()))
        );
    }
}
