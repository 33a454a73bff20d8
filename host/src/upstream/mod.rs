//! Upstreams: where the pipeline's upstream phase sends a routed request.
//! [`UpstreamPool`] holds one [`UpstreamTarget`] per configured upstream —
//! an HTTP(S) client with its keep-alive pool, or a static-file folder —
//! built once per active config. HTTP(S) upstreams are dialled by the
//! [`connector`] through the tailnet ([`dns`] or [`socks5`]), within the
//! `[tailnet]` allowlist, with the optional [`whois`] identity check and
//! per-address [`health`]. [`request`] builds what is sent to them.

pub mod connector;
pub mod dns;
pub mod health;
pub mod http_client;
pub mod keepalive;
pub mod redis_dialer;
pub mod request;
pub mod socks5;
pub mod static_files;
pub mod tls;
pub mod upgrade;
pub mod whois;

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

pub use self::http_client::{HttpUpstreamClient, UpstreamResponse, UpstreamSetupError};
pub use self::static_files::StaticRoot;
pub use self::upgrade::{PendingUpgrade, TunnelBytes};

use crate::config::model::{Config, UpstreamKind, UpstreamName};

/// One upstream, ready to take requests.
#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    Http(Arc<HttpUpstreamClient>),
    Static(StaticRoot),
}

/// Every upstream of a config, by name.
#[derive(Debug, Default)]
pub struct UpstreamPool {
    targets: HashMap<UpstreamName, UpstreamTarget>,
    /// Active health checks; they stop with the pool (e.g. on config swap).
    checks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for UpstreamPool {
    fn drop(&mut self) {
        for check in &self.checks {
            check.abort();
        }
    }
}

impl UpstreamPool {
    /// Build a client (or folder) per upstream. Upstreams with
    /// `tls_verify = false` are warned about here, once.
    pub fn new(config: &Config) -> Result<Self, UpstreamSetupError> {
        let mut targets = HashMap::with_capacity(config.upstreams.len());
        let mut checks = Vec::new();
        let dialer = connector::TailnetDialer::new(&config.tailnet);
        for (name, upstream) in &config.upstreams {
            let target = match &upstream.kind {
                UpstreamKind::Static { root } => {
                    UpstreamTarget::Static(StaticRoot::new(name.as_str(), root))
                }
                UpstreamKind::Http(http) => {
                    if http.tls && !http.tls_verify {
                        tracing::warn!(
                            upstream = name.as_str(),
                            url = %http.url,
                            "TLS certificate verification is OFF for this upstream (tls_verify = false)"
                        );
                    }
                    let client = HttpUpstreamClient::new(name, http, &dialer)?;
                    checks.extend(client.spawn_active_checks());
                    UpstreamTarget::Http(Arc::new(client))
                }
            };
            targets.insert(name.clone(), target);
        }
        let dials = targets
            .values()
            .any(|t| matches!(t, UpstreamTarget::Http(_)));
        if dials && config.tailnet.allow.is_none() {
            tracing::warn!(
                "[tailnet] has no `allow` list: every upstream in the config may be dialled; list them to pin the targets"
            );
        }
        Ok(UpstreamPool { targets, checks })
    }

    pub fn get(&self, name: &UpstreamName) -> Option<&UpstreamTarget> {
        self.targets.get(name)
    }
}
