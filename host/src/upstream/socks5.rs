//! Dialling through tailscaled's SOCKS5 server (`socks5` dial mode, for
//! tailscaled in userspace networking): the CONNECT request carries the
//! upstream's *hostname* (socks5h), which tailscaled resolves with MagicDNS;
//! Tailgate never resolves tailnet names itself in this mode. Used by the
//! upstream connector; the stream returned is the tunnel, ready for TLS.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The SOCKS5 server could not be used, or refused the target.
#[derive(Debug, thiserror::Error)]
#[error("via SOCKS5 proxy {proxy}: {source}")]
pub struct Socks5Error {
    pub proxy: SocketAddr,
    #[source]
    pub source: tokio_socks::Error,
}

/// Open a tunnel to `host:port` (host without IPv6 brackets) through `proxy`.
pub async fn connect(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, Socks5Error> {
    let stream = tokio_socks::tcp::Socks5Stream::connect(proxy, (host, port))
        .await
        .map_err(|source| Socks5Error { proxy, source })?;
    let stream = stream.into_inner();
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot SOCKS5 server that records the CONNECT request's address
    /// bytes (ATYP onwards) and answers success, then echoes.
    async fn recording_proxy() -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut greeting = [0u8; 2];
            s.read_exact(&mut greeting).await.expect("greeting");
            let mut methods = vec![0u8; usize::from(greeting[1])];
            s.read_exact(&mut methods).await.expect("methods");
            s.write_all(&[5, 0]).await.expect("method reply");
            let mut head = [0u8; 4];
            s.read_exact(&mut head).await.expect("request head");
            let mut address = vec![head[3]];
            match head[3] {
                3 => {
                    let mut len = [0u8; 1];
                    s.read_exact(&mut len).await.expect("len");
                    address.push(len[0]);
                    let mut rest = vec![0u8; usize::from(len[0]) + 2];
                    s.read_exact(&mut rest).await.expect("name");
                    address.extend(rest);
                }
                1 => {
                    let mut rest = [0u8; 6];
                    s.read_exact(&mut rest).await.expect("ipv4");
                    address.extend(rest);
                }
                _ => {}
            }
            let _ = tx.send(address);
            s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80])
                .await
                .expect("reply");
            let mut buf = [0u8; 5];
            if s.read_exact(&mut buf).await.is_ok() {
                let _ = s.write_all(&buf).await;
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn the_hostname_is_sent_not_a_resolved_address() {
        let (proxy, seen) = recording_proxy().await;
        let mut tunnel = connect(proxy, "docs.tail8d86e.ts.net", 443)
            .await
            .expect("connect");
        let address = seen.await.expect("request recorded");
        let name = b"docs.tail8d86e.ts.net";
        let mut expected = vec![3, name.len() as u8];
        expected.extend_from_slice(name);
        expected.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(address, expected, "ATYP 3 (domain name) with the hostname");
        tunnel.write_all(b"hello").await.expect("write");
        let mut back = [0u8; 5];
        tunnel.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"hello");
    }

    #[tokio::test]
    async fn a_proxy_that_is_down_is_a_clear_error() {
        let proxy = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind");
        let err = connect(proxy, "docs.tail8d86e.ts.net", 443)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("via SOCKS5 proxy {proxy}: ")),
            "{err}"
        );
    }
}
