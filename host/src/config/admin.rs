//! `[admin]`: where the admin listener (`crate::admin`: `/reload`,
//! `/healthz`, `/metrics`, ...) binds. Read at config load, before any
//! request; applied at start (a changed address needs a restart).

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::model::admin::{AdminConfig, DEFAULT_ADMIN_LISTEN};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
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
