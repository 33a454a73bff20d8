//! The tailnet identity check: before a new upstream connection is used, the
//! peer's node must carry the required tag (e.g. `tag:flyio-target`), as
//! tailscaled's LocalAPI reports it on its unix socket (Host
//! `local-tailscaled.sock`). In `system` mode the peer is looked up by the
//! address actually connected to (`/localapi/v0/whois?addr=IP:PORT`); in
//! `socks5` mode, where Tailgate never sees the peer's address, by its
//! MagicDNS name among the peers of `/localapi/v0/status`. Answers are
//! cached briefly. Called by the upstream connector; a refusal is a 502.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::config::model::tailnet::IdentityCheck;

/// The host name tailscaled's LocalAPI expects.
pub const LOCALAPI_HOST: &str = "local-tailscaled.sock";
/// Bound on one LocalAPI exchange.
const LOCALAPI_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a LocalAPI answer's size (a status of a large tailnet is big).
const MAX_ANSWER: usize = 8 << 20;

/// Who to look up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The address a connection reached (system mode).
    Addr(SocketAddr),
    /// A MagicDNS name (socks5 mode), lower case, without the trailing dot.
    Name(String),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Addr(addr) => write!(f, "{addr}"),
            Peer::Name(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("tailnet peer {peer} (node {node}) does not carry {tag} (its tags: [{tags}])")]
    MissingTag {
        peer: Peer,
        node: String,
        tag: String,
        tags: String,
    },
    #[error("tailnet peer {peer} is not a node tailscaled knows; refusing to use it")]
    UnknownPeer { peer: Peer },
    #[error("tailscaled LocalAPI at {socket}: {reason}; cannot check peer {peer}")]
    LocalApi {
        socket: PathBuf,
        peer: Peer,
        reason: String,
    },
}

/// Cached answers: when each was asked, and what it was.
type AnswerCache = HashMap<Peer, (Instant, Result<(), IdentityError>)>;

/// The check and its cache; one per active config, shared by its upstreams.
#[derive(Debug)]
pub struct PeerIdentityCheck {
    check: IdentityCheck,
    cache: Mutex<AnswerCache>,
}

impl PeerIdentityCheck {
    pub fn new(check: IdentityCheck) -> Self {
        PeerIdentityCheck {
            check,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Ok when `peer`'s node carries the required tag.
    pub async fn verify(&self, peer: Peer) -> Result<(), IdentityError> {
        if let Some((at, answer)) = self.lock().get(&peer) {
            if at.elapsed() < self.check.cache_ttl {
                return answer.clone();
            }
        }
        let answer = self.ask(&peer).await;
        // A LocalAPI failure is not an answer about the peer: ask again next time.
        if !matches!(answer, Err(IdentityError::LocalApi { .. })) {
            self.lock().insert(peer, (Instant::now(), answer.clone()));
        }
        answer
    }

    async fn ask(&self, peer: &Peer) -> Result<(), IdentityError> {
        let api_error = |reason: String| IdentityError::LocalApi {
            socket: self.check.localapi_socket.clone(),
            peer: peer.clone(),
            reason,
        };
        let node = match peer {
            Peer::Addr(addr) => {
                let path = format!("/localapi/v0/whois?addr={addr}");
                match self.get(&path).await.map_err(api_error)? {
                    (404, _) => None,
                    (200, body) => {
                        let whois: WhoIs = serde_json::from_slice(&body)
                            .map_err(|e| api_error(format!("whois answer is not JSON: {e}")))?;
                        Some(whois.node)
                    }
                    (status, body) => {
                        return Err(api_error(format!(
                            "whois answered {status}: {}",
                            String::from_utf8_lossy(&body).trim()
                        )))
                    }
                }
            }
            Peer::Name(name) => match self.get("/localapi/v0/status").await.map_err(api_error)? {
                (200, body) => {
                    let status: Status = serde_json::from_slice(&body)
                        .map_err(|e| api_error(format!("status answer is not JSON: {e}")))?;
                    status.peer.into_values().find(|node| {
                        node.dns_name
                            .trim_end_matches('.')
                            .eq_ignore_ascii_case(name)
                    })
                }
                (status, body) => {
                    return Err(api_error(format!(
                        "status answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    )))
                }
            },
        };
        let Some(node) = node else {
            return Err(IdentityError::UnknownPeer { peer: peer.clone() });
        };
        if node.tags.iter().any(|t| t == &self.check.require_tag) {
            Ok(())
        } else {
            Err(IdentityError::MissingTag {
                peer: peer.clone(),
                node: node.name(),
                tag: self.check.require_tag.clone(),
                tags: node.tags.join(", "),
            })
        }
    }

    /// GET `path` from the LocalAPI: (status, body).
    async fn get(&self, path: &str) -> Result<(u16, Bytes), String> {
        let exchange = async {
            let stream = tokio::net::UnixStream::connect(&self.check.localapi_socket)
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(connection);
            let request = http::Request::get(path)
                .header(http::header::HOST, LOCALAPI_HOST)
                .header("sec-tailscale", "localapi")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(LOCALAPI_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {LOCALAPI_TIMEOUT:?}"))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AnswerCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `apitype.WhoIsResponse`, the fields used.
#[derive(Debug, Deserialize)]
struct WhoIs {
    #[serde(rename = "Node")]
    node: Node,
}

/// `ipnstate.Status`, the fields used.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(rename = "Peer", default)]
    peer: HashMap<String, Node>,
}

/// A node as both answers describe it (`tailcfg.Node` / `ipnstate.PeerStatus`).
#[derive(Debug, Deserialize)]
struct Node {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "DNSName", default)]
    dns_name: String,
    #[serde(rename = "Tags", default)]
    tags: Vec<String>,
}

impl Node {
    fn name(&self) -> String {
        let name = if self.name.is_empty() {
            &self.dns_name
        } else {
            &self.name
        };
        name.trim_end_matches('.').to_owned()
    }
}
