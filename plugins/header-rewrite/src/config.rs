//! The plugin's config as the operator writes it under
//! `[routes.plugins.config]`: the raw serde shape, with unknown keys
//! rejected. [`crate::rules::Rules::build`] turns it into the validated,
//! precompiled form the hooks use.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub request: RawRequestHeaders,
    #[serde(default)]
    pub response: RawResponseHeaders,
    #[serde(default)]
    pub deny: Vec<RawDenyRule>,
    #[serde(default)]
    pub redirect: Vec<RawRedirectRule>,
}

/// `request.*`: edits to the request before it goes upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestHeaders {
    /// Header name -> value template; replaces every field of that name.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Header name -> value template; adds a field.
    #[serde(default)]
    pub append: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `response.*`: edits to the response before it is sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponseHeaders {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub append: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// Also edit responses the host generated (nginx `add_header ... always`).
    #[serde(default)]
    pub always: bool,
}

/// `deny[i]`: answer matching requests with a fixed response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDenyRule {
    /// Regex searched in the path (percent-encoded, without the query).
    pub path: Option<String>,
    /// Methods this rule applies to.
    pub methods: Option<Vec<String>>,
    #[serde(default = "default_deny_status")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

/// `redirect[i]`: answer matching requests with a redirect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirectRule {
    /// Regex searched in the path; its groups feed `$1`..`$9`.
    pub path: String,
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// Template of the `Location` header.
    pub location: String,
}

fn default_deny_status() -> u16 {
    403
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".to_owned()
}

fn default_redirect_status() -> u16 {
    302
}
