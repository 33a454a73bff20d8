//! A STAND-IN for tailscaled's LocalAPI, for tests only (tailscaled cannot
//! run here): an HTTP/1.1 server on a unix socket answering the two
//! documented endpoints Tailgate's identity check reads, in tailscaled's
//! JSON shapes — `GET /localapi/v0/whois?addr=IP:PORT` (`apitype.WhoIsResponse`,
//! 404 when no node has that address) and `GET /localapi/v0/status`
//! (`ipnstate.Status` with its `Peer` map). The test declares the nodes.
//! Requests whose Host is not `local-tailscaled.sock` get 403.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A tailnet node as the stand-in reports it.
#[derive(Debug, Clone)]
pub struct StandInNode {
    /// MagicDNS name, e.g. `docs.tail8d86e.ts.net` (reported with a trailing dot).
    pub name: String,
    /// Addresses a whois by `IP:PORT` matches (the port is ignored, as in tailscaled).
    pub addrs: Vec<std::net::IpAddr>,
    pub tags: Vec<String>,
}

#[derive(Default)]
struct State {
    nodes: Mutex<Vec<StandInNode>>,
    requests: AtomicU64,
}

/// The running stand-in; stops when dropped.
pub struct LocalApiStandIn {
    socket: PathBuf,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LocalApiStandIn {
    /// Listen on `dir/tailscaled.sock`.
    pub fn start(dir: &Path) -> Self {
        let socket = dir.join("tailscaled.sock");
        let _ = std::fs::remove_file(&socket);
        let std_listener =
            std::os::unix::net::UnixListener::bind(&socket).expect("bind the stand-in socket");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(State::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(std_listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let st = st.clone();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| {
                                let st = st.clone();
                                async move { Ok::<_, Infallible>(answer(&req, &st)) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = rx => {}
                }
            });
        });
        LocalApiStandIn {
            socket,
            state,
            shutdown: Some(tx),
        }
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Declare (or replace, by name) a node.
    pub fn set_node(&self, name: &str, addrs: &[SocketAddr], tags: &[&str]) {
        let node = StandInNode {
            name: name.to_owned(),
            addrs: addrs.iter().map(SocketAddr::ip).collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let mut nodes = self.state.nodes.lock().expect("nodes");
        nodes.retain(|n| n.name != name);
        nodes.push(node);
    }

    /// LocalAPI requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for LocalApiStandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    resp
}

fn node_json(node: &StandInNode, id: usize) -> serde_json::Value {
    serde_json::json!({
        "ID": id,
        "StableID": format!("n{id}CNTRL"),
        "Name": format!("{}.", node.name),
        "Addresses": node.addrs.iter().map(|a| format!("{a}/32")).collect::<Vec<_>>(),
        "Tags": node.tags,
    })
}

fn answer(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if host != "local-tailscaled.sock" {
        return text(StatusCode::FORBIDDEN, "invalid Host header");
    }
    let nodes = state.nodes.lock().expect("nodes").clone();
    match req.uri().path() {
        "/localapi/v0/whois" => {
            let addr = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("addr="))
                .unwrap_or("");
            let Ok(addr) = addr.parse::<SocketAddr>() else {
                return text(StatusCode::BAD_REQUEST, "invalid 'addr' parameter");
            };
            match nodes
                .iter()
                .enumerate()
                .find(|(_, n)| n.addrs.contains(&addr.ip()))
            {
                Some((id, node)) => json(
                    StatusCode::OK,
                    serde_json::json!({
                        "Node": node_json(node, id + 1),
                        "UserProfile": {"ID": 0, "LoginName": "tagged-devices", "DisplayName": "tagged-devices"},
                        "CapMap": {},
                    }),
                ),
                None => text(
                    StatusCode::NOT_FOUND,
                    &format!("no match for IP:port {addr}"),
                ),
            }
        }
        "/localapi/v0/status" => {
            let peers: serde_json::Map<String, serde_json::Value> = nodes
                .iter()
                .enumerate()
                .map(|(id, node)| {
                    (
                        format!("nodekey:{id:064x}"),
                        serde_json::json!({
                            "ID": format!("n{id}CNTRL"),
                            "HostName": node.name.split('.').next().unwrap_or(""),
                            "DNSName": format!("{}.", node.name),
                            "TailscaleIPs": node.addrs,
                            "Tags": node.tags,
                            "Online": true,
                        }),
                    )
                })
                .collect();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "Version": "stand-in",
                    "BackendState": "Running",
                    "Self": {"DNSName": "flyio-proxy.tail8d86e.ts.net.", "Tags": ["tag:flyio-proxy"]},
                    "Peer": peers,
                }),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}
