//! What a test hands a plugin's hooks, built in a line or two: [`Request`]
//! (an `on-request` / `on-response` request head), [`Response`] (an
//! `on-response` head) and [`LogEntry`] (an `on-log` record). Defaults look
//! like a real request through the proxy; every field can be changed.

use std::net::IpAddr;

use tailgate_runtime::{
    CacheStatus, Header, IpAddress, LogRecord, Method, Protocol, RequestHead, ResponseHead, Scheme,
    Var,
};

/// Client address used when a test gives none (TEST-NET-3).
pub const DEFAULT_CLIENT_IP: &str = "203.0.113.7";
/// Host used when a test gives none.
pub const DEFAULT_HOST: &str = "example.com";

/// `text` as an address; a test that gives a bad one fails here, naming it.
fn ip(text: &str) -> IpAddress {
    match text.parse::<IpAddr>() {
        Ok(ip) => ip.into(),
        Err(_) => panic!("client_ip({text:?}): not an IP address"),
    }
}

fn header(name: &str, value: impl Into<Vec<u8>>) -> Header {
    Header {
        name: name.to_ascii_lowercase(),
        value: value.into(),
    }
}

/// A request head. The route is filled in with the plugin's route when the
/// test leaves it unset.
#[derive(Debug, Clone)]
pub struct Request {
    head: RequestHead,
    route_set: bool,
}

impl Request {
    /// `method path[?query]` to `https://example.com` from 203.0.113.7.
    pub fn new(method: &str, uri: &str) -> Self {
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (uri.to_owned(), None),
        };
        Request {
            head: RequestHead {
                method: Method::from_name(method),
                scheme: Scheme::Https,
                host: Some(DEFAULT_HOST.to_owned()),
                path: Some(path),
                query,
                headers: Some(Vec::new()),
                client_ip: ip(DEFAULT_CLIENT_IP),
                route: Some(String::new()),
                request_id: Some("req-1".to_owned()),
            },
            route_set: false,
        }
    }

    pub fn get(uri: &str) -> Self {
        Self::new("GET", uri)
    }

    pub fn post(uri: &str) -> Self {
        Self::new("POST", uri)
    }

    /// Adds a header field (the name is lower-cased, as the host does).
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.head
            .headers
            .get_or_insert_default()
            .push(header(name, value));
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        self.head.host = Some(host.to_ascii_lowercase());
        self
    }

    pub fn scheme(mut self, scheme: &str) -> Self {
        self.head.scheme = Scheme::from_text(scheme);
        self
    }

    pub fn client_ip(mut self, address: &str) -> Self {
        self.head.client_ip = ip(address);
        self
    }

    pub fn route(mut self, route: &str) -> Self {
        self.head.route = Some(route.to_owned());
        self.route_set = true;
        self
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.head.request_id = Some(id.to_owned());
        self
    }

    /// The head, with `route` filled in unless the test chose one.
    pub fn into_head(self, route: &str) -> RequestHead {
        let mut head = self.head;
        if !self.route_set {
            head.route = Some(route.to_owned());
        }
        head
    }
}

impl From<RequestHead> for Request {
    fn from(head: RequestHead) -> Self {
        Request {
            head,
            route_set: true,
        }
    }
}

/// A response head, from the upstream unless marked host-generated.
#[derive(Debug, Clone)]
pub struct Response {
    head: ResponseHead,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            head: ResponseHead {
                status,
                headers: Some(Vec::new()),
                host_generated: false,
            },
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.head
            .headers
            .get_or_insert_default()
            .push(header(name, value));
        self
    }

    /// Made by the host itself (upstream down, timeout, plugin failure).
    pub fn host_generated(mut self) -> Self {
        self.head.host_generated = true;
        self
    }

    pub fn into_head(self) -> ResponseHead {
        self.head
    }
}

impl From<ResponseHead> for Response {
    fn from(head: ResponseHead) -> Self {
        Response { head }
    }
}

/// An `on-log` record: a finished `GET /` answered 200 in 12 ms by default,
/// timed at the harness clock.
#[derive(Debug, Clone)]
pub struct LogEntry {
    record: LogRecord,
    route_set: bool,
    time_set: bool,
}

impl LogEntry {
    pub fn new(method: &str, uri: &str, status: u16) -> Self {
        LogEntry {
            record: LogRecord {
                time_unix_ms: 0,
                client_ip: ip(DEFAULT_CLIENT_IP),
                peer_ip: ip(DEFAULT_CLIENT_IP),
                peer_port: 51234,
                method: Method::from_name(method),
                scheme: Scheme::Https,
                host: Some(DEFAULT_HOST.to_owned()),
                uri: Some(uri.to_owned()),
                protocol: Protocol::Http11,
                status,
                bytes_sent: 0,
                bytes_received: 0,
                request_time: 0.012,
                upstream_response_time: None,
                upstream_addr: None,
                cache_status: None,
                route: Some(String::new()),
                request_id: Some("req-1".to_owned()),
                user_agent: Some(String::new()),
                referer: Some(String::new()),
                http_host: Some(String::new()),
                request_headers: Some(Vec::new()),
                response_headers: Some(Vec::new()),
                vars: Some(Vec::new()),
                path: Some(logged_path(uri)),
            },
            route_set: false,
            time_set: false,
        }
    }

