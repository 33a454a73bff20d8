//! The whole validated config of one (plugin, route) and what it does per
//! request: in `on-request`, the first matching `deny` rule answers, else
//! the first matching `redirect` rule, else the request goes on with the
//! `request.*` header edits; in `on-response`, the `response.*` edits
//! (skipped on host-generated responses unless `response.always`). Edits
//! whose values are plain text are given to the host once instead, as
//! fixed edits; a side left with nothing for its hook is not called.

use tailgate_plugin_sdk::{
    Config, ConfigError, FixedEdits, HeaderEdit, HeaderFilter, HookSet, RequestAction,
    RequestEdits, RequestFieldSet, RequestHead, ResponseEdits, ResponseHead,
};

use crate::answer_rules::{DenyRule, RedirectRule};
use crate::config::RawConfig;
use crate::header_plan::HeaderPlan;

#[derive(Debug, Clone)]
pub struct Rules {
    /// The request edits the hook renders (those reading the request).
    request: HeaderPlan,
    /// The request edits the host makes itself, before the hook's.
    request_fixed: Vec<HeaderEdit>,
    response: HeaderPlan,
    response_fixed: Vec<HeaderEdit>,
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
        let (request_fixed, request) = HeaderPlan::build(
            "request",
            &raw.request.remove,
            &raw.request.set,
            &raw.request.append,
        )?
        .split_fixed();
        let (response_fixed, response) = HeaderPlan::build(
            "response",
            &raw.response.remove,
            &raw.response.set,
            &raw.response.append,
        )?
        .split_fixed();
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
            request_fixed,
            response,
            response_fixed,
            response_always: raw.response.always,
            deny,
            redirect,
        })
    }

    /// Only the hooks this config gives work to, so the host skips the
    /// rest: a side whose edits are all fixed ([`Rules::fixed_edits`])
    /// needs no hook, unless `deny` or `redirect` rules must see requests.
    pub fn hooks(&self) -> HookSet {
        let mut hooks = HookSet::empty();
        if !self.request.is_empty() || !self.deny.is_empty() || !self.redirect.is_empty() {
            hooks |= HookSet::REQUEST;
        }
        if !self.response.is_empty() {
            hooks |= HookSet::RESPONSE;
        }
        hooks
    }

    /// The edits that are the same for every request, for the host to make
    /// without calling the plugin, ahead of the hooks' edits. The host
    /// makes the request side's only on requests that go on (not those a
    /// `deny` or `redirect` rule answered), and hooks see heads without
    /// them, as they would without fixed edits: a plugin's edits show only
    /// to later plugins.
    pub fn fixed_edits(&self) -> FixedEdits {
        let mut fixed = FixedEdits::none();
        if !self.request_fixed.is_empty() {
            fixed = fixed.request(self.request_fixed.clone());
        }
        if !self.response_fixed.is_empty() {
            fixed = fixed.response(self.response_fixed.clone(), self.response_always);
        }
        fixed
    }

    /// The request headers the rules read: those named in value and
    /// location templates (`{http_<name>}`); paths and methods are request
    /// fields ([`Rules::request_fields`]).
    pub fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::only(
            self.request
                .header_names()
                .chain(self.response.header_names())
                .chain(self.redirect.iter().flat_map(RedirectRule::header_names)),
        )
    }

    /// The request fields both hooks read: those the value and location
    /// templates name (`{client_ip}`, `{uri}`, ...), the path for `path`
    /// regexes and the method for `methods` lists.
    pub fn request_fields(&self) -> RequestFieldSet {
        let answers = self
            .deny
            .iter()
            .map(DenyRule::request_fields)
            .chain(self.redirect.iter().map(RedirectRule::request_fields));
        answers.fold(
            self.request.request_fields() | self.response.request_fields(),
            |set, fields| set | fields,
        )
    }

    pub fn on_request(&self, req: &RequestHead) -> RequestAction {
        if let Some(rule) = self.deny.iter().find(|rule| rule.matches(req)) {
            return RequestAction::Respond(rule.response());
        }
        if let Some(resp) = self.redirect.iter().find_map(|rule| rule.answer(req)) {
            return RequestAction::Respond(resp);
        }
        RequestAction::Continue(RequestEdits {
            headers: self.request.render(req),
            ..RequestEdits::new()
        })
    }

    pub fn on_response(&self, req: &RequestHead, resp: &ResponseHead) -> ResponseEdits {
        if resp.host_generated && !self.response_always {
            return ResponseEdits::new();
        }
        ResponseEdits {
            headers: self.response.render(req),
        }
    }
}

#[cfg(test)]
mod tests;
