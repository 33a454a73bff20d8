//! The record fields a plugin reads, as it declared them in `configure`
//! (`plugin-info.request-fields`, `log-fields`): before each hook call the
//! runtime takes the other text fields, and the empty ones, out of the
//! call's `request-head` or `log-record` (they cross as `none`) and puts
//! them back afterwards. Every string copied into a guest is a guest
//! allocation, entered from the host (~450 instructions each, an empty one
//! too), so a plugin that reads two fields of nine pays for two. Header
//! lists are narrowed by [`crate::header_filter`].

use crate::bindings::types::{LogFieldSet, LogRecord, RequestFieldSet, RequestHead, Var};

/// The request-head text fields in `request-field-set` order.
const REQUEST_FIELDS: [RequestFieldSet; 5] = [
    RequestFieldSet::HOST,
    RequestFieldSet::PATH,
    RequestFieldSet::QUERY,
    RequestFieldSet::ROUTE,
    RequestFieldSet::REQUEST_ID,
];

fn request_slots(req: &mut RequestHead) -> [&mut Option<String>; 5] {
    [
        &mut req.host,
        &mut req.path,
        &mut req.query,
        &mut req.route,
        &mut req.request_id,
    ]
}

/// The log-record text fields in `log-field-set` order (`vars` apart).
const LOG_FIELDS: [LogFieldSet; 9] = [
    LogFieldSet::HOST,
    LogFieldSet::URI,
    LogFieldSet::UPSTREAM_ADDR,
    LogFieldSet::ROUTE,
    LogFieldSet::REQUEST_ID,
    LogFieldSet::USER_AGENT,
    LogFieldSet::REFERER,
    LogFieldSet::HTTP_HOST,
    LogFieldSet::PATH,
];

fn log_slots(rec: &mut LogRecord) -> [&mut Option<String>; 9] {
    [
        &mut rec.host,
        &mut rec.uri,
        &mut rec.upstream_addr,
        &mut rec.route,
        &mut rec.request_id,
        &mut rec.user_agent,
        &mut rec.referer,
        &mut rec.http_host,
        &mut rec.path,
    ]
}

/// The request fields a call took out, to put back with
/// [`restore_request`]. Taking and putting back moves the strings; nothing
/// is copied.
#[must_use = "the taken fields must be put back with `restore_request`"]
pub(crate) struct SavedRequest([Option<String>; 5]);

/// Take out of `req` the text fields `keep` does not name, and the empty ones.
pub(crate) fn narrow_request(keep: RequestFieldSet, req: &mut RequestHead) -> SavedRequest {
    let mut saved = SavedRequest(Default::default());
    for ((slot, flag), out) in request_slots(req)
        .into_iter()
        .zip(REQUEST_FIELDS)
        .zip(saved.0.iter_mut())
    {
        if !keep.contains(flag) || is_empty(slot) {
            *out = slot.take();
        }
    }
    saved
}

fn is_empty(field: &Option<String>) -> bool {
    field.as_deref() == Some("")
}

/// Put back what [`narrow_request`] took out.
pub(crate) fn restore_request(req: &mut RequestHead, saved: SavedRequest) {
    for (slot, field) in request_slots(req).into_iter().zip(saved.0) {
        if field.is_some() {
            *slot = field;
        }
    }
}

/// The log fields a call took out, to put back with [`restore_log`].
#[must_use = "the taken fields must be put back with `restore_log`"]
pub(crate) struct SavedLog([Option<String>; 9], Option<Vec<Var>>);

/// Take out of `rec` the text fields and vars `keep` does not name, and the
/// empty ones.
pub(crate) fn narrow_log(keep: LogFieldSet, rec: &mut LogRecord) -> SavedLog {
    let mut saved = SavedLog(Default::default(), None);
    for ((slot, flag), out) in log_slots(rec)
        .into_iter()
        .zip(LOG_FIELDS)
        .zip(saved.0.iter_mut())
    {
        if !keep.contains(flag) || is_empty(slot) {
            *out = slot.take();
        }
    }
    if !keep.contains(LogFieldSet::VARS) || rec.vars.as_ref().is_some_and(Vec::is_empty) {
        saved.1 = rec.vars.take();
    }
    saved
}