    pub fn get(uri: &str) -> Self {
        Self::new("GET", uri, 200)
    }

    pub fn status(mut self, status: u16) -> Self {
        self.record.status = status;
        self
    }

    pub fn client_ip(mut self, address: &str) -> Self {
        self.record.client_ip = ip(address);
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        self.record.host = Some(host.to_owned());
        self
    }

    pub fn route(mut self, route: &str) -> Self {
        self.record.route = Some(route.to_owned());
        self.route_set = true;
        self
    }

    pub fn scheme(mut self, scheme: &str) -> Self {
        self.record.scheme = Scheme::from_text(scheme);
        self
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.record.request_id = Some(id.to_owned());
        self
    }

    /// e.g. `HTTP/2.0`.
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.record.protocol = Protocol::from_text(protocol)
            .unwrap_or_else(|| panic!("protocol({protocol:?}): HTTP/1.0, HTTP/1.1 or HTTP/2.0"));
        self
    }

    pub fn bytes_received(mut self, bytes: u64) -> Self {
        self.record.bytes_received = bytes;
        self
    }

    pub fn bytes_sent(mut self, bytes: u64) -> Self {
        self.record.bytes_sent = bytes;
        self
    }

    pub fn request_time(mut self, seconds: f64) -> Self {
        self.record.request_time = seconds;
        self
    }

    /// An upstream answered: its address and time to response headers.
    pub fn upstream(mut self, addr: &str, seconds: f64) -> Self {
        self.record.upstream_addr = Some(addr.to_owned());
        self.record.upstream_response_time = Some(seconds);
        self
    }

    pub fn cache_status(mut self, status: &str) -> Self {
        self.record.cache_status = Some(
            CacheStatus::from_text(status)
                .unwrap_or_else(|| panic!("cache_status({status:?}): not a cache status")),
        );
        self
    }

    /// A request header; `user-agent`, `referer` and `host` also fill
    /// their fields (`host` the record's `http-host`).
    pub fn request_header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "user-agent" => self.record.user_agent = Some(value.to_owned()),
            "referer" => self.record.referer = Some(value.to_owned()),
            "host" => self.record.http_host = Some(value.to_owned()),
            _ => {}
        }
        self.record
            .request_headers
            .get_or_insert_default()
            .push(header(&name, value));
        self
    }

    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        self.record
            .response_headers
            .get_or_insert_default()
            .push(header(name, value));
        self
    }

    /// A var an earlier hook set (e.g. `limit_req_status`).
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.record.vars.get_or_insert_default().push(Var {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Request start, Unix epoch milliseconds (default: the harness clock).
    pub fn time_unix_ms(mut self, ms: u64) -> Self {
        self.record.time_unix_ms = ms;
        self.time_set = true;
        self
    }

    /// The record, with the route, (unless set) the time and (unless a
    /// `host` header was given) `http-host` filled in.
    pub fn into_record(self, route: &str, now_ms: u64) -> LogRecord {
        let mut record = self.record;
        if !self.route_set {
            record.route = Some(route.to_owned());
        }
        if !self.time_set {
            record.time_unix_ms = now_ms;
        }
        // No Host header given: the routed host, as the proxy fills it.
        if record.http_host.as_deref().is_none_or(str::is_empty) {
            record.http_host = record.host.clone();
        }
        record
    }
}

/// The record's `path` for `uri` as the proxy fills it: the path
/// normalised, or as given when it cannot be.
fn logged_path(uri: &str) -> String {
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    tailgate_runtime::request_path::normalize(path)
        .map_or_else(|_| path.to_owned(), |p| p.into_owned())
}

impl From<LogRecord> for LogEntry {
    fn from(record: LogRecord) -> Self {
        LogEntry {
            record,
            route_set: true,
            time_set: true,
        }
    }
}

/// `2025-01-01T00:00:00.000Z` for Unix epoch milliseconds, as the host
/// formats the log record's `time`.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_735_689_600_000),
            "2025-01-01T00:00:00.000Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(4_107_542_399_999),
            "2100-02-28T23:59:59.999Z"
        );
    }

    #[test]
    fn request_splits_the_query_and_takes_the_plugins_route() {
        let head = Request::get("/a?b=1").header("X-Key", "k").into_head("api");
        assert_eq!((head.path(), head.query.as_deref()), ("/a", Some("b=1")));
        assert_eq!(head.headers()[0].name, "x-key");
        assert_eq!(head.route(), "api");
        let head = Request::get("/").route("other").into_head("api");
        assert_eq!(head.route(), "other");
    }
}
