//! Tailgate: a public reverse proxy for tailnet services, extended per route
//! by WebAssembly plugins.
//!
//! A request's way through the crate:
//! `server` (listeners, HTTP/1.1 + HTTP/2) -> `request_path` (one normalised
//! path) -> `router` (Host, then path) -> `pipeline` (the phases: request
//! hooks -> upstream, with the cache phase in front -> response hooks ->
//! log) -> `upstream` (HTTP(S) pool or static files; `upstream::request`
//! builds what is sent) -> back through `pipeline` -> `access_log`.
//!
//! Beside the request path: `config` turns `config.toml` into a validated
//! `Config` (raw -> model -> build, one layout per section);
//! `plugin_chain` loads each route's plugins into the `tailgate-runtime`;
//! `reload` builds the running state from a config and swaps it in (start-up
//! is a reload from the empty state); `cache` is the response cache the
//! pipeline's cache phase drives; `telemetry` the metrics and log pushers;
//! `admin` the operators' listener; `tls` the certificates; `error` the
//! request path's one error type. Two leaves every layer uses import
//! nothing of the crate: `body` (the body types) and `lifecycle` (serving
//! -> draining -> done).

pub mod access_log;
pub use tailgate_runtime::address_text;
pub mod admin;
pub mod bans_cmd;
mod batch_wait;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod forwarding;
pub mod lifecycle;
pub mod pipeline;
pub mod plugin_chain;
pub mod plugin_cmd;
pub mod reload;
/// Path normalisation lives in the plugin runtime, which checks plugin
/// path rewrites with it too; the pipeline runs it before routing.
pub use tailgate_runtime::request_path;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod upstream;