/// Put back what [`narrow_log`] took out.
pub(crate) fn restore_log(rec: &mut LogRecord, saved: SavedLog) {
    for (slot, field) in log_slots(rec).into_iter().zip(saved.0) {
        if field.is_some() {
            *slot = field;
        }
    }
    if saved.1.is_some() {
        rec.vars = saved.1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{CacheStatus, IpAddress, Method, Protocol, Scheme};

    fn head() -> RequestHead {
        let text = |s: &str| Some(s.to_owned());
        RequestHead {
            method: Method::Get,
            scheme: Scheme::Https,
            host: text("example.com"),
            path: text("/a"),
            query: text("q=1"),
            headers: Some(Vec::new()),
            client_ip: IpAddress::V4(0xCB00_7107),
            route: text("site"),
            request_id: text("r-1"),
        }
    }

    #[test]
    fn only_the_named_request_fields_cross_then_all_come_back() {
        let mut req = head();
        let saved = narrow_request(RequestFieldSet::PATH, &mut req);
        let mut only = RequestHead {
            host: None,
            query: None,
            route: None,
            request_id: None,
            ..head()
        };
        assert_eq!(req, only);
        restore_request(&mut req, saved);
        assert_eq!(req, head());

        let saved = narrow_request(RequestFieldSet::empty(), &mut req);
        only.path = None;
        assert_eq!(req, only);
        restore_request(&mut req, saved);
        assert_eq!(req, head());
    }

    #[test]
    fn an_absent_query_stays_absent() {
        let mut req = RequestHead {
            query: None,
            ..head()
        };
        let saved = narrow_request(RequestFieldSet::HOST, &mut req);
        restore_request(&mut req, saved);
        assert_eq!(
            req,
            RequestHead {
                query: None,
                ..head()
            }
        );
    }

    #[test]
    fn log_fields_and_vars_are_taken_and_put_back() {
        let text = |s: &str| Some(s.to_owned());
        let full = LogRecord {
            time_unix_ms: 1,
            client_ip: IpAddress::V4(0xCB00_7107),
            peer_ip: IpAddress::V4(0xCB00_7107),
            peer_port: 5000,
            method: Method::Get,
            scheme: Scheme::Http,
            protocol: Protocol::Http11,
            host: text("example.com"),
            uri: text("/a?q=1"),
            status: 200,
            bytes_sent: 2,
            bytes_received: 3,
            request_time: 0.5,
            upstream_response_time: Some(0.25),
            upstream_addr: text("10.0.0.1:80"),
            cache_status: Some(CacheStatus::Miss),
            route: text("site"),
            request_id: text("r-1"),
            user_agent: text("curl/8"),
            referer: text(""),
            http_host: text("example.com:8080"),
            path: text("/a"),
            request_headers: Some(Vec::new()),
            response_headers: None,
            vars: Some(vec![Var {
                name: "a".into(),
                value: "b".into(),
            }]),
        };
        let mut rec = full.clone();
        let saved = narrow_log(LogFieldSet::URI | LogFieldSet::USER_AGENT, &mut rec);
        let present: Vec<bool> = log_slots(&mut rec).iter().map(|s| s.is_some()).collect();
        assert_eq!(
            present,
            [false, true, false, false, false, true, false, false, false]
        );
        assert_eq!(rec.vars, None);
        assert_eq!(
            (rec.status, rec.bytes_sent, rec.upstream_response_time),
            (200, 2, Some(0.25))
        );
        restore_log(&mut rec, saved);
        assert_eq!(rec, full);

        // Everything asked for: only the empty referer stays home.
        let saved = narrow_log(LogFieldSet::all(), &mut rec);
        assert_eq!(
            rec,
            LogRecord {
                referer: None,
                ..full.clone()
            }
        );
        restore_log(&mut rec, saved);
        assert_eq!(rec, full);

        // An empty vars list stays home too.
        rec.vars = Some(Vec::new());
        let saved = narrow_log(LogFieldSet::all(), &mut rec);
        assert_eq!(rec.vars, None);
        restore_log(&mut rec, saved);
        assert_eq!(rec.vars, Some(Vec::new()));
    }

    #[test]
    fn empty_request_fields_cross_as_none() {
        let mut req = RequestHead {
            route: Some(String::new()),
            ..head()
        };
        let saved = narrow_request(RequestFieldSet::all(), &mut req);
        assert_eq!(
            req,
            RequestHead {
                route: None,
                ..head()
            }
        );
        restore_request(&mut req, saved);
        assert_eq!(req.route.as_deref(), Some(""));
    }
}
