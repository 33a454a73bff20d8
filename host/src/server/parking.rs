//! Idle HTTP/1.1 keep-alive connections without hyper, as nginx frees a
//! keep-alive connection's buffers while it waits: hyper's HTTP/1
//! connection keeps an 8 KiB read buffer, an 8 KiB write buffer, the last
//! response's header map and its dispatcher for as long as the connection
//! is open (~25 KiB of the ~28 KiB an idle connection cost). So once a
//! response has been written and nothing else is in flight, hyper is asked
//! to let the connection go (a graceful shutdown, which hyper carries out at
//! once only when it is idle between requests; the socket's shutdown is not
//! passed on, `WatchedIo`), the socket is taken back with whatever hyper had
//! read and not parsed, and the connection is *parked*: only the socket,
//! its place in the connection table and its timeouts remain. When the
//! client sends again, a fresh hyper connection serves it.
//!
//! Also here: telling HTTP/2 prior knowledge (the client preface) from
//! HTTP/1 on a new connection, as hyper-util's auto builder does, so the
//! HTTP/1 side can be served by hyper's own `http1` connection, which gives
//! the socket back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::connection_table::ConnectionState;
use super::timeouts::{Expiry, WatchedIo};
use super::woken::PollWhenWoken;

/// How long a connection stays idle in hyper before it is parked. A busy
/// keep-alive connection (the next request within a round trip) never
/// parks, so it does not pay for a fresh hyper connection per request; an
/// idle one gives its buffers back almost at once.
pub const PARK_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client socket a parked connection can wait on.
pub trait ReadReady {
    /// Ready when bytes (or the end of the stream) may be read. Only
    /// called after a read returned `Pending`.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (socket, tls) = self.get_ref();
        if !tls.wants_read() {
            // Plaintext (or a close) is waiting in rustls: read it now.
            return Poll::Ready(Ok(()));
        }
        socket.poll_read_ready(cx)
    }
}

/// The client opened with the HTTP/2 preface (prior knowledge). Reads no
/// further than the first byte that differs from it; what was read is put
/// back in `io` for hyper.
pub async fn opens_with_h2_preface<S: AsyncRead + Unpin>(
    io: &mut WatchedIo<S>,
) -> io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let h2 = loop {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            break false;
        }
        let end = filled + n;
        let matches = buf[filled..end] == H2_PREFACE[filled..end];
        filled = end;
        if !matches {
            break false;
        }
        if filled == H2_PREFACE.len() {
            break true;
        }
    };
    io.unread(Bytes::copy_from_slice(&buf[..filled]));
    Ok(h2)
}

/// Resolves when a parked connection's client sends (or closes).
pub fn readable<S: ReadReady>(io: &WatchedIo<S>) -> impl Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| {
        if io.has_unread() {
            return Poll::Ready(Ok(()));
        }
        io.get_ref().poll_read_ready(cx)
    })
}

/// How one hyper HTTP/1 connection on the socket ended.
pub enum Http1End {
    /// hyper's connection ended (closed, failed, upgraded); so does the
    /// client connection.
    Closed(Result<(), hyper::Error>),
    /// A timeout of the connection's state passed, or it was shed.
    Expired(Expiry),
    /// hyper let the idle connection go: park the socket.
    Parked,
}

/// Whether hyper may be asked to let the connection go: every request it
/// received since `served_before` has been answered and written out, and
/// nothing of a next one has arrived.
pub fn idle_in_hyper(state: &ConnectionState, served_before: u64) -> bool {
    let now = state.snapshot();
    now.active == 0
        && !now.tunnel
        && !now.http2
        && now.served > served_before
        && now.write_blocked_ms.is_none()
        && now.head_started_ms.is_none()
}

/// Drive one hyper HTTP/1 connection until it ends, a timeout passes or it
/// goes idle (then it is asked to let the socket go). `draining` is set
/// when shutdown began: the connection then finishes what is in flight and
/// closes, as before.
pub async fn drive_http1<C>(
    connection: &mut C,
    state: &ConnectionState,
    served_before: u64,
    expiry: Pin<&mut impl Future<Output = Expiry>>,
    shutdown: Pin<&mut impl Future<Output = ()>>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
) -> Http1End
where
    C: Future<Output = Result<(), hyper::Error>> + Unpin,
{
    // Most of the task's wake-ups are hyper's: these two are polled only
    // when they woke it.
    let mut expiry = PollWhenWoken::new(expiry);
    let mut shutdown = PollWhenWoken::new(shutdown);
    let mut draining = false;
    // hyper was asked to let go while it was not idle (a request body still
    // arriving after its response): it closes after this exchange.
    let mut refused = false;
    // Since when the connection has been idle, by its served count: parked
    // once it has stayed so for `PARK_AFTER`. The timer is not moved at
    // every request (a timer-wheel removal and insertion each): when it
    // fires early, it is set again for the idle time left.
    let park_timer = tokio::time::sleep(PARK_AFTER);
    tokio::pin!(park_timer);
    let mut idle_at: Option<(u64, tokio::time::Instant)> = None;
    std::future::poll_fn(move |cx| {
        if !draining && Pin::new(&mut shutdown).poll(cx).is_ready() {
            draining = true;
            graceful_shutdown(Pin::new(connection));
        }
        if let Poll::Ready(ended) = Pin::new(&mut *connection).poll(cx) {
            return Poll::Ready(Http1End::Closed(ended));
        }
        if draining {
            return Poll::Pending;
        }
        if let Poll::Ready(why) = Pin::new(&mut expiry).poll(cx) {
            return Poll::Ready(Http1End::Expired(why));
        }
        if refused || !idle_in_hyper(state, served_before) {
            idle_at = None;
            return Poll::Pending;
        }
        let served = state.snapshot().served;
        let idle_since = match idle_at {
            Some((at, since)) if at == served => since,
            _ => {
                let since = tokio::time::Instant::now();
                idle_at = Some((served, since));
                since
            }
        };
        while park_timer.as_mut().poll(cx).is_ready() {
            let park_at = idle_since + PARK_AFTER;
            if park_at > tokio::time::Instant::now() {
                // Set while an earlier idle spell ran: not idle long enough.
                park_timer.as_mut().reset(park_at);
                continue;
            }
            // Idle, hyper closes at once, without touching the socket.
            state.set_parking(true);
            graceful_shutdown(Pin::new(connection));
            let polled = Pin::new(&mut *connection).poll(cx);
            state.set_parking(false);
            match polled {
                Poll::Ready(Ok(())) => return Poll::Ready(Http1End::Parked),
                Poll::Ready(Err(e)) => return Poll::Ready(Http1End::Closed(Err(e))),
                Poll::Pending => {
                    tracing::debug!("connection busy when it looked idle: closing after it");
                    refused = true;
                    break;
                }
            }
        }
        Poll::Pending
    })
    .await
}
