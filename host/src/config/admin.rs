//! `[admin]`: where the admin listener (`crate::admin`: `/reload`,
//! `/healthz`, `/metrics`, ...) binds. Read at config load, before any
//! request; applied at start (a changed address needs a restart).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};

/// Loopback only by default: the admin API can reload the config.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 12345));

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
}

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

pub(super) fn build_admin(src: &Source<'_>, raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen = match raw.listen {
        None => DEFAULT_ADMIN_LISTEN,
        Some(addr) => addr.get_ref().parse().map_err(|_| {
            src.error(
                addr.span(),
                None,
                ConfigErrorKind::ListenAddress(addr.get_ref().clone()),
            )
        })?,
    };
    Ok(AdminConfig { listen })
}
