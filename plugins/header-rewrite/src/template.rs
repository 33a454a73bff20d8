//! Value templates: the `{host}`, `{http_user_agent}`, `$1` ... strings of
//! header values and redirect locations. The parser and renderer are the
//! SDK's ([`tailgate_plugin_sdk::template`], shared with rate-limit's
//! keys); header values parse `$n` as text, redirect locations as the path
//! regex's captures (see `answer_rules.rs`).

pub use tailgate_plugin_sdk::template::{CaptureRefs, Template};

#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use tailgate_plugin_sdk::testing::request_head as request;
}
