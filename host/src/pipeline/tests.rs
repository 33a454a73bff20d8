//! The pipeline driven without a socket: `Proxy::handle` on built requests,
//! against real loopback upstreams and scripted plugins, checking what a
//! client and the access log see.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tailgate_runtime::{
    HeaderEdit, HeaderOp, HookSet, ImmediateResponse, LogLine, LogRecord, PluginFault,
    RequestAction, RequestEdits, RequestHead, ResponseEdits, ResponseHead, Var,
};
use tokio::sync::mpsc;

use super::*;
use crate::config::model::{FailurePolicy, RouteName};
use crate::plugin_chain::{ChainEntry, PluginHooks, RouteChain};

const CLIENT: &str = "203.0.113.9:40000";

// === test upstream ===

/// A loopback HTTP/1.1 upstream: `/status/N` answers N, `/upload` answers
/// the body's length, anything else echoes method, URI and headers as JSON
/// (with some hop-by-hop response headers the proxy must strip).
async fn echo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), hyper::service::service_fn(echo)),
            );
        }
    });
    addr
}

async fn echo(req: Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let full_path = req.uri().path();
    let path = full_path
        .strip_prefix("/base")
        .unwrap_or(full_path)
        .to_string();
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code.parse().unwrap_or(500);
        let mut resp = http::Response::new(Full::from(format!("status {status}")));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        return Ok(resp);
    }
    if path == "/upload" {
        let n = match req.into_body().collect().await {
            Ok(body) => body.to_bytes().len().to_string(),
            Err(e) => format!("error: {e}"),
        };
        return Ok(http::Response::new(Full::from(n)));
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        let entry = headers
            .entry(name.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        if let serde_json::Value::Array(values) = entry {
            values.push(String::from_utf8_lossy(value.as_bytes()).into());
        }
    }
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    let resp = http::Response::builder()
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("server", "echo")
        .header("x-end", "kept")
        .body(Full::from(body.to_string()))
        .expect("response");
    Ok(resp)
}

/// A port nothing listens on.
fn dead_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
}

// === harness ===

struct Harness {
    proxy: Proxy,
    log: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// A header the echo upstream received.
    fn echoed(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_string)
    }
}

fn harness(config: &str, chains: Vec<RouteChain>) -> Harness {
    let dir = std::env::temp_dir().join(format!(
        "tailgate-pipeline-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(dir.join("www/sub")).expect("mkdir");
    std::fs::write(dir.join("www/index.html"), "<h1>home</h1>").expect("write");
    std::fs::write(dir.join("50x.html"), "<p>back soon</p>").expect("write");
    let config = crate::config::parse(config, &dir.join("config.toml")).expect("valid config");
    let active = ActiveConfig::new(
        Arc::new(config),
        Arc::new(PluginChains::from_chains(chains)),
    )
    .expect("upstreams");
    let (access_log, log) = AccessLog::channel(64);
    Harness {
        proxy: Proxy::new(active, access_log),
        log,
        dir,
    }
}

impl Harness {
    async fn send<B>(&self, req: Request<B>) -> Answer
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let peer: SocketAddr = CLIENT.parse().expect("peer");
        let resp = self.proxy.handle(req, peer).await.expect("a response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, host: &str, path: &str) -> Answer {
        self.send(request(host, path)).await
    }

    /// The next access-log line, parsed.
    fn next_log(&mut self) -> serde_json::Value {
        let line = self.log.try_recv().expect("an access-log line");
        serde_json::from_str(&line).expect("a JSON line")
    }
}

fn request(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .header("user-agent", "test/1")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn config(upstream: SocketAddr, extra_server: &str, routes: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
trusted_proxies = ["10.0.0.0/8"]
{extra_server}

[upstreams.echo]
url = "http://{upstream}/base"
[upstreams.dead]
url = "http://{dead}"
[upstreams.files]
static = "www"

[[routes]]
name = "app"
hosts = ["app.test"]
path = "/"
upstream = "echo"
max_body_size = "1KiB"
{routes}
"#,
        dead = dead_port()
    )
}

// === routing and host-made answers ===

#[tokio::test]
async fn healthz_answers_before_routing_and_is_not_logged() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let a = h.get("nobody.test", "/healthz").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"ok"[..]));
    assert!(h.log.try_recv().is_err());
}

#[tokio::test]
async fn unknown_host_gets_the_configured_status_and_is_logged() {
    let up = echo_upstream().await;
    let cfg = config(
        up,
        r#"unknown_host = { action = "status", status = 421 }"#,
        "",
    );
    let mut h = harness(&cfg, vec![]);
    let a = h.get("nobody.test", "/x").await;
    assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST);
    let rec = h.next_log();
    assert_eq!(rec["status"], 421);
    assert_eq!(rec["route"], "");
    assert_eq!(rec["http_host"], "nobody.test");
}

