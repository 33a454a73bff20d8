//! The whole validated config of one (plugin, route) and what it does per
//! request: in `on-request`, the first matching `deny` rule answers, else
//! the first matching `redirect` rule, else the request goes on. The
//! `request.*` and `response.*` header edits (the latter skipped on
//! host-generated responses unless `response.always`) are given to the
//! host once, as fixed edits: it renders their templates per request
//! itself, so they cost no call. Without `deny` or `redirect` rules the
//! plugin has no hook at all.

use tailgate_plugin_sdk::{
    Config, ConfigError, FixedEdit, FixedEdits, HeaderFilter, HookSet, RequestAction,
    RequestFieldSet, RequestHead,
};

use crate::answer_rules::{DenyRule, RedirectRule};
use crate::config::RawConfig;
use crate::header_plan::HeaderPlan;

#[derive(Debug, Clone)]
pub struct Rules {
    /// The request edits, for the host to make on requests that go on.
    request: Vec<FixedEdit>,
    /// The response edits, for the host to make.
    response: Vec<FixedEdit>,
    /// Edit host-generated responses too.
    response_always: bool,
    deny: Vec<DenyRule>,
    redirect: Vec<RedirectRule>,
}

impl Rules {
    /// Parse and validate the route's config; compiles every regex and
    /// template once.
    pub fn from_config(config: &Config) -> Result<Rules, ConfigError> {
        let raw: RawConfig = config.parse()?;
        Rules::build(&raw)
    }

    pub fn build(raw: &RawConfig) -> Result<Rules, ConfigError> {
        let request = HeaderPlan::build(
            "request",
            &raw.request.remove,
            &raw.request.set,
            &raw.request.append,
        )?
        .fixed_edits();
        let response = HeaderPlan::build(
            "response",
            &raw.response.remove,
            &raw.response.set,
            &raw.response.append,
        )?
        .fixed_edits();
        let deny = raw
            .deny
            .iter()
            .enumerate()
            .map(|(i, rule)| DenyRule::build(i, rule))
            .collect::<Result<_, _>>()?;
        let redirect = raw
            .redirect
            .iter()
            .enumerate()
            .map(|(i, rule)| RedirectRule::build(i, rule))
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            request,
            response,
            response_always: raw.response.always,
            deny,
            redirect,
        })
    }

    /// Only the hooks this config gives work to, so the host skips the
    /// rest: `on-request` for `deny` and `redirect` rules; the header edits
    /// are all fixed edits ([`Rules::fixed_edits`]).
    pub fn hooks(&self) -> HookSet {
        if self.deny.is_empty() && self.redirect.is_empty() {
            HookSet::empty()
        } else {
            HookSet::REQUEST
        }
    }

    /// Every header edit, for the host to make without calling the plugin
    /// (rendering the templates' placeholders from the request itself).
    /// The host makes the request side's only on requests that go on (not
    /// those a `deny` or `redirect` rule answered), and the hook sees heads
    /// without them: a plugin's edits show only to later plugins.
    pub fn fixed_edits(&self) -> FixedEdits {
        let mut fixed = FixedEdits::none();
        if !self.request.is_empty() {
            fixed = fixed.request(self.request.clone());
        }
        if !self.response.is_empty() {
            fixed = fixed.response(self.response.clone(), self.response_always);
        }
        fixed
    }

    /// The request headers the hook reads: those named in redirect
    /// location templates (`{http_<name>}`); paths and methods are request
    /// fields ([`Rules::request_fields`]). The host renders the header
    /// edits' templates from the whole request itself.
    pub fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::only(self.redirect.iter().flat_map(RedirectRule::header_names))
    }

    /// The request fields the hook reads: those the location templates
    /// name (`{uri}`, ...), the path for `path` regexes and the method for
    /// `methods` lists.
    pub fn request_fields(&self) -> RequestFieldSet {
        self.deny
            .iter()
            .map(DenyRule::request_fields)
            .chain(self.redirect.iter().map(RedirectRule::request_fields))
            .fold(RequestFieldSet::empty(), |set, fields| set | fields)
    }

    pub fn on_request(&self, req: &RequestHead) -> RequestAction {
        if let Some(rule) = self.deny.iter().find(|rule| rule.matches(req)) {
            return RequestAction::Respond(rule.response());
        }
        if let Some(resp) = self.redirect.iter().find_map(|rule| rule.answer(req)) {
            return RequestAction::Respond(resp);
        }
        RequestAction::proceed()
    }
}

#[cfg(test)]
mod tests;
