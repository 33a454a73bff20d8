//! Addresses as text, the way `Display` writes them, for the per-request
//! strings of the pipeline (client IP, `X-Forwarded-For`, the log record's
//! peer) and the runtime's rate-limit keys (`rate-key.address`). IPv4 is written digit by digit: `Ipv4Addr`'s `Display` goes
//! through the formatting machinery (~1.3k instructions, twice per request);
//! IPv6 keeps `Display` (its zero-run compression is not worth redoing).

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `ip` as `IpAddr`'s `Display` prints it.
pub fn ip_text(ip: IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// `addr` as `SocketAddr`'s `Display` prints it (`1.2.3.4:80`, `[::1]:80`).
pub fn socket_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => {
            let mut out = String::with_capacity(21);
            push_v4(&mut out, *v4.ip());
            out.push(':');
            push_decimal(&mut out, u64::from(v4.port()));
            out
        }
        SocketAddr::V6(_) => addr.to_string(),
    }
}

/// Writes `ip` as `IpAddr`'s `Display` prints it into `out` (a `String`,
/// or a buffer on the stack).
pub fn push_ip(out: &mut impl Write, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_v4(out, v4),
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_v4(out: &mut impl Write, ip: Ipv4Addr) {
    // Writing to a String or a sized buffer cannot fail.
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            let _ = out.write_char('.');
        }
        if octet >= 100 {
            let _ = out.write_char(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            let _ = out.write_char(char::from(b'0' + octet / 10 % 10));
        }
        let _ = out.write_char(char::from(b'0' + octet % 10));
    }
}

/// `n` in decimal, as its `Display` writes it.
pub fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut rest = n;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in digits[..len].iter().rev() {
        out.push(char::from(digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_as_display() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.0.255",
            "100.64.9.10",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "2001:db8::a:b",
            "::ffff:10.1.2.3",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip), ip.to_string());
            for port in [0, 7, 80, 443, 8080, 65535] {
                let addr = SocketAddr::new(ip, port);
                assert_eq!(socket_text(addr), addr.to_string());
            }
        }
    }

    #[test]
    fn decimals_as_display_writes_them() {
        for n in [0, 9, 10, 99, 1234, u64::from(u32::MAX), u64::MAX] {
            let mut text = String::new();
            push_decimal(&mut text, n);
            assert_eq!(text, n.to_string());
        }
    }
}
