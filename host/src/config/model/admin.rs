//! The validated `[admin]` section: where the admin listener binds. Built by
//! `config::admin` at load; read by `crate::admin` at start-up.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Loopback only by default: the admin API can reload the config.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 12345));

/// The validated `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN,
        }
    }
}
