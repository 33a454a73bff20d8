//! Test support for plugin crates (feature `testing`, used from
//! `[dev-dependencies]`): a request head as the host hands one over; a
//! head, response or log record cut down to what a plugin declared (the
//! fields and header fields the host would leave out, as the SDK hands them
//! to the hooks), so a test can check that a hook reads nothing it did not
//! declare; and the per-route configs of one plugin found in a TOML
//! document or in the ```toml blocks of a Markdown page, each as JSON, the
//! way the host passes `[routes.plugins.config]` to `configure`. Lets a
//! plugin test every config its docs show.

use crate::bindings::tailgate::plugin::types as wit;
use std::net::IpAddr;

use crate::template::Template;
use crate::{
    wit_ip, Field, FixedEdit, Header, HeaderEdit, HeaderFilter, HeaderOp, LogFieldSet, LogRecord,
    Method, RequestFieldSet, RequestHead, ResponseHead, Scheme,
};

/// What the host makes of `edits` (a plugin's fixed edits) for `req`:
/// each value's placeholders rendered as [`Template::render`] renders
/// them, removals with an empty value. The host's own renderer is checked
/// against the same output by its tests and the plugin cases.
pub fn rendered_fixed(edits: &[FixedEdit], req: &RequestHead) -> Vec<HeaderEdit> {
    edits
        .iter()
        .map(|edit| HeaderEdit {
            op: edit.op,
            name: edit.name.clone(),
            value: match edit.op {
                HeaderOp::Remove => Vec::new(),
                _ => Template::from_value_parts(&edit.value).render(req),
            },
        })
        .collect()
}

/// A request as the host would hand it over: `https://example.com`, a
/// curl user agent, two cookies and two `X-Forwarded-For` headers, client
/// `203.0.113.7`, route `site`.
pub fn request_head(method: &str, path: &str, query: Option<&str>) -> RequestHead {
    RequestHead {
        method: Method::from_name(method),
        scheme: Scheme::Https,
        client_ip: IpAddr::from([203, 0, 113, 7]),
        host: "example.com".into(),
        path: path.into(),
        query: query.map(str::to_owned).into(),
        headers: vec![
            Header::new("user-agent", "curl/8.5"),
            Header::new("cookie", "a=1"),
            Header::new("x-forwarded-for", "10.0.0.1"),
            Header::new("cookie", "b=2"),
            Header::new("x-forwarded-for", "10.0.0.2"),
        ],
        route: "site".into(),
        request_id: "01HZX".into(),
    }
}

/// [`request_head`] with `method` and `path`, no query, and these header
/// fields (names as given: the host hands them in lower case) in place of
/// its own.
pub fn request_with_headers(method: &str, path: &str, headers: &[(&str, &[u8])]) -> RequestHead {
    RequestHead {
        headers: headers
            .iter()
            .map(|(name, value)| Header::new(*name, *value))
            .collect(),
        ..request_head(method, path, None)
    }
}

/// `req` as a plugin that declared `fields` ([`Plugin::request_fields`])
/// and `headers` ([`Plugin::request_headers`]) gets it: the fields it left
/// out empty (`query`: `None`), the header fields it left out gone. A hook
/// must answer this exactly as it answers `req`.
///
/// [`Plugin::request_fields`]: crate::Plugin::request_fields
/// [`Plugin::request_headers`]: crate::Plugin::request_headers
pub fn narrowed_request(
    req: &RequestHead,
    fields: RequestFieldSet,
    headers: &HeaderFilter,
) -> RequestHead {
    let keep = |flag: RequestFieldSet, value: &Field<String>| {
        fields
            .contains(flag)
            .then(|| value.get().cloned().unwrap_or_default())
    };
    RequestHead::from_wit(
        wit::RequestHead {
            method: req.method.clone(),
            scheme: req.scheme,
            client_ip: wit_ip(req.client_ip),
            host: keep(RequestFieldSet::HOST, &req.host),
            path: keep(RequestFieldSet::PATH, &req.path),
            query: req
                .query
                .get()
                .cloned()
                .flatten()
                .filter(|_| fields.contains(RequestFieldSet::QUERY)),
            headers: narrowed_headers(&req.headers, headers),
            route: keep(RequestFieldSet::ROUTE, &req.route),
            request_id: keep(RequestFieldSet::REQUEST_ID, &req.request_id),
        },
        fields,
    )
}

