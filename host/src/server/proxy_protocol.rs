//! PROXY protocol v2 (haproxy's binary header, as Fly's raw TCP
//! pass-through with `proxy_proto` sends it): read before anything else on a
//! connection of a listener configured for it, to learn the client's address
//! (the socket peer is the edge). Exactly the header's bytes are consumed;
//! TLS or HTTP follows untouched. A connection without a valid header is
//! closed: a listener that expects the header must not trust its absence.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Upper bound on the address block and TLVs we accept.
const MAX_PAYLOAD: usize = 4096;

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client, for a PROXY command over TCP/IPv4 or IPv6;
    /// `None` for LOCAL (the edge's own health check) and other families.
    pub source: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection did not start with a PROXY protocol v2 header")]
    NoSignature,
    #[error("PROXY protocol version {0} is not supported (only v2)")]
    Version(u8),
    #[error("unknown PROXY protocol command {0}")]
    Command(u8),
    #[error("PROXY protocol header of {0} bytes is too long")]
    TooLong(usize),
    #[error("PROXY protocol address block of {len} bytes is too short for family {family:#04x}")]
    Truncated { family: u8, len: usize },
}

/// Read one v2 header from the start of `stream`.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed).await?;
    if fixed[..12] != SIGNATURE {
        return Err(ProxyHeaderError::NoSignature);
    }
    let version = fixed[12] >> 4;
    let command = fixed[12] & 0x0f;
    if version != 2 {
        return Err(ProxyHeaderError::Version(version));
    }
    let family = fixed[13];
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_PAYLOAD {
        return Err(ProxyHeaderError::TooLong(len));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    match command {
        0 => Ok(ProxyHeader { source: None }),
        1 => Ok(ProxyHeader {
            source: source_address(family, &payload)?,
        }),
        other => Err(ProxyHeaderError::Command(other)),
    }
}

fn source_address(family: u8, payload: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let truncated = || ProxyHeaderError::Truncated {
        family,
        len: payload.len(),
    };
    match family {
        // TCP over IPv4: src(4) dst(4) sport(2) dport(2)
        0x11 => {
            let block: &[u8; 12] = payload
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(truncated)?;
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        // TCP over IPv6: src(16) dst(16) sport(2) dport(2)
        0x21 => {
            let block: &[u8; 36] = payload
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(truncated)?;
            let mut src = [0u8; 16];
            src.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(src)), port)))
        }
        // UNSPEC, UDP, unix sockets: no client address to use.
        _ => Ok(None),
    }
}

/// A v2 PROXY header for a TCP connection from `source` to `destination`
/// (both the same IP family), with `tlv` appended. For tests and tools.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr, tlv: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    let mut block = Vec::new();
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
        }
        (s, d) => {
            out.push(0x21);
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
                IpAddr::V6(ip) => ip.octets(),
            };
            block.extend_from_slice(&v6(s));
            block.extend_from_slice(&v6(d));
        }
    }
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    block.extend_from_slice(tlv);
    let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&block);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<ProxyHeader, ProxyHeaderError>, Vec<u8>) {
        let mut reader = bytes;
        let header = read_header(&mut reader).await;
        (header, reader.to_vec())
    }

    #[tokio::test]
    async fn ipv4_and_ipv6_sources_with_tlvs_and_the_rest_left_unread() {
        let src: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let dst: SocketAddr = "10.0.0.1:443".parse().unwrap();
        // A TLV (type 0x04 NOOP, length 2) as an edge may add.
        let mut bytes = encode_v2(src, dst, &[0x04, 0x00, 0x02, 0xaa, 0xbb]);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (header, rest) = parse(&bytes).await;
        assert_eq!(header.unwrap().source, Some(src));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let src6: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let (header, _) = parse(&encode_v2(src6, dst6, &[])).await;
        assert_eq!(header.unwrap().source, Some(src6));
    }

    #[tokio::test]
    async fn local_command_and_unspec_family_carry_no_address() {
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(parse(&local).await.0.unwrap().source, None);
        let mut unspec = SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(parse(&unspec).await.0.unwrap().source, None);
    }

    #[tokio::test]
    async fn malformed_headers_are_refused() {
        let plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            parse(plain).await.0,
            Err(ProxyHeaderError::NoSignature)
        ));
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        assert!(matches!(
            parse(v1).await.0,
            Err(ProxyHeaderError::NoSignature)
        ));

        let mut bad_version = SIGNATURE.to_vec();
        bad_version.extend_from_slice(&[0x11, 0x11, 0x00, 0x00]);
        assert!(matches!(
            parse(&bad_version).await.0,
            Err(ProxyHeaderError::Version(1))
        ));

        let mut short = SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(matches!(
            parse(&short).await.0,
            Err(ProxyHeaderError::Truncated { .. })
        ));

        let mut long = SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(
            parse(&long).await.0,
            Err(ProxyHeaderError::TooLong(65535))
        ));

        let mut cut = SIGNATURE.to_vec();
        cut.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 1, 2]);
        assert!(matches!(parse(&cut).await.0, Err(ProxyHeaderError::Io(_))));
    }
}
