//! A Loki push STAND-IN — not Loki. No Loki server can run in the tests, so
//! this implements the one endpoint Tailgate uses, `POST /loki/api/v1/push`,
//! from Loki's published `pkg/push/push.proto`: snappy-block protobuf
//! `PushRequest` (or the JSON form), with Loki's distributor and ingester
//! checks — label syntax and names, at least one label, no duplicate names,
//! timestamps not too far in the future or past, and (as Loki with
//! `unordered_writes = false`) no entry older than its stream's newest.
//! Valid entries are kept even when others in the push are refused (400),
//! as Loki does. A test can make it fail: 500, 429 (with `Retry-After`),
//! 400, or down (the port closed) — on any path, so it also stands in for
//! a failing remote_write receiver (whose pushes it otherwise answers 404).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

/// Loki's default `creation_grace_period`.
const MAX_FUTURE: Duration = Duration::from_secs(10 * 60);
/// Loki's default `reject_old_samples_max_age`.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Loki's default `max_label_names_per_series`.
const MAX_LABEL_NAMES: usize = 15;

// === push.proto, as published by Loki ===

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

// === What the stand-in saw ===

/// A line Loki would have stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLine {
    pub labels: BTreeMap<String, String>,
    pub timestamp_ns: i64,
    pub line: String,
}

/// One POST, whatever became of it.
#[derive(Debug, Clone)]
pub struct PushAttempt {
    pub at: Instant,
    /// The request path (`/loki/api/v1/push` for a push).
    pub path: String,
    pub status: u16,
    pub content_type: String,
    pub tenant: Option<String>,
    pub authorization: Option<String>,
    /// Entries in the body (0 when it could not be decoded).
    pub entries: usize,
}

/// How the stand-in answers the next pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Behave like Loki.
    None,
    /// Answer this status without storing anything (e.g. 500, 400).
    Status(u16),
    /// 429 with `Retry-After: N` seconds.
    TooManyRequests { retry_after_secs: Option<u64> },
    /// Close the port and every open connection.
    Down,
}

#[derive(Default)]
struct State {
    lines: Vec<StoredLine>,
    attempts: Vec<PushAttempt>,
    /// Newest timestamp and its lines, per stream (Loki's ordering check).
    newest: BTreeMap<String, (i64, Vec<String>)>,
    refused: Vec<String>,
    failure: Option<Failure>,
}

pub struct LokiStandin {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    control: tokio::sync::mpsc::UnboundedSender<Failure>,
}

