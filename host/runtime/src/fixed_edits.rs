//! A plugin's fixed edits (`plugin-info.fixed-edits`): the header edits it
//! makes to every request and every response whatever they carry, given
//! once by `configure`. [`ConfiguredPlugin`](crate::ConfiguredPlugin)'s
//! request and response methods put them in front of what the hook returns,
//! or return them alone, without entering the guest, when the plugin left
//! that hook out. The chain above sees one plugin answer either way.

use crate::bindings::types::{
    FixedEdits, HeaderEdit, HookSet, RequestAction, RequestEdits, ResponseEdits,
};

impl FixedEdits {
    /// No fixed edits.
    pub fn none() -> FixedEdits {
        FixedEdits {
            request: Vec::new(),
            response: Vec::new(),
            response_always: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// The phases these edits take part in: `request`, `response`, both or
    /// none.
    pub fn phases(&self) -> HookSet {
        let mut phases = HookSet::empty();
        if !self.request.is_empty() {
            phases |= HookSet::REQUEST;
        }
        if !self.response.is_empty() {
            phases |= HookSet::RESPONSE;
        }
        phases
    }

    /// The edits with their names lower case, as the host's header lists
    /// are (a guest may have written `X-Frame-Options`).
    pub(crate) fn normalised(mut self) -> FixedEdits {
        for edit in self.request.iter_mut().chain(self.response.iter_mut()) {
            edit.name.make_ascii_lowercase();
        }
        self
    }

    /// The request side for a plugin without a request hook: go on with
    /// the fixed edits.
    pub(crate) fn request_alone(&self) -> RequestAction {
        RequestAction::Continue(RequestEdits {
            headers: self.request.clone(),
            path: None,
            delay_ms: 0,
            vars: Vec::new(),
        })
    }

    /// What the request hook returned, the fixed edits first. An answer
    /// stays as it is: the request does not go on, so it gets no edits.
    pub(crate) fn before_request_hook(&self, action: RequestAction) -> RequestAction {
        match action {
            RequestAction::Continue(mut edits) if !self.request.is_empty() => {
                edits.headers = prepend(&self.request, edits.headers);
                RequestAction::Continue(edits)
            }
            other => other,
        }
    }

    /// The fixed response edits that apply to a response: all of them, or
    /// none for a host-made one unless `response-always`.
    fn response_for(&self, host_generated: bool) -> &[HeaderEdit] {
        if host_generated && !self.response_always {
            &[]
        } else {
            &self.response
        }
    }

    /// The response side for a plugin without a response hook.
    pub(crate) fn response_alone(&self, host_generated: bool) -> ResponseEdits {
        ResponseEdits {
            headers: self.response_for(host_generated).to_vec(),
        }
    }

    /// What the response hook returned, the fixed edits that apply first.
    pub(crate) fn before_response_hook(
        &self,
        host_generated: bool,
        mut edits: ResponseEdits,
    ) -> ResponseEdits {
        let fixed = self.response_for(host_generated);
        if !fixed.is_empty() {
            edits.headers = prepend(fixed, edits.headers);
        }
        edits
    }
}

fn prepend(first: &[HeaderEdit], then: Vec<HeaderEdit>) -> Vec<HeaderEdit> {
    let mut all = Vec::with_capacity(first.len() + then.len());
    all.extend_from_slice(first);
    all.extend(then);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{HeaderOp, ImmediateResponse};

    fn edit(op: HeaderOp, name: &str, value: &str) -> HeaderEdit {
        HeaderEdit {
            op,
            name: name.to_owned(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn fixed(always: bool) -> FixedEdits {
        FixedEdits {
            request: vec![edit(HeaderOp::Set, "X-Route", "bench")],
            response: vec![edit(HeaderOp::Append, "X-Frame-Options", "DENY")],
            response_always: always,
        }
        .normalised()
    }

    fn continue_with(headers: Vec<HeaderEdit>) -> RequestAction {
        RequestAction::Continue(RequestEdits {
            headers,
            path: None,
            delay_ms: 0,
            vars: Vec::new(),
        })
    }

    #[test]
    fn names_are_lower_cased_and_the_phases_follow_the_sides() {
        let fixed = fixed(false);
        assert_eq!(fixed.request[0].name, "x-route");
        assert_eq!(fixed.response[0].name, "x-frame-options");
        assert_eq!(fixed.phases(), HookSet::REQUEST | HookSet::RESPONSE);
        assert_eq!(FixedEdits::none().phases(), HookSet::empty());
        assert!(FixedEdits::none().is_empty());
    }

    #[test]
    fn fixed_request_edits_come_before_the_hooks_and_not_on_an_answer() {
        let fixed = fixed(false);
        assert_eq!(
            fixed.request_alone(),
            continue_with(vec![edit(HeaderOp::Set, "x-route", "bench")])
        );
        let hooked =
            fixed.before_request_hook(continue_with(vec![edit(HeaderOp::Remove, "cookie", "")]));
        assert_eq!(
            hooked,
            continue_with(vec![
                edit(HeaderOp::Set, "x-route", "bench"),
                edit(HeaderOp::Remove, "cookie", ""),
            ])
        );
        let answer = RequestAction::Respond(ImmediateResponse {
            status: 403,
            headers: Vec::new(),
            body: Vec::new(),
            vars: Vec::new(),
        });
        assert_eq!(fixed.before_request_hook(answer.clone()), answer);
    }

    #[test]
    fn fixed_response_edits_skip_host_made_responses_unless_always() {
        let deny = edit(HeaderOp::Append, "x-frame-options", "DENY");
        let hook = ResponseEdits {
            headers: vec![edit(HeaderOp::Remove, "server", "")],
        };
        let sometimes = fixed(false);
        assert_eq!(sometimes.response_alone(false).headers, vec![deny.clone()]);
        assert!(sometimes.response_alone(true).headers.is_empty());
        assert_eq!(
            sometimes.before_response_hook(true, hook.clone()),
            hook.clone()
        );
        let always = fixed(true);
        assert_eq!(always.response_alone(true).headers, vec![deny.clone()]);
        assert_eq!(
            always.before_response_hook(true, hook.clone()).headers,
            vec![deny, edit(HeaderOp::Remove, "server", "")]
        );
    }
}
