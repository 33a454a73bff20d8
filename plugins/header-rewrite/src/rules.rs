//! The whole validated config of one (plugin, route) and what it does per
//! request: in `on-request`, the first matching `deny` rule answers, else
//! the first matching `redirect` rule, else the request goes on with the
//! `request.*` header edits; in `on-response`, the `response.*` edits
//! (skipped on host-generated responses unless `response.always`). A side
//! whose values are all plain text is given to the host once instead, as
//! fixed edits, and its hook is not called.

use tailgate_plugin_sdk::{
    Config, ConfigError, FixedEdits, HeaderEdit, HeaderFilter, HookSet, RequestAction,
    RequestEdits, RequestFieldSet, RequestHead, ResponseEdits, ResponseHead,
};

use crate::answer_rules::{DenyRule, RedirectRule};
use crate::config::RawConfig;
use crate::header_plan::HeaderPlan;

#[derive(Debug, Clone)]
pub struct Rules {
    request: HeaderPlan,
    response: HeaderPlan,
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
        )?;
        let response = HeaderPlan::build(
            "response",
            &raw.response.remove,
            &raw.response.set,
            &raw.response.append,
        )?;
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
    /// rest: a side whose edits are all fixed ([`Rules::fixed_edits`])
    /// needs no hook.
    pub fn hooks(&self) -> HookSet {
        let mut hooks = HookSet::empty();
        if self.fixed_request().is_none() {
            hooks |= HookSet::REQUEST;
        }
        if self.response.fixed().is_none() {
            hooks |= HookSet::RESPONSE;
        }
        hooks
    }

    /// The edits that are the same for every request, for the host to make
    /// without calling the plugin: a side whose values are all plain text,
    /// the request side only when no `deny` or `redirect` rule has to see
    /// the request first.
    pub fn fixed_edits(&self) -> FixedEdits {
        let mut fixed = FixedEdits::none();
        if let Some(edits) = self.fixed_request() {
            fixed = fixed.request(edits);
        }
        if let Some(edits) = self.response.fixed() {
            fixed = fixed.response(edits, self.response_always);
        }
        fixed
    }

    /// The request side as fixed edits: when every value is plain text and
    /// no `deny` or `redirect` rule has to see the request first.
    fn fixed_request(&self) -> Option<Vec<HeaderEdit>> {
        if !self.deny.is_empty() || !self.redirect.is_empty() {
            return None;
        }
        self.request.fixed()
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
