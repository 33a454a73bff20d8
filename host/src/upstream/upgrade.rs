//! HTTP Upgrade (WebSocket) pass-through: once the upstream answered 101 and
//! the client got it, both connections are taken over from hyper and bytes
//! are copied both ways. Like nginx, the tunnel ends when either side has
//! closed (the other direction gets a short grace period to drain). Runs in
//! its own task after the pipeline's send phase; the exchange is logged when
//! the tunnel ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the other direction may go on after one side closed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Both halves of an upgrade in progress.
#[derive(Debug)]
pub struct PendingUpgrade {
    pub client: OnUpgrade,
    pub upstream: OnUpgrade,
}

/// Bytes moved by a finished tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelBytes {
    pub from_client: u64,
    pub to_client: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("client side of the upgrade: {0}")]
    Client(hyper::Error),
    #[error("upstream side of the upgrade: {0}")]
    Upstream(hyper::Error),
}

impl PendingUpgrade {
    /// Wait for both upgrades and copy bytes until the tunnel closes.
    pub async fn run(self) -> Result<TunnelBytes, TunnelError> {
        let (client, upstream) = tokio::join!(self.client, self.upstream);
        let client = TokioIo::new(client.map_err(TunnelError::Client)?);
        let upstream = TokioIo::new(upstream.map_err(TunnelError::Upstream)?);
        Ok(splice(client, upstream).await)
    }
}

/// Copy both ways until one side closes (plus the grace period).
pub async fn splice<C, U>(client: C, upstream: U) -> TunnelBytes
where
    C: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let from_client = AtomicU64::new(0);
    let to_client = AtomicU64::new(0);
    let outbound = pump(client_read, upstream_write, &from_client);
    let inbound = pump(upstream_read, client_write, &to_client);
    tokio::pin!(outbound, inbound);
    tokio::select! {
        _ = &mut outbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut inbound).await;
        }
        _ = &mut inbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut outbound).await;
        }
    }
    TunnelBytes {
        from_client: from_client.load(Ordering::Relaxed),
        to_client: to_client.load(Ordering::Relaxed),
    }
}

/// Copy `from` into `to` until EOF or an error, then shut `to` down.
async fn pump<R, W>(mut from: R, mut to: W, count: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_ends_when_one_side_closes() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let tunnel = tokio::spawn(splice(client, upstream));

        client_peer.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 5];
        upstream_peer.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hello");
        upstream_peer.write_all(b"hi back!").await.expect("write");
        let mut buf = [0u8; 8];
        client_peer.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi back!");

        // The upstream closes; the client keeps its end open. The tunnel
        // still ends (after the grace period) and the client sees EOF.
        drop(upstream_peer);
        let bytes = tokio::time::timeout(Duration::from_secs(5), tunnel)
            .await
            .expect("tunnel ended")
            .expect("task");
        assert_eq!(
            bytes,
            TunnelBytes {
                from_client: 5,
                to_client: 8
            }
        );
        let mut rest = Vec::new();
        client_peer.read_to_end(&mut rest).await.expect("eof");
        assert!(rest.is_empty());
    }
}
