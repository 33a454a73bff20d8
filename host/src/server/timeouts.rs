//! A timeout for every state of a client connection, between accept and
//! close, as nginx has them: until the first request and while a request
//! head arrives (`client_header_timeout`), idle between requests
//! (`keepalive_timeout`, `http2_idle_timeout`), and blocked writing to a
//! client that reads nothing (`send_timeout`). [`WatchedIo`] wraps the
//! socket and records reads and blocked writes in the connection's
//! [`ConnectionState`]; [`TrackedBody`] keeps a request counted until its
//! response body has been handed to hyper; [`expired`] resolves when a
//! deadline passes or the connection table sheds the connection, and the
//! listener then drops the connection.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::connection_table::{ActiveRequest, ConnectionState, Registration, StateSnapshot};
use crate::config::model::ConnectionLimits;

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request (or no complete request head) within `client_header_timeout`.
    Header,
    /// Idle between requests past `keepalive_timeout` / `http2_idle_timeout`.
    Idle,
    /// Nothing written for `send_timeout` while output waited.
    Send,
    /// Shed by the connection table to make room for a new connection.
    Shed,
}

impl Expiry {
    pub fn label(self) -> &'static str {
        match self {
            Expiry::Header => "client_header_timeout",
            Expiry::Idle => "keepalive_timeout",
            Expiry::Send => "send_timeout",
            Expiry::Shed => "shed",
        }
    }
}

