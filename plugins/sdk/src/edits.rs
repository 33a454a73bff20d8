//! Building what the hooks return: [`HeaderEdit`]s, request edits and
//! actions (go on, answer, redirect), response edits, vars and log lines.
//! Values are taken as `impl Into<Vec<u8>>`, so `&str`, `String`, `&[u8]`
//! and `Vec<u8>` all fit.

use crate::{
    Header, HeaderEdit, HeaderOp, ImmediateResponse, LogLine, RequestAction, RequestEdits,
    ResponseEdits, Var,
};

impl HeaderEdit {
    /// Replace every field `name` with one field of `value`.
    pub fn set(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        HeaderEdit {
            op: HeaderOp::Set,
            name: name.into(),
            value: value.into(),
        }
    }

    /// Add a field `name: value`, keeping existing ones.
    pub fn append(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        HeaderEdit {
            op: HeaderOp::Append,
            name: name.into(),
            value: value.into(),
        }
    }

    /// Remove every field `name`.
    pub fn remove(name: impl Into<String>) -> Self {
        HeaderEdit {
            op: HeaderOp::Remove,
            name: name.into(),
            value: Vec::new(),
        }
    }
}

impl Var {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Var {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Default for RequestEdits {
    fn default() -> Self {
        RequestEdits {
            headers: Vec::new(),
            path: None,
            delay_ms: 0,
            vars: Vec::new(),
        }
    }
}

impl RequestEdits {
    /// No edits: the request goes on as it is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether these edits change nothing.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.path.is_none() && self.delay_ms == 0 && self.vars.is_empty()
    }

    pub fn header(mut self, edit: HeaderEdit) -> Self {
        self.headers.push(edit);
        self
    }

    pub fn set_header(self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.header(HeaderEdit::set(name, value))
    }

    pub fn append_header(self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.header(HeaderEdit::append(name, value))
    }

    pub fn remove_header(self, name: impl Into<String>) -> Self {
        self.header(HeaderEdit::remove(name))
    }

    /// Send this path (optionally with `?query`) upstream instead.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Hold the request this long before forwarding it.
    pub fn delay_ms(mut self, delay_ms: u32) -> Self {
        self.delay_ms = delay_ms;
        self
    }

    /// Attach a var to the request, visible in log records.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.push(Var::new(name, value));
        self
    }
}

impl From<RequestEdits> for RequestAction {
    fn from(edits: RequestEdits) -> Self {
        RequestAction::Continue(edits)
    }
}

impl From<ImmediateResponse> for RequestAction {
    fn from(resp: ImmediateResponse) -> Self {
        RequestAction::Respond(resp)
    }
}

impl RequestAction {
    /// Go on to the next plugin and upstream, unchanged.
    pub fn proceed() -> Self {
        RequestAction::Continue(RequestEdits::new())
    }

    /// Answer now with `status` and `body`; a non-empty body is sent as
    /// `text/plain; charset=utf-8` (build an [`ImmediateResponse`] for any
    /// other type).
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let resp = ImmediateResponse::new(status);
        let resp = if body.is_empty() {
            resp
        } else {
            resp.header("content-type", "text/plain; charset=utf-8")
                .body(body)
        };
        RequestAction::Respond(resp)
    }

    /// Answer now with a redirect: `status` (301, 302, 303, 307, 308) and a
    /// `Location` header, no body.
    pub fn redirect(status: u16, location: impl Into<Vec<u8>>) -> Self {
        RequestAction::Respond(ImmediateResponse::new(status).header("location", location))
    }
}

impl ImmediateResponse {
    /// A response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        ImmediateResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            vars: Vec::new(),
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Attach a var to the request, visible in log records.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.push(Var::new(name, value));
        self
    }
}

impl Default for ResponseEdits {
    fn default() -> Self {
        ResponseEdits {
            headers: Vec::new(),
        }
    }
}

impl ResponseEdits {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    pub fn header(mut self, edit: HeaderEdit) -> Self {
        self.headers.push(edit);
        self
    }

    pub fn set_header(self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.header(HeaderEdit::set(name, value))
    }

    pub fn append_header(self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.header(HeaderEdit::append(name, value))
    }

    pub fn remove_header(self, name: impl Into<String>) -> Self {
        self.header(HeaderEdit::remove(name))
    }
}

impl From<Vec<HeaderEdit>> for ResponseEdits {
    fn from(headers: Vec<HeaderEdit>) -> Self {
        ResponseEdits { headers }
    }
}

impl LogLine {
    /// A log line with no stream labels.
    pub fn new(line: impl Into<String>) -> Self {
        LogLine {
            line: line.into(),
            labels: Vec::new(),
        }
    }

    /// Add a Loki stream label; keep them few and low-cardinality.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_edit_constructors_set_the_op() {
        let set = HeaderEdit::set("x-a", "1");
        assert!(matches!(set.op, HeaderOp::Set));
        assert_eq!((set.name.as_str(), set.value.as_slice()), ("x-a", &b"1"[..]));
        assert!(matches!(HeaderEdit::append("x-a", b"2".to_vec()).op, HeaderOp::Append));
        let remove = HeaderEdit::remove("server");
        assert!(matches!(remove.op, HeaderOp::Remove));
        assert!(remove.value.is_empty());
    }

    #[test]
    fn request_edits_keep_the_order_they_were_given() {
        let edits = RequestEdits::new()
            .remove_header("x-b")
            .set_header("x-a", "1")
            .append_header("x-a", "2")
            .path("/new?q")
            .delay_ms(5)
            .var("k", "v");
        let ops: Vec<_> = edits
            .headers
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_slice()))
            .collect();
        assert_eq!(ops, vec![("x-b", &b""[..]), ("x-a", b"1"), ("x-a", b"2")]);
        assert_eq!(edits.path.as_deref(), Some("/new?q"));
        assert_eq!(edits.delay_ms, 5);
        assert_eq!(edits.vars, vec![Var::new("k", "v")]);
        assert!(!edits.is_empty());
        assert!(RequestEdits::new().is_empty());
    }

    #[test]
    fn respond_sends_text_body_with_content_type() {
        let RequestAction::Respond(resp) = RequestAction::respond(403, "Forbidden\n") else {
            panic!("respond did not answer");
        };
        assert_eq!(resp.status, 403);
        assert_eq!(resp.body, b"Forbidden\n");
        assert_eq!(
            resp.headers,
            vec![Header::new("content-type", "text/plain; charset=utf-8")]
        );

        let RequestAction::Respond(empty) = RequestAction::respond(204, "") else {
            panic!("respond did not answer");
        };
        assert!(empty.headers.is_empty());
    }

    #[test]
    fn redirect_sets_location_and_no_body() {
        let RequestAction::Respond(resp) = RequestAction::redirect(308, "https://a.example/x")
        else {
            panic!("redirect did not answer");
        };
        assert_eq!(resp.status, 308);
        assert_eq!(resp.headers, vec![Header::new("location", "https://a.example/x")]);
        assert!(resp.body.is_empty());
    }

    #[test]
    fn edits_convert_into_continue() {
        let action: RequestAction = RequestEdits::new().set_header("x", "1").into();
        assert!(matches!(action, RequestAction::Continue(ref e) if e.headers.len() == 1));
    }
}