impl LokiStandin {
    /// Start on a free loopback port, on its own thread and runtime.
    pub fn start() -> LokiStandin {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loki stand-in");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let (control, mut commands) = tokio::sync::mpsc::unbounded_channel::<Failure>();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut listener =
                    Some(TcpListener::from_std(std_listener).expect("listener"));
                let mut connections = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = async { listener.as_ref().expect("listening").accept().await }, if listener.is_some() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let st = st.clone();
                            connections.spawn(async move {
                                let svc = service_fn(move |req| {
                                    let st = st.clone();
                                    async move { Ok::<_, Infallible>(handle(req, st).await) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                        command = commands.recv() => match command {
                            None => return,
                            Some(Failure::Down) => {
                                listener = None;
                                connections.abort_all();
                            }
                            Some(_) => {
                                if listener.is_none() {
                                    listener = Some(rebind(addr).await);
                                }
                            }
                        },
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    }
                }
            });
        });
        LokiStandin {
            addr,
            state,
            control,
        }
    }

    /// `http://ADDR/loki/api/v1/push`.
    pub fn push_url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.addr)
    }

    /// Answer the next pushes with `failure` (`Failure::None` to recover).
    pub fn set_failure(&self, failure: Failure) {
        self.state.lock().expect("state").failure = Some(failure);
        let _ = self.control.send(failure);
        // Let the server thread act on it (close or reopen the port).
        std::thread::sleep(Duration::from_millis(50));
    }

    pub fn lines(&self) -> Vec<StoredLine> {
        self.state.lock().expect("state").lines.clone()
    }

    pub fn attempts(&self) -> Vec<PushAttempt> {
        self.state.lock().expect("state").attempts.clone()
    }

    /// Entries refused by the validation, with Loki's reason.
    pub fn refused(&self) -> Vec<String> {
        self.state.lock().expect("state").refused.clone()
    }

    /// Wait until `pred` holds for the stored lines; false on timeout.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[StoredLine]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.state.lock().expect("state").lines) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        let socket = TcpSocket::new_v4().expect("socket");
        let _ = socket.set_reuseaddr(true);
        if socket.bind(addr).is_ok() {
            if let Ok(listener) = socket.listen(128) {
                return listener;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("loki stand-in: cannot listen on {addr} again");
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .expect("response")
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Response<Body> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let tenant = header("x-scope-orgid");
    let authorization = header("authorization");
    let path = req.uri().path().to_owned();
    let is_push = req.method() == http::Method::POST && path == "/loki/api/v1/push";
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let mut attempt = PushAttempt {
        at: Instant::now(),
        path,
        status: 204,
        content_type: content_type.clone(),
        tenant,
        authorization,
        entries: 0,
    };
    let answer = |state: &Arc<Mutex<State>>, attempt: PushAttempt, response: Response<Body>| {
        state.lock().expect("state").attempts.push(attempt);
        response
    };
    // A failure the test asked for comes first, whatever the request.
    let failure = state
        .lock()
        .expect("state")
        .failure
        .unwrap_or(Failure::None);
    match failure {
        Failure::None | Failure::Down => {}
        Failure::Status(code) => {
            attempt.status = code;
            if let Ok(Ok(streams)) = body.as_ref().map(|b| decode(&content_type, b)) {
                attempt.entries = streams.iter().map(|s| s.1.len()).sum();
            }
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return answer(
                &state,
                attempt,
                reply(status, format!("stand-in told to fail with {code}\n")),
            );
        }
        Failure::TooManyRequests { retry_after_secs } => {
            attempt.status = 429;
            let mut r = reply(
                StatusCode::TOO_MANY_REQUESTS,
                "Ingestion rate limit exceeded\n",
            );
            if let Some(secs) = retry_after_secs {
                r.headers_mut().insert(
                    "retry-after",
                    http::HeaderValue::from_str(&secs.to_string()).expect("header"),
                );
            }
            return answer(&state, attempt, r);
        }
    }
    if !is_push {
        attempt.status = 404;
        return answer(
            &state,
            attempt,
            reply(StatusCode::NOT_FOUND, "404 page not found\n"),
        );
    }
    let Ok(body) = body else {
        attempt.status = 400;
        return answer(
            &state,
            attempt,
            reply(StatusCode::BAD_REQUEST, "reading the body\n"),
        );
    };
    let streams = match decode(&content_type, &body) {
        Ok(streams) => streams,
        Err(e) => {
            attempt.status = 400;
            return answer(&state, attempt, reply(StatusCode::BAD_REQUEST, e));
        }
    };
    attempt.entries = streams.iter().map(|s| s.1.len()).sum();
    let mut st = state.lock().expect("state");
    let errors = store(&mut st, streams);
    if errors.is_empty() {
        st.attempts.push(attempt);
        reply(StatusCode::NO_CONTENT, "")
    } else {
        attempt.status = 400;
        st.attempts.push(attempt);
        let text = errors.join("\n");
        st.refused.extend(errors);
        reply(StatusCode::BAD_REQUEST, text)
    }
}

/// Streams of a body: (label text, entries as (ns, line)).
type Streams = Vec<(String, Vec<(i64, String)>)>;

fn decode(content_type: &str, body: &[u8]) -> Result<Streams, String> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    match mime {
        "application/x-protobuf" => {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| format!("snappy: {e}\n"))?;
            let req: PushRequest =
                prost::Message::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}\n"))?;
            Ok(req
                .streams
                .into_iter()
                .map(|s| {
                    let entries = s
                        .entries
                        .into_iter()
                        .map(|e| {
                            let ts = e.timestamp.unwrap_or(Timestamp {
                                seconds: 0,
                                nanos: 0,
                            });
                            (ts.seconds * 1_000_000_000 + i64::from(ts.nanos), e.line)
                        })
                        .collect();
                    (s.labels, entries)
                })
                .collect())
        }
        "application/json" => {
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("json: {e}\n"))?;
            let streams = v["streams"].as_array().ok_or("json: no streams\n")?;
            streams
                .iter()
                .map(|s| {
                    let labels = s["stream"].as_object().ok_or("json: no stream labels\n")?;
                    let text = format!(
                        "{{{}}}",
                        labels
                            .iter()
                            .map(|(k, v)| format!(
                                "{k}={}",
                                serde_json::Value::String(
                                    v.as_str().unwrap_or_default().to_owned()
                                )
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    let values = s["values"].as_array().ok_or("json: no values\n")?;
                    let entries = values
                        .iter()
                        .map(|pair| {
                            let ts = pair[0]
                                .as_str()
                                .and_then(|t| t.parse::<i64>().ok())
                                .ok_or("json: timestamp must be a string of nanoseconds\n")?;
                            let line = pair[1].as_str().ok_or("json: line must be a string\n")?;
                            Ok((ts, line.to_owned()))
                        })
                        .collect::<Result<Vec<_>, &str>>()?;
                    Ok((text, entries))
                })
                .collect::<Result<Streams, &str>>()
                .map_err(str::to_owned)
        }
        other => Err(format!("unsupported Content-Type {other:?}\n")),
    }
}

