//! Tailgate's guest SDK: what a plugin crate builds on. It sits on the guest
//! side of `wit/plugin.wit`, between the proxy's plugin runtime (which calls
//! `configure`, then `on-request` -> `on-response` -> `on-log` per request)
//! and the plugin author's [`Plugin`] implementation.
//!
//! A plugin is a type implementing [`Plugin`], its impl block marked
//! [`#[plugin]`](macro@plugin) (which derives [`Plugin::HOOKS`] from the
//! hooks the block defines), exported with [`export_plugin!`]:
//!
//! ```no_run
//! use tailgate_plugin_sdk::{
//!     export_plugin, plugin, Config, Plugin, RequestAction, RequestEdits, RequestHead,
//! };
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings { header: String }
//!
//! struct Tagger { header: String }
//!
//! #[plugin] // HOOKS = HookSet::REQUEST: the one hook defined below
//! impl Plugin for Tagger {
//!     fn configure(config: &Config) -> Result<Self, String> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Tagger { header: settings.header })
//!     }
//!
//!     fn on_request(&self, req: &RequestHead) -> RequestAction {
//!         RequestEdits::new().set_header(&self.header, req.client_ip.to_string()).into()
//!     }
//! }
//!
//! export_plugin!(Tagger);
//! ```
//!
//! Writing `const HOOKS` by hand in a `#[plugin]` block does not compile
//! (the hooks defined are the hooks called):
//!
//! ```compile_fail
//! use tailgate_plugin_sdk::{plugin, Config, HookSet, Plugin, RequestAction, RequestHead};
//!
//! struct Tagger;
//!
//! #[plugin]
//! impl Plugin for Tagger {
//!     const HOOKS: HookSet = HookSet::REQUEST;
//!
//!     fn configure(_: &Config) -> Result<Self, String> {
//!         Ok(Tagger)
//!     }
//!
//!     fn on_request(&self, _: &RequestHead) -> RequestAction {
//!         RequestAction::proceed()
//!     }
//! }
//! ```
//!
//! Build it for `wasm32-wasip2` (`cargo build --target wasm32-wasip2 --release`)
//! and the `.wasm` file is the component the proxy loads.

#![deny(unsafe_code)]

// `#[plugin]` names this crate by its path, also in the SDK's own tests.
extern crate self as tailgate_plugin_sdk;

// The global allocator exists on single-threaded wasm only; elsewhere the
// module is built for its tests alone.
#[cfg(any(test, all(target_family = "wasm", not(target_feature = "atomics"))))]
mod allocator;
pub mod bindings;
pub mod config;
mod edits;
mod field;
mod filter;
mod fixed_edits;
mod head;
mod hook_gate;
pub mod host;
#[cfg(any(test, feature = "key"))]
pub mod key;
mod log_export;
mod plugin;
mod records;
mod request_checks;
#[cfg(any(test, feature = "request-filter"))]
pub mod request_filter;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;
mod values;

pub use bindings::tailgate::plugin::types::{
    Ban, BanOutcome, BanRequest, CacheStatus, ClientRateCheck, FixedEdit, FixedEdits, Header,
    HeaderEdit, HeaderFilter, HeaderOp, HookGate, HookSet, ImmediateResponse, LogFieldSet, LogGate,
    LogLevel, LogLine, LogVerdict, Method, PluginInfo, Protocol, RateDecision, RateKey, RateLimit,
    RequestAction, RequestChecks, RequestEdits, RequestFieldSet, ResponseEdits, Scheme, StateScope,
    ValuePart, Var, ZoneUse,
};
pub use config::{Config, ConfigError};
pub use field::Field;
pub use plugin::Plugin;
pub use records::{ip, wit_ip, LogRecord, RequestHead, ResponseHead};
#[cfg(any(test, feature = "request-filter"))]
pub use request_filter::RequestFilter;
pub use tailgate_plugin_sdk_macros::plugin;

/// Glue the [`export_plugin!`] macro expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::tailgate::plugin::hooks::Guest;
    pub use crate::bindings::tailgate::plugin::types as wit;
    pub use crate::log_export::{on_log, post_return as post_return_on_log};
    pub use crate::plugin::dispatch;
}