/// `resp` as a plugin that declared `headers`
/// ([`Plugin::response_headers`](crate::Plugin::response_headers)) gets it.
pub fn narrowed_response(resp: &ResponseHead, headers: &HeaderFilter) -> ResponseHead {
    ResponseHead::from(wit::ResponseHead {
        status: resp.status,
        headers: narrowed_headers(&resp.headers, headers),
        host_generated: resp.host_generated,
    })
}

/// `rec` as a plugin that declared `fields`
/// ([`Plugin::log_fields`](crate::Plugin::log_fields)) and the two header
/// filters gets it: the text fields it left out empty (`upstream_addr`:
/// `None`), vars and header fields it left out gone; numbers and the
/// status always come.
pub fn narrowed_log_record(
    rec: &LogRecord,
    fields: LogFieldSet,
    request_headers: &HeaderFilter,
    response_headers: &HeaderFilter,
) -> LogRecord {
    let keep = |flag: LogFieldSet, value: &Field<String>| {
        fields
            .contains(flag)
            .then(|| value.get().cloned().unwrap_or_default())
    };
    LogRecord::from_wit(
        wit::LogRecord {
            time_unix_ms: rec.time_unix_ms,
            client_ip: wit_ip(rec.client_ip),
            peer_ip: wit_ip(rec.peer_ip),
            peer_port: rec.peer_port,
            method: rec.method.clone(),
            scheme: rec.scheme,
            protocol: rec.protocol,
            status: rec.status,
            bytes_sent: rec.bytes_sent,
            bytes_received: rec.bytes_received,
            request_time: rec.request_time,
            upstream_response_time: rec.upstream_response_time,
            cache_status: rec.cache_status,
            host: keep(LogFieldSet::HOST, &rec.host),
            uri: keep(LogFieldSet::URI, &rec.uri),
            upstream_addr: rec
                .upstream_addr
                .get()
                .cloned()
                .flatten()
                .filter(|_| fields.contains(LogFieldSet::UPSTREAM_ADDR)),
            route: keep(LogFieldSet::ROUTE, &rec.route),
            request_id: keep(LogFieldSet::REQUEST_ID, &rec.request_id),
            user_agent: keep(LogFieldSet::USER_AGENT, &rec.user_agent),
            referer: keep(LogFieldSet::REFERER, &rec.referer),
            http_host: keep(LogFieldSet::HTTP_HOST, &rec.http_host),
            request_headers: narrowed_headers(&rec.request_headers, request_headers),
            response_headers: narrowed_headers(&rec.response_headers, response_headers),
            vars: fields
                .contains(LogFieldSet::VARS)
                .then(|| rec.vars.get().cloned().unwrap_or_default()),
            path: keep(LogFieldSet::PATH, &rec.path),
        },
        fields,
    )
}

/// The header fields `filter` lets through, `None` when it lets none
/// through (the contract's shape).
fn narrowed_headers(headers: &[Header], filter: &HeaderFilter) -> Option<Vec<Header>> {
    if *filter == HeaderFilter::none() {
        return None;
    }
    Some(
        headers
            .iter()
            .filter(|header| filter.lets_through(&header.name))
            .cloned()
            .collect(),
    )
}

