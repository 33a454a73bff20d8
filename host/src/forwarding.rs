//! Who the client is and what the upstream is told about it: the pipeline
//! resolves a [`ClientInfo`] right after routing (trusted-proxy rules), and
//! the upstream phase applies it as `X-Forwarded-*`, `X-Real-IP` and
//! `x-request-id`, after hop-by-hop headers are stripped (both directions).

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::address_text::ip_text;
use crate::config::model::ServerConfig;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The hop-by-hop fields, never forwarded (RFC 9110 7.6.1), with the
/// obsolete ones that act as such (`Keep-Alive`, `Proxy-Connection`); a
/// field's bit is its index here. A `static`: a `const` array of
/// `HeaderName`s is built and dropped at every use.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// `name`'s bit if it is a hop-by-hop field, else 0 (it runs for every
/// header field, twice per request). Written out: each `==` against a
/// constant compiles to a tag compare, where `HOP_BY_HOP.iter().position`
/// runs `HeaderName`'s general equality nine times per field (3.4k
/// instructions a request against ~0.9k, callgrind).
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    let index = if *name == header::CONNECTION {
        0
    } else if *name == header::TE {
        1
    } else if *name == header::TRAILER {
        2
    } else if *name == header::TRANSFER_ENCODING {
        3
    } else if *name == header::UPGRADE {
        4
    } else if *name == header::PROXY_AUTHENTICATE {
        5
    } else if *name == header::PROXY_AUTHORIZATION {
        6
    } else {
        match name.as_str() {
            "keep-alive" => 7,
            "proxy-connection" => 8,
            _ => return 0,
        }
    };
    1 << index
}

/// The client as the proxy and its plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    /// The socket peer is one of `server.trusted_proxies`.
    pub peer_trusted: bool,
    /// The peer, or the `client_ip_header` value when the peer is trusted.
    pub client_ip: IpAddr,
    /// "http" or "https" as the client used it.
    pub scheme: String,
    /// `X-Forwarded-For` to send upstream.
    pub forwarded_for: String,
    /// Unique id of this request.
    pub request_id: String,
    /// `client_ip` as text, formatted once per request (`X-Real-IP`, the
    /// plugins' `client-ip`, the log record).
    pub client_ip_text: String,
}

impl ClientInfo {
    /// Apply the trusted-proxy rules to a request that arrived from `peer` on
    /// a listener speaking `listener_scheme`.
    pub fn resolve(
        peer: SocketAddr,
        headers: &HeaderMap,
        server: &ServerConfig,
        listener_scheme: &str,
    ) -> Self {
        let peer_ip = peer.ip().to_canonical();
        let peer_trusted = is_trusted(peer_ip, &server.trusted_proxies);

        let client_ip = server
            .client_ip_header
            .as_ref()
            .filter(|_| peer_trusted)
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .unwrap_or(peer_ip);

        let scheme = headers
            .get(&X_FORWARDED_PROTO)
            .filter(|_| peer_trusted)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| v == "http" || v == "https")
            .unwrap_or_else(|| listener_scheme.to_string());

        // An address is formatted once here, not by each user.
        let peer_text = ip_text(peer_ip);
        let client_ip_text = if client_ip == peer_ip {
            peer_text.clone()
        } else {
            ip_text(client_ip)
        };
        let forwarded_for = if peer_trusted {
            let chain: Vec<&str> = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            if chain.is_empty() {
                peer_text
            } else {
                format!("{}, {peer_text}", chain.join(", "))
            }
        } else {
            peer_text
        };

