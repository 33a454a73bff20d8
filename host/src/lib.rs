//! Tailgate: a public reverse proxy for tailnet services, extended per route
//! by WebAssembly plugins.
//!
//! A request's way through the crate:
//! `server` (listeners, HTTP/1.1 + HTTP/2) -> `request_path` (one normalised
//! path) -> `router` (Host, then path) ->
//! `pipeline` (the phases: request hooks -> upstream -> response hooks -> log)
//! -> `upstream` (HTTP(S) pool or static files) -> back through `pipeline` ->
//! `access_log`. `config` turns `config.toml` into a validated `Config`;
//! `plugin_chain` loads each route's plugins into the `tailgate-runtime`.

pub mod access_log;
pub mod address_text;
pub mod admin;
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
pub mod request_path;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod upstream;