/// A hook reads exactly the fields it declares: `run` (the hook on inputs
/// narrowed to a field set, e.g. with [`narrowed_request`]) gives the same
/// result from `declared` as from `all` (reading a field it did not declare
/// panics, see [`Field`]), and with any declared field left out it reads
/// that field (it panics) or answers differently. Panics naming `what`
/// (the config) otherwise.
pub fn assert_reads_exactly<F, T>(declared: F, all: F, run: impl Fn(F) -> T, what: &str)
where
    F: Copy + std::fmt::Debug + std::ops::Sub<Output = F> + IntoIterator<Item = F>,
    T: PartialEq + std::fmt::Debug,
{
    let attempt =
        |fields: F| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(fields))).ok();
    let full = run(all);
    match attempt(declared) {
        Some(got) => assert_eq!(got, full, "reads undeclared fields: {what}"),
        None => panic!("reads a field it does not declare (see the panic above): {what}"),
    }
    for flag in declared {
        if let Some(got) = attempt(declared - flag) {
            assert_ne!(got, full, "declares {flag:?} but never reads it: {what}");
        }
    }
}

#[cfg(feature = "testing")]
/// A file of the repository, by its path from the root; `manifest_dir` is
/// the calling crate's `env!("CARGO_MANIFEST_DIR")` (a crate under
/// `plugins/`). Panics with the path when it cannot be read.
pub fn repo_file(manifest_dir: &str, path: &str) -> String {
    let full = format!("{manifest_dir}/../../{path}");
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("read {full}: {err}"))
}

#[cfg(feature = "testing")]
/// The config tables (as JSON) of every `plugin = "<plugin>"` entry in a
/// TOML document, at any depth, each laid over the document's
/// `[plugins.<plugin>] config` as the proxy lays it (a key the entry gives
/// replaces the plugin-level value whole); an entry without `config` gives
/// the plugin-level one, or `{}`. Panics when `document` is not valid TOML.
pub fn plugin_configs(document: &str, plugin: &str) -> Vec<String> {
    let value: toml::Value =
        toml::from_str(document).unwrap_or_else(|err| panic!("not valid TOML: {err}\n{document}"));
    let base = value
        .get("plugins")
        .and_then(|plugins| plugins.get(plugin))
        .and_then(|entry| entry.get("config"))
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    collect(&value, plugin, &base, &mut out);
    out
}

#[cfg(feature = "testing")]
/// [`plugin_configs`] over every ```toml block of a Markdown page; every
/// block must be valid TOML.
pub fn documented_configs(markdown: &str, plugin: &str) -> Vec<String> {
    markdown
        .split("```toml\n")
        .skip(1)
        .flat_map(|block| plugin_configs(block.split("```").next().unwrap_or_default(), plugin))
        .collect()
}

#[cfg(feature = "testing")]
fn collect(value: &toml::Value, plugin: &str, base: &toml::Table, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            if table.get("plugin").and_then(|p| p.as_str()) == Some(plugin) {
                let mut config = base.clone();
                if let Some(own) = table.get("config").and_then(toml::Value::as_table) {
                    config.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                out.push(serde_json::to_string(&config).expect("TOML values are JSON values"));
            }
            table.values().for_each(|v| collect(v, plugin, base, out));
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect(v, plugin, base, out)),
        _ => {}
    }
}

#[cfg(test)]
mod narrowing_tests {
    use super::*;

    #[test]
    fn a_narrowed_request_keeps_only_what_was_declared() {
        let req = request_head("POST", "/a", Some("x=1"));
        assert_eq!(
            narrowed_request(&req, RequestFieldSet::all(), &HeaderFilter::All),
            req
        );
        let narrowed =
            narrowed_request(&req, RequestFieldSet::PATH, &HeaderFilter::only(["Cookie"]));
        // The method, scheme and client address always come; the text
        // fields left out are not asked for (reading one panics).
        assert_eq!(
            narrowed,
            RequestHead {
                method: Method::Post,
                scheme: Scheme::Https,
                client_ip: IpAddr::from([203, 0, 113, 7]),
                path: "/a".into(),
                headers: vec![Header::new("cookie", "a=1"), Header::new("cookie", "b=2")],
                host: Field::not_asked("RequestFieldSet::HOST"),
                query: Field::not_asked("RequestFieldSet::QUERY"),
                route: Field::not_asked("RequestFieldSet::ROUTE"),
                request_id: Field::not_asked("RequestFieldSet::REQUEST_ID"),
            }
        );
        let query_only = narrowed_request(&req, RequestFieldSet::QUERY, &HeaderFilter::none());
        assert_eq!(query_only.query.as_deref(), Some("x=1"));
        assert!(query_only.headers.is_empty() && !query_only.path.is_asked());
    }