#[tokio::test]
async fn unknown_host_close_gives_no_response_but_a_444_line() {
    let up = echo_upstream().await;
    let cfg = config(up, r#"unknown_host = { action = "close" }"#, "");
    let mut h = harness(&cfg, vec![]);
    let peer: SocketAddr = CLIENT.parse().expect("peer");
    let result = h.proxy.handle(request("nobody.test", "/"), peer).await;
    assert!(result.is_err());
    assert_eq!(h.next_log()["status"], 444);
}

#[tokio::test]
async fn known_host_without_matching_path_is_404() {
    let up = echo_upstream().await;
    let routes = r#"
[[routes]]
name = "api"
hosts = ["api.test"]
path = "/v1/"
upstream = "echo"
"#;
    let mut h = harness(&config(up, "", routes), vec![]);
    assert_eq!(
        h.get("api.test", "/v2/x").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.next_log()["route"], "");
    assert_eq!(h.get("api.test", "/v1/x").await.status, StatusCode::OK);
    assert_eq!(h.next_log()["route"], "api");
}

// === forwarding ===

#[tokio::test]
async fn request_is_forwarded_with_prefix_and_forwarding_headers() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let req = Request::get("/p/q?x=1")
        .header("host", "App.Test:8080")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "spoofed")
        .header("connection", "x-hop-req")
        .header("x-hop-req", "1")
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let a = h.send(req).await;
    assert_eq!(a.status, StatusCode::OK);
    let echoed = a.json();
    assert_eq!(echoed["uri"], "/base/p/q?x=1");
    assert_eq!(a.echoed("x-forwarded-for").as_deref(), Some("203.0.113.9"));
    assert_eq!(a.echoed("x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(a.echoed("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        a.echoed("host").as_deref(),
        Some("App.Test:8080"),
        "the client's Host by default"
    );
    assert_eq!(a.echoed("x-hop-req"), None);
    assert_eq!(a.echoed("te"), None);
    let id = a.echoed("x-request-id").expect("request id");
    assert_ne!(id, "spoofed");
    // Response hop-by-hop fields are gone, end-to-end ones stay.
    assert!(!a.headers.contains_key("x-hop"));
    assert!(!a.headers.contains_key("keep-alive"));
    assert!(!a.headers.contains_key("connection"));
    assert_eq!(a.headers["x-end"], "kept");

    let rec = h.next_log();
    assert_eq!(rec["request_id"], id.as_str());
    assert_eq!(rec["route"], "app");
    assert_eq!(rec["request_uri"], "/p/q?x=1");
    assert_eq!(rec["http_host"], "app.test");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["body_bytes_sent"], a.body.len() as u64);
    assert_eq!(rec["upstream_addr"], up.to_string());
    assert!(rec["upstream_response_time"].is_number());
    assert_eq!(rec["http_user_agent"], "");
    assert_eq!(rec["client_ip"], "203.0.113.9");
}

#[tokio::test]
async fn upstream_host_header_mode_sends_the_upstreams_authority() {
    let up = echo_upstream().await;
    let cfg = config(up, "", "").replace(
        &format!("url = \"http://{up}/base\""),
        &format!("url = \"http://{up}/base\"\nhost_header = \"upstream\""),
    );
    let h = harness(&cfg, vec![]);
    let a = h.get("app.test:8443", "/").await;
    assert_eq!(a.echoed("host"), Some(up.to_string()));
}

// === bodies ===

#[tokio::test]
async fn declared_body_over_the_limit_is_413_without_reaching_upstream() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let req = Request::post("/upload")
        .header("host", "app.test")
        .header("content-length", "4096")
        .body(Full::new(Bytes::from(vec![b'a'; 4096])))
        .expect("request");
    let a = h.send(req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(h.next_log()["upstream_addr"].is_null());
}

fn chunked(
    n: usize,
    chunk: usize,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    let data = Bytes::from(vec![b'c'; chunk]);
    StreamBody::new(stream::iter(
        (0..n).map(move |_| Ok(Frame::data(data.clone()))),
    ))
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413_and_under_it_passes() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let req = Request::post("/upload")
        .header("host", "app.test")
        .body(chunked(16, 256))
        .expect("request");
    assert_eq!(h.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let _ = h.next_log();

    let req = Request::post("/upload")
        .header("host", "app.test")
        .body(chunked(3, 256))
        .expect("request");
    let a = h.send(req).await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"768"[..]));
    assert_eq!(h.next_log()["request_length"], 768);
}

// === upstream failures and error pages ===

