//! The request conditions of a route's cache (`bypass`, `no_store`): a
//! request header, cookie or query argument that is present, not empty and
//! not "0" (nginx `proxy_cache_bypass` / `proxy_no_cache`). The pipeline's
//! cache phase asks them of each request it takes.

use tailgate_runtime::RequestHead;

use super::key::cookie_value;
use crate::config::model::CacheCondition;

/// Whether a request condition holds: present, not empty, not "0".
pub fn matches_any(conditions: &[CacheCondition], head: &RequestHead) -> bool {
    let set = |value: Option<String>| value.is_some_and(|v| !v.is_empty() && v != "0");
    conditions.iter().any(|condition| match condition {
        CacheCondition::Header(name) => set(head
            .headers()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
            .map(|h| String::from_utf8_lossy(&h.value).into_owned())),
        CacheCondition::Cookie(name) => set(cookie_value(head, name)),
        CacheCondition::Query(name) => set(head.query.as_deref().and_then(|q| {
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, "1"));
                (k == name).then(|| v.to_owned())
            })
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(query: Option<&str>, headers: &[(&str, &str)]) -> RequestHead {
        crate::cache::key::tests::head("GET", "/", query, headers)
    }

    #[test]
    fn conditions_follow_nginx_rules() {
        let conditions = vec![
            CacheCondition::Header(http::HeaderName::from_static("x-refresh")),
            CacheCondition::Cookie("session".into()),
            CacheCondition::Query("nocache".into()),
        ];
        assert!(!matches_any(&conditions, &head(None, &[])));
        assert!(matches_any(&conditions, &head(None, &[("X-Refresh", "1")])));
        assert!(!matches_any(
            &conditions,
            &head(None, &[("x-refresh", "0")])
        ));
        assert!(!matches_any(&conditions, &head(None, &[("x-refresh", "")])));
        assert!(matches_any(
            &conditions,
            &head(None, &[("cookie", "a=b; session=xyz")])
        ));
        assert!(!matches_any(
            &conditions,
            &head(None, &[("cookie", "sessionx=1")])
        ));
        assert!(matches_any(&conditions, &head(Some("a=1&nocache=1"), &[])));
        assert!(matches_any(&conditions, &head(Some("nocache"), &[])));
        assert!(!matches_any(&conditions, &head(Some("nocache=0"), &[])));
    }
}