    #[test]
    fn a_narrowed_response_keeps_only_the_declared_headers() {
        let resp = ResponseHead {
            status: 502,
            headers: vec![Header::new("server", "x"), Header::new("vary", "a")],
            host_generated: true,
        };
        let narrowed = narrowed_response(&resp, &HeaderFilter::only(["vary"]));
        assert_eq!((narrowed.status, narrowed.host_generated), (502, true));
        assert_eq!(narrowed.headers, vec![Header::new("vary", "a")]);
    }

    #[test]
    fn a_narrowed_log_record_keeps_only_what_was_declared() {
        let rec = LogRecord {
            time_unix_ms: 7,
            peer_ip: IpAddr::from([10, 0, 0, 2]),
            peer_port: 5555,
            uri: "/a?b".into(),
            status: 404,
            bytes_sent: 9,
            upstream_addr: Some("10.0.0.9:80".to_owned()).into(),
            user_agent: "curl".into(),
            request_headers: vec![Header::new("host", "h")],
            vars: vec![crate::Var::new("a", "1")].into(),
            ..LogRecord::default()
        };
        let all = narrowed_log_record(
            &rec,
            LogFieldSet::all(),
            &HeaderFilter::All,
            &HeaderFilter::All,
        );
        assert_eq!(all, rec);
        let narrowed = narrowed_log_record(
            &rec,
            LogFieldSet::URI | LogFieldSet::VARS,
            &HeaderFilter::none(),
            &HeaderFilter::All,
        );
        assert_eq!(
            narrowed,
            LogRecord {
                time_unix_ms: 7,
                peer_ip: IpAddr::from([10, 0, 0, 2]),
                peer_port: 5555,
                uri: "/a?b".into(),
                status: 404,
                bytes_sent: 9,
                vars: vec![crate::Var::new("a", "1")].into(),
                host: Field::not_asked("LogFieldSet::HOST"),
                upstream_addr: Field::not_asked("LogFieldSet::UPSTREAM_ADDR"),
                route: Field::not_asked("LogFieldSet::ROUTE"),
                request_id: Field::not_asked("LogFieldSet::REQUEST_ID"),
                user_agent: Field::not_asked("LogFieldSet::USER_AGENT"),
                referer: Field::not_asked("LogFieldSet::REFERER"),
                http_host: Field::not_asked("LogFieldSet::HTTP_HOST"),
                path: Field::not_asked("LogFieldSet::PATH"),
                ..LogRecord::default()
            }
        );
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[test]
    fn finds_each_entry_of_the_plugin_at_any_depth() {
        let doc = r#"
[[routes]]
name = "a"
[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
limits = [{ zone = "z", rate = "1r/s" }]
[[routes.plugins]]
plugin = "other"
[[routes]]
name = "b"
[[routes.plugins]]
plugin = "rate-limit"
"#;
        assert_eq!(
            plugin_configs(doc, "rate-limit"),
            vec![r#"{"limits":[{"rate":"1r/s","zone":"z"}]}"#, "{}"]
        );
        let page = format!("text\n```toml\n{doc}```\nmore\n```toml\n[x]\n```\n");
        assert_eq!(documented_configs(&page, "rate-limit").len(), 2);
    }

    #[test]
    #[should_panic(expected = "not valid TOML")]
    fn a_broken_block_fails_the_test() {
        documented_configs("```toml\nkey = = 1\n```\n", "any");
    }
}