/// Validate and keep entries as Loki would; returns the refusals.
fn store(st: &mut State, streams: Streams) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let mut errors = Vec::new();
    for (label_text, entries) in streams {
        let labels = match parse_labels(&label_text) {
            Ok(l) => l,
            Err(e) => {
                errors.push(format!("error parsing labels {label_text}: {e}"));
                continue;
            }
        };
        if entries.is_empty() {
            continue;
        }
        let key = format!("{labels:?}");
        for (ts, line) in entries {
            if ts > now + MAX_FUTURE.as_nanos() as i64 {
                errors.push(format!(
                    "entry for stream '{label_text}' has timestamp too new: {ts}"
                ));
                continue;
            }
            if ts < now - MAX_AGE.as_nanos() as i64 {
                errors.push(format!(
                    "entry for stream '{label_text}' has timestamp too old: {ts}"
                ));
                continue;
            }
            let newest = st
                .newest
                .entry(key.clone())
                .or_insert((i64::MIN, Vec::new()));
            if ts < newest.0 {
                errors.push(format!(
                    "entry with timestamp {ts} ignored, reason: 'entry out of order' for stream: {label_text}"
                ));
                continue;
            }
            if ts == newest.0 {
                if newest.1.contains(&line) {
                    continue; // Loki drops an exact duplicate silently.
                }
                newest.1.push(line.clone());
            } else {
                *newest = (ts, vec![line.clone()]);
            }
            st.lines.push(StoredLine {
                labels: labels.clone(),
                timestamp_ns: ts,
                line,
            });
        }
    }
    errors
}

/// Loki's label checks on `{a="x", b="y"}`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("labels must be in braces")?;
    let mut labels = BTreeMap::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("expected '='")?;
        let name = rest[..eq].trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("invalid label name {name:?}"));
        }
        let body = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("invalid escape in label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("duplicate label name {name:?}"));
        }
        rest = body[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err("expected ',' between labels".into());
        }
    }
    labels.retain(|_, v| !v.is_empty());
    if labels.is_empty() {
        return Err("at least one label pair is required per stream".into());
    }
    if labels.len() > MAX_LABEL_NAMES {
        return Err(format!(
            "stream has {} label names, the limit is {MAX_LABEL_NAMES}",
            labels.len()
        ));
    }
    Ok(labels)
}
