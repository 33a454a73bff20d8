//! The header fields a plugin reads, as it declared them in `configure`
//! (`plugin-info`): before each hook call the runtime narrows the header
//! lists of the call's arguments to those fields and puts the full lists
//! back afterwards, so what a plugin does not read is never copied into
//! its memory (each field copied costs two guest allocations).

use crate::bindings::types::{Header, HeaderFilter, PluginInfo};

/// A plugin's `plugin-info` with the filter names lower-cased (the host's
/// header lists are lower case; a guest may have written `X-Api-Key`).
pub(crate) fn normalised(mut info: PluginInfo) -> PluginInfo {
    for filter in [&mut info.request_headers, &mut info.response_headers] {
        if let HeaderFilter::Only(names) = filter {
            for name in names.iter_mut() {
                name.make_ascii_lowercase();
            }
            names.sort_unstable();
            names.dedup();
        }
    }
    info
}

/// The full list a call narrowed, to put back with [`restore`].
#[must_use = "the full header list must be put back with `restore`"]
pub(crate) struct Saved(Option<Vec<Header>>);

/// Leave in `headers` only the fields `filter` lets through; returns the
/// full list. Nothing is copied for [`HeaderFilter::All`] or when no field
/// is asked for.
pub(crate) fn narrow(filter: &HeaderFilter, headers: &mut Vec<Header>) -> Saved {
    match filter {
        HeaderFilter::All => Saved(None),
        HeaderFilter::Only(names) => {
            let all = std::mem::take(headers);
            if !names.is_empty() {
                *headers = all
                    .iter()
                    .filter(|h| names.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
                    .cloned()
                    .collect();
            }
            Saved(Some(all))
        }
    }
}

/// Put back the list [`narrow`] took out.
pub(crate) fn restore(headers: &mut Vec<Header>, saved: Saved) {
    if let Some(all) = saved.0 {
        *headers = all;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::HookSet;

    fn list(names: &[&str]) -> Vec<Header> {
        names
            .iter()
            .map(|n| Header {
                name: (*n).to_string(),
                value: b"v".to_vec(),
            })
            .collect()
    }

    fn names(headers: &[Header]) -> Vec<&str> {
        headers.iter().map(|h| h.name.as_str()).collect()
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
        assert_eq!(headers.len(), 2);
        restore(&mut headers, saved);
        let saved = narrow(&HeaderFilter::Only(Vec::new()), &mut headers);
        assert!(headers.is_empty());
        restore(&mut headers, saved);
        assert_eq!(names(&headers), ["host", "accept"]);
    }

    #[test]
    fn names_are_lower_cased_once() {
        let info = normalised(PluginInfo {
            hooks: HookSet::REQUEST,
            request_headers: HeaderFilter::Only(vec!["X-Api-Key".into(), "x-api-key".into()]),
            response_headers: HeaderFilter::All,
        });
        match info.request_headers {
            HeaderFilter::Only(names) => assert_eq!(names, ["x-api-key"]),
            HeaderFilter::All => panic!("the filter became `all`"),
        }
    }
}
