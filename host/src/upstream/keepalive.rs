//! The keep-alive connection pool of one HTTP(S) upstream, used by the send
//! step of the pipeline's upstream phase ([`super::http_client`]): idle
//! HTTP/1.1 connections (hyper's low-level client, one task per
//! connection) kept per upstream address, most recently used first, like
//! nginx's upstream `keepalive`. A connection goes back to the pool when
//! its response body has been read to the end ([`UpstreamBody`]); one whose
//! body was abandoned, or that switched protocols, is closed instead. Idle
//! connections are closed after [`IDLE_TIMEOUT`], and beyond
//! [`MAX_IDLE_PER_ADDRESS`].

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::body::ProxyBody;

/// Idle keep-alive connections are closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// At most this many idle connections are kept per upstream address; one
/// more coming back is closed.
pub const MAX_IDLE_PER_ADDRESS: usize = 256;

/// The sending half of one upstream connection, and where it leads.
#[derive(Debug)]
pub struct Connection {
    pub sender: SendRequest<ProxyBody>,
    /// The address reached (`IP:PORT`, or `host:port` through SOCKS5).
    pub peer: Arc<str>,
    /// Taken from the pool (it has carried a request before).
    pub reused: bool,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<ProxyBody>,
    peer: Arc<str>,
    since: Instant,
}

/// Idle connections of one upstream, per address (the index of the
/// upstream's `endpoints`).
#[derive(Debug)]
pub struct KeepAlivePool {
    addresses: Box<[Mutex<Vec<Idle>>]>,
    idle_timeout: Duration,
    reaper: AtomicBool,
}

impl KeepAlivePool {
    pub fn new(addresses: usize) -> Arc<Self> {
        Self::with_idle_timeout(addresses, IDLE_TIMEOUT)
    }

    pub fn with_idle_timeout(addresses: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(KeepAlivePool {
            addresses: (0..addresses).map(|_| Mutex::new(Vec::new())).collect(),
            idle_timeout,
            reaper: AtomicBool::new(false),
        })
    }

    /// The most recently used idle connection to `address` that is still
    /// open and within the idle timeout, if any.
    pub fn checkout(&self, address: usize) -> Option<Connection> {
        let mut idle = self.addresses.get(address)?.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() >= self.idle_timeout {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if !entry.sender.is_closed() {
                return Some(Connection {
                    sender: entry.sender,
                    peer: entry.peer,
                    reused: true,
                });
            }
        }
        None
    }

    /// Keep `connection` for the next request to `address`.
    pub fn put(self: &Arc<Self>, address: usize, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let Some(slot) = self.addresses.get(address) else {
            return;
        };
        let Ok(mut idle) = slot.lock() else {
            return;
        };
        if idle.len() >= MAX_IDLE_PER_ADDRESS {
            return;
        }
        idle.push(Idle {
            sender: connection.sender,
            peer: connection.peer,
            since: Instant::now(),
        });
        drop(idle);
        self.start_reaper();
    }

    /// How many idle connections `address` has.
    #[cfg(test)]
    pub fn idle_count(&self, address: usize) -> usize {
        self.addresses
            .get(address)
            .and_then(|slot| slot.lock().ok().map(|idle| idle.len()))
            .unwrap_or(0)
    }

    /// Close idle connections past the timeout, and closed ones.
    fn close_expired(&self) {
        for slot in self.addresses.iter() {
            if let Ok(mut idle) = slot.lock() {
                idle.retain(|entry| {
                    entry.since.elapsed() < self.idle_timeout && !entry.sender.is_closed()
                });
            }
        }
    }

    /// A task that closes expired idle connections while the pool lives, so
    /// an upstream that gets no more traffic does not keep them open.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.load(Ordering::Relaxed) || self.reaper.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool: Weak<Self> = Arc::downgrade(self);
        let period = self.idle_timeout / 2;
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.close_expired(),
                    None => break,
                }
            }
        });
    }
}

/// Where a connection goes back once its response has been read.
#[derive(Debug)]
struct Checkin {
    pool: Arc<KeepAlivePool>,
    address: usize,
    connection: Connection,
}

/// An upstream response body. Read to its end, it puts its connection back
/// into the pool when dropped; dropped early, it closes it.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    ended: bool,
    checkin: Option<Checkin>,
}

impl UpstreamBody {
    /// `inner`, whose connection goes back to `pool` once it has ended.
    pub fn pooled(
        inner: Incoming,
        pool: &Arc<KeepAlivePool>,
        address: usize,
        connection: Connection,
    ) -> Self {
        UpstreamBody {
            inner,
            ended: false,
            checkin: Some(Checkin {
                pool: pool.clone(),
                address,
                connection,
            }),
        }
    }

    /// `inner`, whose connection is not reused (an upgrade took it over).
    pub fn unpooled(inner: Incoming) -> Self {
        UpstreamBody {
            inner,
            ended: false,
            checkin: None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.checkin = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(checkin) = self.checkin.take() {
            if self.ended || self.inner.is_end_stream() {
                checkin.pool.put(checkin.address, checkin.connection);
            }
        }
    }
}
