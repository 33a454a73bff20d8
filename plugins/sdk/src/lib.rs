//! Tailgate's guest SDK: what a plugin crate builds on. It sits on the guest
//! side of `wit/plugin.wit`, between the proxy's plugin runtime (which calls
//! `configure`, then `on-request` -> `on-response` -> `on-log` per request)
//! and the plugin author's [`Plugin`] implementation.
//!
//! A plugin is a type implementing [`Plugin`], exported with
//! [`export_plugin!`]:
//!
//! ```no_run
//! use tailgate_plugin_sdk::{
//!     export_plugin, Config, HookSet, Plugin, RequestAction, RequestEdits, RequestHead,
//! };
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings { header: String }
//!
//! struct Tagger { header: String }
//!
//! impl Plugin for Tagger {
//!     const HOOKS: HookSet = HookSet::REQUEST;
//!
//!     fn configure(config: &Config) -> Result<Self, String> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Tagger { header: settings.header })
//!     }
//!
//!     fn on_request(&self, req: &RequestHead) -> RequestAction {
//!         RequestEdits::new().set_header(&self.header, req.request_id.as_str()).into()
//!     }
//! }
//!
//! export_plugin!(Tagger);
//! ```
//!
//! Build it for `wasm32-wasip2` (`cargo build --target wasm32-wasip2 --release`)
//! and the `.wasm` file is the component the proxy loads.

#![deny(unsafe_code)]

mod allocator;
pub mod bindings;
mod config;
mod edits;
mod filter;
mod head;
pub mod host;
mod plugin;
mod records;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;

pub use bindings::tailgate::plugin::types::{
    FixedEdits, Header, HeaderEdit, HeaderFilter, HeaderOp, HookSet, ImmediateResponse,
    LogFieldSet, LogLevel, LogLine, PluginInfo, RateDecision, RateLimit, RequestAction,
    RequestEdits, RequestFieldSet, ResponseEdits, Var,
};
pub use config::{Config, ConfigError};
pub use plugin::Plugin;
pub use records::{LogRecord, RequestHead, ResponseHead};

/// Glue the [`export_plugin!`] macro expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::tailgate::plugin::hooks::Guest;
    pub use crate::bindings::tailgate::plugin::types as wit;
    pub use crate::plugin::dispatch;
}