/// The earliest deadline the state allows, and which timeout it is.
fn next_deadline(
    state: &ConnectionState,
    now: &StateSnapshot,
    limits: &ConnectionLimits,
) -> Option<(Instant, Expiry)> {
    let send = now
        .write_blocked_ms
        .map(|ms| (state.at(ms) + limits.send_timeout, Expiry::Send));
    let waiting = if now.active > 0 || now.tunnel {
        None
    } else if let Some(ms) = now.head_started_ms.filter(|_| !now.http2) {
        // HTTP/1: a head began arriving. (HTTP/2 clients send frames
        // between streams, PING acknowledgements among them.)
        Some((state.at(ms) + limits.client_header_timeout, Expiry::Header))
    } else if now.served == 0 {
        Some((state.at(0) + limits.client_header_timeout, Expiry::Header))
    } else if now.http2 {
        Some((
            state.at(now.idle_since_ms) + limits.http2_idle_timeout,
            Expiry::Idle,
        ))
    } else {
        Some((
            state.at(now.idle_since_ms) + limits.keepalive_timeout,
            Expiry::Idle,
        ))
    };
    match (send, waiting) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Resolves when the connection has outlived the timeout of its state, or
/// is shed. Each wake-up re-reads the state: a request that started or a
/// write that went through moves the deadline on.
///
/// One timer serves the connection's life (a new timer and two new
/// `Notify` registrations at each request's wake-up cost ~1.5k
/// instructions a request, docs/performance-passes-3.md section 18).
pub async fn expired(state: &ConnectionState, limits: &ConnectionLimits) -> Expiry {
    // Set in the first round; far off until then.
    let timer = tokio::time::sleep_until(Instant::now() + std::time::Duration::from_secs(86_400));
    tokio::pin!(timer);
    loop {
        let now = state.snapshot();
        let next = next_deadline(state, &now, limits);
        // With a request in flight and nothing blocked there is no
        // deadline: look again after the shortest timeout (the changes that
        // bring a deadline nearer also wake us).
        let deadline = next.map_or_else(
            || Instant::now() + limits.send_timeout.min(limits.client_header_timeout),
            |(deadline, _)| deadline,
        );
        // Moved only when it would fire too late: one that fires early is
        // looked at and set again (keep-alive requests move the deadline
        // later every time, and a timer-wheel move costs ~0.4k).
        if timer.is_elapsed() || deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            () = state.shed.wait() => return Expiry::Shed,
            () = state.changed.wait() => {}
            () = timer.as_mut() => {
                let Some((_, expiry)) = next else { continue };
                // Expired only if the state did not move in the meantime.
                let later = state.snapshot();
                if next_deadline(state, &later, limits).is_some_and(|(d, _)| d <= Instant::now()) {
                    return expiry;
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The client socket, recording reads and blocked writes. It holds the
    /// connection's place in the table, so a connection upgraded to a
    /// tunnel (WebSocket) counts until its socket closes. Bytes already
    /// read from the socket (protocol detection, what hyper had buffered
    /// when it let the connection go) are read again first.
    pub struct WatchedIo<S> {
        #[pin]
        inner: S,
        registration: Registration,
        unread: Bytes,
    }
}

impl<S> WatchedIo<S> {
    pub fn new(inner: S, registration: Registration) -> Self {
        WatchedIo {
            inner,
            registration,
            unread: Bytes::new(),
        }
    }

    /// Put `bytes` back in front of what is still to be read.
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.unread = if self.unread.is_empty() {
            bytes
        } else {
            let mut joined = bytes::BytesMut::with_capacity(bytes.len() + self.unread.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.unread);
            joined.freeze()
        };
    }

    /// Bytes were put back and are still to be read.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead> AsyncRead for WatchedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.unread.is_empty() {
            // Counted when they were first read.
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.registration.state.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite> WatchedIo<S> {
    fn note(state: &ConnectionState, polled: &Poll<std::io::Result<usize>>) {
        match polled {
            Poll::Pending => state.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => state.wrote_some(),
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncWrite> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        Self::note(&this.registration.state, &polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        Self::note(&this.registration.state, &polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if this.registration.state.parking() {
            // hyper let an idle connection go: the socket stays open.
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until
    /// the body has ended (or hyper dropped it).
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        request: Option<ActiveRequest>,
    }
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, request: ActiveRequest) -> Self {
        TrackedBody {
            inner,
            request: Some(request),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.request.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::connection_table::ConnectionTable;
    use std::time::Duration;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            client_header_timeout: Duration::from_millis(100),
            keepalive_timeout: Duration::from_millis(200),
            http2_idle_timeout: Duration::from_millis(300),
            send_timeout: Duration::from_millis(50),
            ..ConnectionLimits::default()
        }
    }

    /// `expired` resolves with `expiry` about `after` from now.
    async fn expires(state: &ConnectionState, expiry: Expiry, after: u64) {
        let start = Instant::now();
        assert_eq!(expired(state, &limits()).await, expiry);
        let took = start.elapsed();
        let after = Duration::from_millis(after);
        assert!(
            took + Duration::from_millis(5) >= after && took < after * 3,
            "{expiry:?} after {took:?}, not {after:?}"
        );
    }

    #[tokio::test]
    async fn each_state_has_its_timeout() {
        let table = ConnectionTable::new();
        let conn = table.register(10).expect("room");
        let state = conn.state.clone();
        // Silent: the header timeout.
        expires(&state, Expiry::Header, 100).await;

        // Served one HTTP/1 request, then idle: the keep-alive timeout.
        drop(state.request_started(false));
        expires(&state, Expiry::Idle, 200).await;
        // A head begins: the header timeout from its first byte.
        state.read_some();
        expires(&state, Expiry::Header, 100).await;

        // A response blocked on a client that does not read: the send
        // timeout, even with the request in flight.
        let _request = state.request_started(false);
        state.write_blocked();
        expires(&state, Expiry::Send, 50).await;
    }

    #[tokio::test]
    async fn one_watch_follows_many_requests_and_idles_from_the_last() {
        // One `expired` across requests in turn: its timer, set early on,
        // fires before the deadlines the later requests move on, and must
        // then be set again rather than close a busy connection.
        let table = ConnectionTable::new();
        let conn = table.register(10).expect("room");
        let state = conn.state.clone();
        let limits = limits();
        let watch = expired(&state, &limits);
        tokio::pin!(watch);
        let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
        for _ in 0..8 {
            // A head begins, its request runs 60 ms, then 30 ms idle: past
            // the header timeout and the keep-alive timeout in all.
            state.read_some();
            let request = state.request_started(false);
            tokio::select! {
                why = &mut watch => panic!("{why:?} while a request ran"),
                () = pause(60) => {}
            }
            drop(request);
            tokio::select! {
                why = &mut watch => panic!("{why:?} 30 ms after a request"),
                () = pause(30) => {}
            }
        }
        let idle = Instant::now() - Duration::from_millis(30);
        assert_eq!((&mut watch).await, Expiry::Idle);
        let took = idle.elapsed();
        assert!(
            took + Duration::from_millis(5) >= Duration::from_millis(200)
                && took < Duration::from_millis(600),
            "idle for {took:?}"
        );
    }

    #[tokio::test]
    async fn http2_idles_by_its_own_timeout_and_a_request_in_flight_never_idles() {
        let table = ConnectionTable::new();
        let conn = table.register(10).expect("room");
        let request = conn.state.request_started(true);
        let limits = limits();
        let waited =
            tokio::time::timeout(Duration::from_millis(500), expired(&conn.state, &limits));
        assert!(waited.await.is_err());
        drop(request);
        // Frames between streams (PING acknowledgements) are not a head.
        conn.state.read_some();
        expires(&conn.state, Expiry::Idle, 300).await;
    }
}
