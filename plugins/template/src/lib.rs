//! `plugin-template`: a Tailgate plugin. It runs in the request phase
//! (`on-request`): requests whose path starts with a `block` prefix are
//! answered 403 here; the others go on upstream with one header set.
//! (Started from the plugin template: replace the logic, keep the shape:
//! validate everything in `configure`, keep per-request work small.)

#![deny(unsafe_code)]

use serde::Deserialize;
use tailgate_plugin_sdk::{
    export_plugin, host, plugin, Config, ConfigError, HeaderFilter, ImmediateResponse, LogFieldSet,
    Plugin, RequestAction, RequestEdits, RequestFieldSet, RequestHead,
};

/// The route's config table, as written under `[routes.plugins.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Header set on every request that goes upstream.
    #[serde(default = "default_header")]
    header: String,
    /// Its value.
    #[serde(default = "default_value")]
    value: String,
    /// Path prefixes answered with 403 instead of going upstream.
    #[serde(default)]
    block: Vec<String>,
}

fn default_header() -> String {
    "x-plugin-template".to_owned()
}

fn default_value() -> String {
    "on".to_owned()
}

/// One route's instance of `plugin-template`: the validated config.
struct PluginTemplate {
    header: String,
    value: String,
    block: Vec<String>,
}

/// An HTTP header name: an RFC 9110 token.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `#[plugin]` derives the hooks the host calls from the ones defined here
/// (`on_request`); narrow them per config with `fn hooks(&self)`.
#[plugin]
impl Plugin for PluginTemplate {
    fn configure(config: &Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if !is_header_name(&settings.header) {
            return Err(ConfigError::new(
                "header",
                format!("`{}` is not a header name", settings.header),
            )
            .into());
        }
        for (i, prefix) in settings.block.iter().enumerate() {
            if !prefix.starts_with('/') {
                return Err(ConfigError::new(
                    format!("block[{i}]"),
                    format!("`{prefix}` is not a path prefix (it must start with `/`)"),
                )
                .into());
            }
        }
        Ok(PluginTemplate {
            header: settings.header.to_ascii_lowercase(),
            value: settings.value,
            block: settings.block,
        })
    }

    /// This plugin reads the path only, so it asks for no header fields:
    /// every field copied into the plugin costs time on every request.
    /// Name the ones you read, e.g. `HeaderFilter::only(["user-agent"])`.
    fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::none()
    }

    /// The request text fields the hooks read, derived from the config: the
    /// path, and only when there are `block` prefixes to compare it with.
    /// The method, scheme and client address always come; the host leaves
    /// out every text field not named here, and reading one panics, naming
    /// the flag to add (e.g. `RequestFieldSet::HOST`), at the first call.
    /// The tests below check it.
    fn request_fields(&self) -> RequestFieldSet {
        if self.block.is_empty() {
            RequestFieldSet::empty()
        } else {
            RequestFieldSet::PATH
        }
    }

    /// No `on-log` hook, so no log-record fields.
    fn log_fields(&self) -> LogFieldSet {
        LogFieldSet::empty()
    }

    fn on_request(&self, req: &RequestHead) -> RequestAction {
        if let Some(prefix) = self.blocking_prefix(req) {
            host::counter_add("blocked_requests", &[("prefix", prefix)], 1);
            host::info(&format!("blocked {} (prefix {prefix})", req.path));
            return ImmediateResponse::new(403)
                .header("content-type", "text/plain; charset=utf-8")
                .body("Forbidden\n")
                .var("blocked_prefix", prefix.as_str())
                .into();
        }
        RequestEdits::new()
            .set_header(self.header.as_str(), self.value.as_str())
            .into()
    }
}

impl PluginTemplate {
    /// The `block` prefix the request's path starts with, if any.
    fn blocking_prefix(&self, req: &RequestHead) -> Option<&String> {
        self.block.iter().find(|p| req.path.starts_with(p.as_str()))
    }
}

export_plugin!(PluginTemplate);

/// Native tests (`cargo test --target <your host triple>`): the logic, on
/// requests cut down to what the plugin declares, the way the host sends
/// them. (Host imports such as `host::info` only run in tests/harness.rs.)
#[cfg(test)]
mod tests {
    use tailgate_plugin_sdk::testing::{narrowed_request, request_head};

    use super::*;

    fn configured(json: &str) -> PluginTemplate {
        PluginTemplate::configure(&Config::new(json)).expect("valid config")
    }

    #[test]
    fn the_host_is_asked_for_the_path_only_when_there_is_something_to_block() {
        assert_eq!(configured("{}").request_fields(), RequestFieldSet::empty());
        assert_eq!(
            configured(r#"{"block": ["/admin"]}"#).request_fields(),
            RequestFieldSet::PATH
        );
    }

    #[test]
    fn requests_are_judged_the_same_from_only_the_declared_fields() {
        for json in ["{}", r#"{"block": ["/admin", "/.git"]}"#] {
            let plugin = configured(json);
            for path in ["/", "/admin/users", "/.git/HEAD", "/public"] {
                let full = request_head("GET", path, Some("a=1"));
                let req =
                    narrowed_request(&full, plugin.request_fields(), &plugin.request_headers());
                assert_eq!(
                    plugin.blocking_prefix(&req),
                    plugin.blocking_prefix(&full),
                    "{json} {path}"
                );
                if plugin.blocking_prefix(&full).is_none() {
                    assert_eq!(
                        plugin.on_request(&req),
                        plugin.on_request(&full),
                        "{json} {path}"
                    );
                }
            }
        }
    }
}
