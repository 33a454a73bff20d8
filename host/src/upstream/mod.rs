//! Upstreams: where the pipeline's upstream phase sends a routed request.
//! [`UpstreamPool`] holds one [`UpstreamTarget`] per configured upstream —
//! an HTTP(S) client with its keep-alive pool, or a static-file folder —
//! built once per active config.

mod connector;
pub mod http_client;
pub mod static_files;
pub mod tls;
pub mod upgrade;

use std::collections::HashMap;

pub use self::http_client::{HttpUpstreamClient, UpstreamResponse, UpstreamSetupError};
pub use self::static_files::StaticRoot;
pub use self::upgrade::{PendingUpgrade, TunnelBytes};

use crate::config::model::{Config, UpstreamKind, UpstreamName};

/// One upstream, ready to take requests.
#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    Http(Box<HttpUpstreamClient>),
    Static(StaticRoot),
}

/// Every upstream of a config, by name.
#[derive(Debug, Default)]
pub struct UpstreamPool {
    targets: HashMap<UpstreamName, UpstreamTarget>,
}

impl UpstreamPool {
    /// Build a client (or folder) per upstream. Upstreams with
    /// `tls_verify = false` are warned about here, once.
    pub fn new(config: &Config) -> Result<Self, UpstreamSetupError> {
        let mut targets = HashMap::with_capacity(config.upstreams.len());
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
                    UpstreamTarget::Http(Box::new(HttpUpstreamClient::new(name, http)?))
                }
            };
            targets.insert(name.clone(), target);
        }
        Ok(UpstreamPool { targets })
    }

    pub fn get(&self, name: &UpstreamName) -> Option<&UpstreamTarget> {
        self.targets.get(name)
    }
}
