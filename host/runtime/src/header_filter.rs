//! The header fields a plugin reads, as it declared them in `configure`
//! (`plugin-info`): before each hook call the runtime narrows the header
//! lists of the call's arguments to those fields and puts the full lists
//! back afterwards, so what a plugin does not read is never copied into
//! its memory (each field copied costs two guest allocations).

use crate::bindings::types::{Header, HeaderFilter, PluginInfo};

/// A plugin's `plugin-info` with the filter names lower-cased (the host's
/// header lists are lower case; a guest may have written `X-Api-Key`). The
/// fixed edits' names are lower-cased where they are parsed for the wire
/// ([`ChainedPlugin`](crate::ChainedPlugin)).
pub(crate) fn normalised(mut info: PluginInfo) -> PluginInfo {
    for filter in [&mut info.request_headers, &mut info.response_headers] {
        if let HeaderFilter::Only(names) = filter {
            for name in names.iter_mut() {
                name.make_ascii_lowercase();
            }
            sort_names(names);
        }
    }
    info
}

impl HeaderFilter {
    /// No header fields at all.
    pub fn none() -> HeaderFilter {
        HeaderFilter::Only(Vec::new())
    }

    /// The filter that lets through what either lets through (the fields
    /// a route's plugins read between them).
    pub fn union(self, other: HeaderFilter) -> HeaderFilter {
        match (self, other) {
            (HeaderFilter::Only(mut a), HeaderFilter::Only(b)) => {
                a.extend(b);
                sort_names(&mut a);
                HeaderFilter::Only(a)
            }
            _ => HeaderFilter::All,
        }
    }

    /// Whether a field named `name` (any case) is let through.
    pub fn lets_through(&self, name: &str) -> bool {
        match self {
            HeaderFilter::All => true,
            HeaderFilter::Only(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

fn sort_names(names: &mut Vec<String>) {
    names.sort_unstable();
    names.dedup();
}

/// The full list a call narrowed, to put back with [`restore`].
#[must_use = "the full header list must be put back with `restore`"]
pub(crate) struct Saved(Option<Option<Vec<Header>>>);

/// Leave in `headers` only the fields `filter` lets through (`none` when it
/// lets none through: nothing crosses); returns the full list. Nothing is
/// copied when every field passes already (the filter is `all`, or the
/// pipeline built the list with this filter) or when no field is asked for.
pub(crate) fn narrow(filter: &HeaderFilter, headers: &mut Option<Vec<Header>>) -> Saved {
    if matches!(filter, HeaderFilter::Only(names) if names.is_empty()) {
        return Saved(Some(headers.take()));
    }
    let Some(list) = headers else {
        return Saved(None);
    };
    if list.is_empty() {
        // An empty list crosses as `none`: lowering one costs an allocation.
        return Saved(Some(headers.take()));
    }
    if list.iter().all(|h| filter.lets_through(&h.name)) {
        return Saved(None);
    }
    let narrowed: Vec<Header> = list
        .iter()
        .filter(|h| filter.lets_through(&h.name))
        .cloned()
        .collect();
    if narrowed.is_empty() {
        return Saved(Some(headers.take()));
    }
    Saved(Some(headers.replace(narrowed)))
}

/// Put back the list [`narrow`] took out.
pub(crate) fn restore(headers: &mut Option<Vec<Header>>, saved: Saved) {
    if let Some(all) = saved.0 {
        *headers = all;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{FixedEdits, HookSet, LogFieldSet, RequestFieldSet};

    fn list(names: &[&str]) -> Option<Vec<Header>> {
        Some(
            names
                .iter()
                .map(|n| Header {
                    name: (*n).to_string(),
                    value: b"v".to_vec(),
                })
                .collect(),
        )
    }

    fn names(headers: &Option<Vec<Header>>) -> Vec<&str> {
        headers.iter().flatten().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn only_the_named_fields_pass_repeats_and_order_kept_then_all_come_back() {
        let mut headers = list(&["host", "cookie", "x-a", "cookie", "accept"]);
        let filter = HeaderFilter::Only(vec!["cookie".into(), "x-A".into()]);
        let saved = narrow(&filter, &mut headers);
        assert_eq!(names(&headers), ["cookie", "x-a", "cookie"]);
        restore(&mut headers, saved);
        assert_eq!(
            names(&headers),
            ["host", "cookie", "x-a", "cookie", "accept"]
        );
    }

    #[test]
    fn all_and_none() {
        let mut headers = list(&["host", "accept"]);
        let saved = narrow(&HeaderFilter::All, &mut headers);
        assert_eq!(names(&headers).len(), 2);
        restore(&mut headers, saved);
        let saved = narrow(&HeaderFilter::Only(Vec::new()), &mut headers);
        assert_eq!(headers, None);
        restore(&mut headers, saved);
        assert_eq!(names(&headers), ["host", "accept"]);
    }

    #[test]
    fn a_list_left_empty_crosses_as_none() {
        let mut headers = list(&["host", "accept"]);
        let saved = narrow(&HeaderFilter::Only(vec!["x-a".into()]), &mut headers);
        assert_eq!(headers, None);
        restore(&mut headers, saved);
        assert_eq!(names(&headers), ["host", "accept"]);
        let mut empty = list(&[]);
        let saved = narrow(&HeaderFilter::All, &mut empty);
        assert_eq!(empty, None);
        restore(&mut empty, saved);
        assert_eq!(empty, Some(Vec::new()));
    }

    #[test]
    fn names_are_lower_cased_once() {
        let info = normalised(PluginInfo {
            hooks: HookSet::REQUEST,
            request_headers: HeaderFilter::Only(vec!["X-Api-Key".into(), "x-api-key".into()]),
            response_headers: HeaderFilter::All,
            request_fields: RequestFieldSet::all(),
            log_fields: LogFieldSet::all(),
            fixed_edits: FixedEdits::none(),
            state_scope: crate::StateScope::Plugin,
            request_checks: crate::RequestChecks {
                checks: Vec::new(),
                passed: Vec::new(),
                client_bans: Vec::new(),
            },
            request_gate: crate::HookGate::every(),
            response_gate: crate::HookGate::every(),
            log_gate: crate::LogGate::every(),
        });
        match info.request_headers {
            HeaderFilter::Only(names) => assert_eq!(names, ["x-api-key"]),
            HeaderFilter::All => panic!("the filter became `all`"),
        }
    }
}