        let request_id = headers
            .get(&X_REQUEST_ID)
            .filter(|_| peer_trusted)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_acceptable_request_id(v))
            .map(str::to_string)
            .unwrap_or_else(new_request_id);

        ClientInfo {
            peer,
            peer_trusted,
            client_ip,
            scheme,
            forwarded_for,
            request_id,
            client_ip_text,
        }
    }

    /// Set `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Real-IP` and
    /// `x-request-id` on an upstream-bound request, replacing what was there.
    pub fn apply_forwarding_headers(&self, headers: &mut HeaderMap) {
        let values = [
            (X_FORWARDED_FOR, self.forwarded_for.as_str()),
            (X_FORWARDED_PROTO, self.scheme.as_str()),
            (X_REQUEST_ID, self.request_id.as_str()),
        ];
        for (name, value) in values {
            // Built from validated parts: IPs, "http(s)", a checked id.
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&self.client_ip_text) {
            headers.insert(X_REAL_IP, value);
        }
    }
}

/// Is `ip` inside one of the trusted networks?
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// A fresh request id: 128 random bits as 32 lower-case hex digits.
pub fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u128>();
    // Digit by digit into bytes: `format!("{:032x}")` cost ~300 instructions
    // a request, collecting `char`s ~700.
    let mut digits = [0u8; 32];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((bits >> ((31 - i) * 4)) & 0xf) as usize];
    }
    // Hex digits are ASCII: always valid UTF-8.
    std::str::from_utf8(&digits).unwrap_or_default().to_owned()
}