#[tokio::test]
async fn dead_upstream_is_502_and_error_pages_replace_it() {
    let up = echo_upstream().await;
    let routes = r#"
[[routes]]
name = "dead"
hosts = ["dead.test"]
path = "/"
upstream = "dead"

[[routes]]
name = "paged"
hosts = ["paged.test"]
path = "/"
upstream = "dead"
error_pages = { 502 = "50x.html" }

[[routes]]
name = "intercept"
hosts = ["intercept.test"]
path = "/"
upstream = "echo"
error_pages = { 503 = "50x.html" }
"#;
    let mut h = harness(&config(up, "", routes), vec![]);
    let a = h.get("dead.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::BAD_GATEWAY, &b"502 Bad Gateway\n"[..])
    );
    assert_eq!(h.next_log()["status"], 502);

    let a = h.get("paged.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::BAD_GATEWAY, &b"<p>back soon</p>"[..])
    );
    assert_eq!(a.headers["content-type"], "text/html; charset=utf-8");
    let _ = h.next_log();

    let a = h.get("intercept.test", "/status/503").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::SERVICE_UNAVAILABLE, &b"<p>back soon</p>"[..])
    );
    let a = h.get("intercept.test", "/status/500").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::INTERNAL_SERVER_ERROR, &b"status 500"[..])
    );
}

#[tokio::test]
async fn static_upstream_serves_files_through_the_pipeline() {
    let up = echo_upstream().await;
    let routes = r#"
[[routes]]
name = "site"
hosts = ["site.test"]
path = "/"
upstream = "files"
"#;
    let mut h = harness(&config(up, "", routes), vec![]);
    let a = h.get("site.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::OK, &b"<h1>home</h1>"[..])
    );
    let rec = h.next_log();
    assert_eq!(rec["body_bytes_sent"], 13);
    assert_eq!(
        h.get("site.test", "/../config.toml").await.status,
        StatusCode::NOT_FOUND
    );
}

// === plugins ===

type Seen = Arc<Mutex<Vec<String>>>;

type RequestScript = Box<dyn Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync>;

/// A plugin that does what the test says and notes what it saw.
struct Scripted {
    hooks: HookSet,
    seen: Seen,
    request: RequestScript,
    response_fails: bool,
    log: Option<String>,
}

impl PluginHooks for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn hooks(&self) -> HookSet {
        self.hooks
    }
    fn on_request(&self, req: &RequestHead) -> Result<RequestAction, PluginFault> {
        self.seen
            .lock()
            .expect("lock")
            .push(format!("request {} {}", req.path, req.request_id));
        (self.request)(req)
    }
    fn on_response(
        &self,
        _req: &RequestHead,
        resp: &ResponseHead,
    ) -> Result<ResponseEdits, PluginFault> {
        self.seen.lock().expect("lock").push(format!(
            "response {} host_generated={}",
            resp.status, resp.host_generated
        ));
        if self.response_fails {
            return Err(PluginFault::Trap("boom".into()));
        }
        Ok(ResponseEdits {
            headers: vec![HeaderEdit {
                op: HeaderOp::Set,
                name: "x-plugin".into(),
                value: b"yes".to_vec(),
            }],
        })
    }
    fn on_log(&self, rec: &LogRecord) -> Result<Option<LogLine>, PluginFault> {
        let vars: Vec<String> = rec
            .vars
            .iter()
            .map(|v| format!("{}={}", v.name, v.value))
            .collect();
        Ok(self.log.as_ref().map(|prefix| LogLine {
            line: format!(
                "{prefix} {} {} {} {}",
                rec.status,
                rec.bytes_sent,
                rec.route,
                vars.join(",")
            ),
            labels: vec![],
        }))
    }
}

fn scripted(
    seen: &Seen,
    request: impl Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync + 'static,
) -> Scripted {
    Scripted {
        hooks: HookSet::REQUEST | HookSet::RESPONSE | HookSet::LOG,
        seen: seen.clone(),
        request: Box::new(request),
        response_fails: false,
        log: Some("custom".into()),
    }
}

fn chain(plugin: Scripted, policy: FailurePolicy) -> RouteChain {
    RouteChain::new(
        RouteName("app".into()),
        vec![ChainEntry::new(Box::new(plugin), policy)],
    )
}

fn continue_with(headers: Vec<HeaderEdit>, path: Option<&str>, delay_ms: u32) -> RequestAction {
    RequestAction::Continue(RequestEdits {
        headers,
        path: path.map(str::to_string),
        delay_ms,
        vars: vec![Var {
            name: "seen".into(),
            value: "1".into(),
        }],
    })
}

