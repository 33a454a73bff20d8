//! Chain semantics with scripted plugins: order, edits between plugins,
//! immediate responses, fail policies, hook skipping and log shaping. This
//! module holds the scripted plugin and the records the tests build; the
//! request side's tests are in `request`, the response and log sides' in
//! `response_and_log`, fixed edits in `fixed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailgate_runtime::{
    FixedEdit, FixedEdits, Header, HeaderEdit, HeaderOp, HookSet, ImmediateResponse, IpAddress,
    LogLine, LogRecord, LogVerdict, PluginFault, RequestAction, RequestEdits, RequestHead,
    ResponseEdits, ResponseHead, Scheme, ValuePart, Var,
};

use super::*;

type Calls = Arc<Mutex<Vec<String>>>;
type RequestScript = Box<dyn Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync>;
type ResponseScript =
    Box<dyn Fn(&ResponseHead) -> Result<ResponseEdits, PluginFault> + Send + Sync>;

/// A plugin whose hooks do what the test says and record what they saw.
struct Scripted {
    name: &'static str,
    hooks: HookSet,
    /// What `configure` would have declared as fixed edits.
    fixed: FixedEdits,
    calls: Calls,
    request: RequestScript,
    response: ResponseScript,
    log: Result<LogVerdict, PluginFault>,
}

impl Scripted {
    fn new(name: &'static str, hooks: HookSet, calls: &Calls) -> Scripted {
        Scripted {
            name,
            hooks,
            fixed: FixedEdits::none(),
            calls: calls.clone(),
            request: Box::new(|_| Ok(RequestAction::Continue(edits(vec![])))),
            response: Box::new(|_| Ok(ResponseEdits { headers: vec![] })),
            log: Ok(LogVerdict::Keep),
        }
    }

    fn on_request(
        mut self,
        f: impl Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync + 'static,
    ) -> Self {
        self.request = Box::new(f);
        self
    }

    fn on_response(
        mut self,
        f: impl Fn(&ResponseHead) -> Result<ResponseEdits, PluginFault> + Send + Sync + 'static,
    ) -> Self {
        self.response = Box::new(f);
        self
    }

    fn with_fixed(mut self, fixed: FixedEdits) -> Self {
        self.fixed = fixed;
        self
    }

    fn on_log(mut self, result: Result<LogVerdict, PluginFault>) -> Self {
        self.log = result;
        self
    }

    fn entry(self, policy: FailurePolicy) -> ChainEntry {
        ChainEntry::new(Box::new(self), policy).expect("valid fixed edits")
    }

    fn record(&self, what: String) {
        self.calls.lock().expect("calls lock").push(what);
    }
}

impl PluginHooks for Scripted {
    fn name(&self) -> &str {
        self.name
    }
    fn hooks(&self) -> HookSet {
        self.hooks
    }
    fn fixed_edits(&self) -> FixedEdits {
        self.fixed.clone()
    }
    fn on_request<'a>(&'a self, req: &'a mut RequestHead) -> HookCall<'a, RequestAction> {
        let tags: Vec<String> = req
            .headers()
            .iter()
            .filter(|h| h.name == "x-tag")
            .map(|h| String::from_utf8_lossy(&h.value).into_owned())
            .collect();
        self.record(format!(
            "{}:request path={} x-tag={:?}",
            self.name,
            req.path(),
            tags
        ));
        Box::pin(std::future::ready((self.request)(req)))
    }
    fn on_response<'a>(
        &'a self,
        _req: &'a mut RequestHead,
        resp: &'a mut ResponseHead,
    ) -> HookCall<'a, ResponseEdits> {
        self.record(format!(
            "{}:response headers={}",
            self.name,
            resp.headers().len()
        ));
        Box::pin(std::future::ready((self.response)(resp)))
    }
    fn on_log<'a>(&'a self, _rec: &'a mut LogRecord) -> HookCall<'a, LogVerdict> {
        self.record(format!("{}:log", self.name));
        Box::pin(std::future::ready(self.log.clone()))
    }
}

/// A chain call on scripted plugins, whose hooks are ready at once.
trait Ready: std::future::Future + Sized {
    fn ready(self) -> Self::Output {
        futures_util::FutureExt::now_or_never(self).expect("scripted hooks never wait")
    }
}

impl<F: std::future::Future> Ready for F {}

fn edits(headers: Vec<HeaderEdit>) -> RequestEdits {
    RequestEdits {
        headers,
        path: None,
        delay_ms: 0,
        vars: vec![],
    }
}

fn set(name: &str, value: &str) -> HeaderEdit {
    HeaderEdit {
        op: HeaderOp::Set,
        name: name.into(),
        value: value.into(),
    }
}

/// `set(name, value)` as the chain hands it to the pipeline.
fn wire_set(name: &str, value: &str) -> WireEdit {
    WireEdit::Set(
        http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
        http::HeaderValue::from_str(value).expect("value"),
    )
}

fn var(name: &str, value: &str) -> Var {
    Var {
        name: name.into(),
        value: value.into(),
    }
}

fn head() -> RequestHead {
    RequestHead {
        scheme: Scheme::Https,
        host: Some("example.com".into()),
        path: Some("/a".into()),
        query: Some("q=1".into()),
        headers: Some(vec![Header {
            name: "accept".into(),
            value: b"*/*".to_vec(),
        }]),
        client_ip: IpAddress::V4(0xC000_0201),
        route: Some("site".into()),
        request_id: Some("req-1".into()),
        ..RequestHead::default()
    }
}

fn response() -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: Some(vec![Header {
            name: "server".into(),
            value: b"upstream".to_vec(),
        }]),
        host_generated: false,
    }
}

fn log_record() -> LogRecord {
    LogRecord {
        time_unix_ms: 1_735_689_600_000,
        client_ip: IpAddress::V4(0xC000_0201),
        peer_ip: IpAddress::V4(0xC000_0201),
        peer_port: 5000,
        scheme: Scheme::Https,
        host: Some("example.com".into()),
        uri: Some("/a?q=1".into()),
        status: 200,
        bytes_sent: 10,
        bytes_received: 0,
        request_time: 0.01,
        upstream_response_time: Some(0.005),
        upstream_addr: Some("100.64.0.2:80".into()),
        route: Some("site".into()),
        request_id: Some("req-1".into()),
        user_agent: Some("test".into()),
        referer: Some(String::new()),
        http_host: Some(String::new()),
        path: None,
        request_headers: Some(vec![]),
        response_headers: Some(vec![]),
        vars: Some(vec![]),
        ..LogRecord::default()
    }
}

fn chain(entries: Vec<ChainEntry>) -> RouteChain {
    RouteChain::new(RouteName("site".into()), entries)
}

fn calls(c: &Calls) -> Vec<String> {
    c.lock().expect("calls lock").clone()
}

fn header_values(headers: &[Header], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name == name)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        .collect()
}

mod fixed;
mod request;
mod response_and_log;
