//! `ignore = ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]`: client networks
//! a jail never counts, bans or blocks (fail2ban `ignoreip`). Parsed with
//! `std`'s address parser; an address without a prefix is one host.

use std::net::IpAddr;

/// One network: an address with the bits past the prefix cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: u128,
    prefix: u8,
    v4: bool,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| {
            format!("`{text}` is not an address or network (e.g. \"10.0.0.0/8\", \"127.0.0.1\", \"2001:db8::/32\")")
        })?;
        let address = address.to_canonical();
        let v4 = address.is_ipv4();
        let max = if v4 { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network {
            base: bits(address) & mask(prefix, v4),
            prefix,
            v4,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.v4 && bits(ip) & mask(self.prefix, self.v4) == self.base
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(prefix: u8, v4: bool) -> u128 {
    let width = if v4 { 32 } else { 128 };
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (width - u32::from(prefix))) & (u128::MAX >> (128 - width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn networks_and_single_addresses() {
        let lan = Network::parse("10.0.0.0/8").expect("valid");
        assert!(lan.contains(ip("10.1.2.3")));
        assert!(!lan.contains(ip("11.0.0.1")));
        assert!(lan.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped counts");
        let host = Network::parse("127.0.0.1").expect("valid");
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let v6 = Network::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains(ip("2001:db8:1::7")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all = Network::parse("0.0.0.0/0").expect("valid");
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("::1")));
        assert!(Network::parse("10.1.2.3/8")
            .expect("valid")
            .contains(ip("10.200.0.1")));
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        assert!(Network::parse("10.0.0/8")
            .expect_err("refused")
            .starts_with("`10.0.0/8` is not an address or network"));
        assert_eq!(
            Network::parse("10.0.0.0/33"),
            Err("`10.0.0.0/33`: the prefix length must be 0 to 32".to_owned())
        );
        assert_eq!(
            Network::parse("::/129"),
            Err("`::/129`: the prefix length must be 0 to 128".to_owned())
        );
    }
}