/// A client-supplied id is reused only when short and plain.
fn is_acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The protocol an HTTP/1.1 request asks to switch to (`Upgrade` with
/// `Connection: upgrade`), e.g. `websocket`.
pub fn requested_upgrade(version: http::Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != http::Version::HTTP_11 || !connection_has_token(headers, "upgrade") {
        return None;
    }
    headers.get(header::UPGRADE).cloned()
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(value_tokens)
}

/// The comma-separated tokens of one `Connection` value.
fn value_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Remove hop-by-hop fields and every field the `Connection` header names.
/// With `upgrade`, the upgrade handshake fields are put back
/// (`Upgrade: <protocol>`, `Connection: upgrade`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    // Most maps have none of these or an upstream's `Connection:
    // keep-alive`: one pass over the names finds the ones present, and
    // only those are removed (each removal hashes its name), with no list
    // built (this runs twice per request).
    let present = headers
        .keys()
        .fold(0u16, |bits, name| bits | hop_by_hop_bit(name));
    if present & 1 != 0 {
        // The fields `Connection` names go too. Its values are cloned
        // (shared bytes, not copied) so the map can change while their
        // tokens are read; a second value is rare.
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let more: Vec<HeaderValue> = values.cloned().collect();
        for value in first.iter().chain(&more) {
            for token in value_tokens(value) {
                // By text: a token that is no field name removes nothing.
                headers.remove(token);
            }
        }
    }
    if present != 0 {
        for (bit, name) in HOP_BY_HOP.iter().enumerate() {
            if present & (1 << bit) != 0 {
                headers.remove(name);
            }
        }
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::UnknownHost;

    fn server(trusted: &[&str]) -> ServerConfig {
        ServerConfig {
            listen: vec![],
            workers: 0,
            client_ip_header: Some(HeaderName::from_static("fly-client-ip")),
            trusted_proxies: trusted.iter().map(|n| n.parse().expect("net")).collect(),
            unknown_host: UnknownHost::Close,
            proxy_protocol: false,
            drain_timeout: std::time::Duration::from_secs(10),
            connections: Default::default(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().expect("socket addr")
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[
            ("fly-client-ip", "9.9.9.9"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "client-chosen"),
        ]);
        let c = ClientInfo::resolve(
            peer("203.0.113.7:5555"),
            &h,
            &server(&["10.0.0.0/8"]),
            "http",
        );
        assert!(!c.peer_trusted);
        assert_eq!(c.client_ip.to_string(), "203.0.113.7");
        assert_eq!(c.forwarded_for, "203.0.113.7");
        assert_eq!(c.scheme, "http");
        assert_ne!(c.request_id, "client-chosen");
        assert_eq!(c.request_id.len(), 32);
        assert!(c.request_id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn trusted_peer_supplies_client_ip_chain_proto_and_id() {
        let h = headers(&[
            ("fly-client-ip", " 198.51.100.4 "),
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-request-id", "abc-123"),
        ]);
        let c = ClientInfo::resolve(peer("10.0.0.2:1234"), &h, &server(&["10.0.0.0/8"]), "http");
        assert!(c.peer_trusted);
        assert_eq!(c.client_ip.to_string(), "198.51.100.4");
        assert_eq!(c.forwarded_for, "198.51.100.4, 10.1.1.1, 10.0.0.2");
        assert_eq!(c.scheme, "https");
        assert_eq!(c.request_id, "abc-123");
    }

    #[test]
    fn trusted_peer_with_bad_header_falls_back_to_peer() {
        let h = headers(&[
            ("fly-client-ip", "not-an-ip"),
            ("x-forwarded-proto", "gopher"),
            ("x-request-id", "has spaces"),
        ]);
        let c = ClientInfo::resolve(peer("10.0.0.2:1234"), &h, &server(&["10.0.0.0/8"]), "http");
        assert_eq!(c.client_ip.to_string(), "10.0.0.2");
        assert_eq!(c.forwarded_for, "10.0.0.2");
        assert_eq!(c.scheme, "http");
        assert_ne!(c.request_id, "has spaces");
    }

    #[test]
    fn ipv4_mapped_peer_matches_ipv4_networks() {
        let c = ClientInfo::resolve(
            peer("[::ffff:127.0.0.1]:80"),
            &headers(&[("fly-client-ip", "2001:db8::1")]),
            &server(&["127.0.0.1/32"]),
            "http",
        );
        assert!(c.peer_trusted);
        assert_eq!(c.client_ip.to_string(), "2001:db8::1");
        assert_eq!(c.forwarded_for, "127.0.0.1");
    }

    #[test]
    fn forwarding_headers_replace_client_values() {
        let c = ClientInfo::resolve(
            peer("203.0.113.7:1"),
            &HeaderMap::new(),
            &server(&[]),
            "http",
        );
        let mut h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-request-id", "spoofed"),
        ]);
        c.apply_forwarding_headers(&mut h);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        assert_eq!(h["x-real-ip"], "203.0.113.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-request-id"], c.request_id.as_str());
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_are_stripped() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic Zm9v"),
            ("proxy-authenticate", "Basic"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("authorization", "Bearer kept"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h, None);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["authorization", "content-type"]);
    }

    #[test]
    fn upgrade_handshake_survives_stripping() {
        let mut h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        let upgrade = requested_upgrade(http::Version::HTTP_11, &h);
        assert_eq!(
            upgrade.as_ref().map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        strip_hop_by_hop(&mut h, upgrade.as_ref());
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn upgrade_needs_http11_and_connection_token() {
        let h = headers(&[("upgrade", "websocket")]);
        assert!(requested_upgrade(http::Version::HTTP_11, &h).is_none());
        let h = headers(&[("upgrade", "websocket"), ("connection", "Upgrade")]);
        assert!(requested_upgrade(http::Version::HTTP_10, &h).is_none());
        assert!(requested_upgrade(http::Version::HTTP_2, &h).is_none());
        assert!(requested_upgrade(http::Version::HTTP_11, &h).is_some());
    }

    #[test]
    fn request_ids_are_unique() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        // Every digit is lower-case hex and every position varies (all 128
        // bits are used, none repeated).
        let ids: Vec<String> = (0..64).map(|_| new_request_id()).collect();
        for at in 0..32 {
            let digits: std::collections::BTreeSet<u8> =
                ids.iter().map(|id| id.as_bytes()[at]).collect();
            assert!(digits
                .iter()
                .all(|d| d.is_ascii_hexdigit() && !d.is_ascii_uppercase()));
            assert!(digits.len() > 4, "position {at}: {digits:?}");
        }
    }
}