#[tokio::test]
async fn request_edits_reach_the_upstream_and_response_edits_the_client() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| {
        Ok(continue_with(
            vec![HeaderEdit {
                op: HeaderOp::Set,
                name: "x-added".into(),
                value: b"1".to_vec(),
            }],
            Some("/rewritten?q=2"),
            0,
        ))
    });
    let mut h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/orig").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["uri"], "/base/rewritten?q=2");
    assert_eq!(a.echoed("x-added").as_deref(), Some("1"));
    assert_eq!(a.headers["x-plugin"], "yes");
    let line = h.log.try_recv().expect("log line");
    assert_eq!(line, format!("custom 200 {} app seen=1", a.body.len()));
    let seen = seen.lock().expect("lock").clone();
    assert!(seen[0].starts_with("request /orig "), "{seen:?}");
    assert_eq!(seen[1], "response 200 host_generated=false");
}

#[tokio::test]
async fn delay_is_honoured() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| Ok(continue_with(vec![], None, 150)));
    let h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let started = std::time::Instant::now();
    assert_eq!(h.get("app.test", "/").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_plugin_answer_skips_the_upstream_and_still_runs_response_and_log_hooks() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| {
        Ok(RequestAction::Respond(ImmediateResponse {
            status: 403,
            headers: vec![tailgate_runtime::Header {
                name: "content-type".into(),
                value: b"text/plain".to_vec(),
            }],
            body: b"denied\n".to_vec(),
            vars: vec![Var {
                name: "why".into(),
                value: "rule".into(),
            }],
        }))
    });
    let mut h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/secret").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::FORBIDDEN, &b"denied\n"[..])
    );
    assert_eq!(a.headers["x-plugin"], "yes");
    assert_eq!(h.log.try_recv().expect("line"), "custom 403 7 app why=rule");
    assert_eq!(
        seen.lock().expect("lock")[1],
        "response 403 host_generated=false"
    );
}

#[tokio::test]
async fn failing_plugins_give_host_made_500s_seen_as_host_generated() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| Err(PluginFault::Trap("unreachable".into())));
    let mut h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            &b"500 Internal Server Error\n"[..]
        )
    );
    assert_eq!(
        seen.lock().expect("lock")[1],
        "response 500 host_generated=true"
    );
    assert_eq!(h.log.try_recv().expect("line"), "custom 500 26 app ");

    // A failing response hook (fail-closed) replaces the answer with a 500.
    let seen = Seen::default();
    let mut plugin = scripted(&seen, |_| Ok(continue_with(vec![], None, 0)));
    plugin.response_fails = true;
    let h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!a.headers.contains_key("x-plugin"));
}

#[tokio::test]
async fn upstream_errors_are_seen_by_response_hooks_as_host_generated() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let mut plugin = scripted(&seen, |_| Ok(continue_with(vec![], None, 0)));
    plugin.log = None;
    let routes = "";
    let cfg = config(up, "", routes).replace("upstream = \"echo\"", "upstream = \"dead\"");
    let mut h = harness(&cfg, vec![chain(plugin, FailurePolicy::Closed)]);
    let a = h.get("app.test", "/").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.headers["x-plugin"], "yes");
    assert_eq!(
        seen.lock().expect("lock")[1],
        "response 502 host_generated=true"
    );
    // The log hook dropped the line.
    assert!(h.log.try_recv().is_err());
}

// === the log fires when the body ends ===

#[tokio::test]
async fn log_line_waits_for_the_body_to_finish() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let peer: SocketAddr = CLIENT.parse().expect("peer");
    let resp = h
        .proxy
        .handle(request("app.test", "/x"), peer)
        .await
        .expect("response");
    assert!(h.log.try_recv().is_err(), "no line before the body is sent");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let rec = h.next_log();
    assert_eq!(rec["body_bytes_sent"], body.len() as u64);

    // A response dropped unread (client went away) is logged too.
    let resp = h
        .proxy
        .handle(request("app.test", "/y"), peer)
        .await
        .expect("response");
    drop(resp);
    assert_eq!(h.next_log()["request_uri"], "/y");
}

#[tokio::test]
async fn swapping_the_active_config_changes_routing_for_new_requests() {
    let up = echo_upstream().await;
    let h = harness(&config(up, "", ""), vec![]);
    assert_eq!(h.get("app.test", "/").await.status, StatusCode::OK);
    let routes = r#"
[[routes]]
name = "other"
hosts = ["other.test"]
path = "/"
upstream = "echo"
"#;
    let next_cfg =
        config(up, "", routes).replace("hosts = [\"app.test\"]", "hosts = [\"renamed.test\"]");
    let next = crate::config::parse(&next_cfg, &h.dir.join("config.toml")).expect("config");
    let next = ActiveConfig::new(Arc::new(next), Arc::new(PluginChains::from_chains(vec![])))
        .expect("upstreams");
    let previous = h.proxy.swap(next);
    assert_eq!(previous.config.routes[0].name.as_str(), "app");
    assert_eq!(h.get("app.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("renamed.test", "/").await.status, StatusCode::OK);
}
