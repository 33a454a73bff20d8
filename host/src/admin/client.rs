//! The command line's side of the admin listener: one HTTP/1.1 request to
//! `[admin] listen` and its whole answer, under a deadline. Used by
//! `tailgate bans` (`crate::bans_cmd`); the listener itself is
//! `crate::admin`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use super::MAX_ADMIN_BODY;

/// How long one admin call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error(
        "admin api at {addr}: {reason} (is tailgate running, with [admin] listen = \"{addr}\"?)"
    )]
    Connect { addr: SocketAddr, reason: String },
    #[error("admin api at {addr}: {reason}")]
    Exchange { addr: SocketAddr, reason: String },
    #[error("admin api at {addr}: no answer within {TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
}

/// An admin API answer.
#[derive(Debug)]
pub struct AdminAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Talks to one admin listener.
#[derive(Debug, Clone, Copy)]
pub struct AdminClient {
    addr: SocketAddr,
}

impl AdminClient {
    pub fn new(addr: SocketAddr) -> Self {
        AdminClient { addr }
    }

    /// `method path` with a JSON `body` (if any); the status and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<AdminAnswer, AdminClientError> {
        tokio::time::timeout(TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| AdminClientError::Timeout { addr: self.addr })?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<AdminAnswer, AdminClientError> {
        let addr = self.addr;
        let exchange_error = |reason: String| AdminClientError::Exchange { addr, reason };
        let stream =
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| AdminClientError::Connect {
                    addr,
                    reason: e.to_string(),
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| exchange_error(format!("handshake: {e}")))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, addr.to_string())
            .header(
                header::USER_AGENT,
                concat!("tailgate/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| exchange_error(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| exchange_error(format!("request: {e}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ADMIN_BODY * 64)
            .collect()
            .await
            .map_err(|e| exchange_error(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(AdminAnswer { status, body })
    }
}
