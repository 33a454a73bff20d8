//! A plugin's fixed edits (`plugin-info.fixed-edits`), checked and parsed
//! once when it is put in a chain, and rendered per request at its place in
//! the chain ([`ChainedPlugin`](crate::ChainedPlugin)): an edit of text
//! alone is one [`WireEdit`] for every request; one that names request
//! values (`{client_ip}`, `{host}`, `{http_<name>}` ...) has its value
//! written by the host from the request head, without entering the plugin.

use std::borrow::Cow;

use http::header::{HeaderName, HeaderValue};

use crate::bindings::types::{FixedEdit, ValuePart};
use crate::wire_edits::{check_header_edits, InvalidOutput, WireEdit};
use crate::wire_values::KeyText;
use crate::{FixedEdits, HeaderEdit, HeaderOp, HookSet, RequestHead};

// === impl FixedEdits ===

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
}

// === impl FixedEdit ===

impl FixedEdit {
    /// An edit whose value is `value` for every request.
    pub fn text(op: HeaderOp, name: &str, value: &[u8]) -> FixedEdit {
        FixedEdit {
            op,
            name: name.to_owned(),
            value: vec![ValuePart::Text(value.to_vec())],
        }
    }
}

/// One side's fixed edits, ready for the wire.
#[derive(Debug, Clone, Default)]
pub(crate) struct PreparedEdits {
    edits: Vec<WireEdit>,
    /// The edits whose values read the request, by index into `edits`
    /// (where a placeholder value stands until rendered); empty when every
    /// value is text, and the edits go out as they are.
    rendered: Vec<(usize, Vec<ValuePart>)>,
}

impl PreparedEdits {
    /// Check `edits` as a hook's edits are checked per request (a name
    /// that is no token, text with control characters, or a header part
    /// that names no header rejects the config instead of failing every
    /// request), and parse what is the same for every request.
    pub(crate) fn new(edits: &[FixedEdit]) -> Result<PreparedEdits, InvalidOutput> {
        let mut prepared = PreparedEdits::default();
        for edit in edits {
            let pieces = pieces_of(edit)?;
            let value = match (&edit.op, pieces.as_slice()) {
                (HeaderOp::Remove, _) => Vec::new(),
                (_, []) => Vec::new(),
                (_, [ValuePart::Text(text)]) => text.clone(),
                _ => {
                    prepared
                        .rendered
                        .push((prepared.edits.len(), pieces.clone()));
                    Vec::new()
                }
            };
            let checked = check_header_edits(&[HeaderEdit {
                op: edit.op,
                name: edit.name.clone(),
                value,
            }])?;
            prepared.edits.extend(checked);
        }
        Ok(prepared)
    }

    /// The edits for a request whose head (as this plugin's hook sees it)
    /// is `head`: the parsed ones as they are when no value reads the
    /// request.
    pub(crate) fn for_request(
        &self,
        head: &RequestHead,
    ) -> Result<Cow<'_, [WireEdit]>, InvalidOutput> {
        if self.rendered.is_empty() {
            return Ok(Cow::Borrowed(&self.edits));
        }
        let mut edits = self.edits.clone();
        let mut value = Vec::with_capacity(64);
        for (index, pieces) in &self.rendered {
            value.clear();
            for part in pieces {
                render_into(part, head, &mut value);
            }
            let edit = &mut edits[*index];
            let name = edit.name().clone();
            let parsed = HeaderValue::from_bytes(&value)
                .map_err(|_| InvalidOutput::HeaderValue(name.as_str().to_owned()))?;
            *edit = match edit {
                WireEdit::Append(..) => WireEdit::Append(name, parsed),
                _ => WireEdit::Set(name, parsed),
            };
        }
        Ok(Cow::Owned(edits))
    }
}

/// The checked parts of `edit`'s value: adjacent text parts joined,
/// header names lower case.
fn pieces_of(edit: &FixedEdit) -> Result<Vec<ValuePart>, InvalidOutput> {
    if edit.op == HeaderOp::Remove {
        return Ok(Vec::new());
    }
    let mut pieces: Vec<ValuePart> = Vec::with_capacity(edit.value.len());
    for part in &edit.value {
        match (part, pieces.last_mut()) {
            (ValuePart::Text(text), _) if HeaderValue::from_bytes(text).is_err() => {
                return Err(InvalidOutput::HeaderValue(edit.name.clone()));
            }
            (ValuePart::Text(text), Some(ValuePart::Text(before))) => {
                before.extend_from_slice(text);
            }
            (ValuePart::Header(name), _) => {
                let parsed = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| InvalidOutput::HeaderName(name.clone()))?;
                pieces.push(ValuePart::Header(parsed.as_str().to_owned()));
            }
            (part, _) => pieces.push(part.clone()),
        }
    }
    Ok(pieces)
}

/// Appends `part`'s value for `head` to `out`, as the SDK's templates
/// render it in a guest.
fn render_into(part: &ValuePart, head: &RequestHead, out: &mut Vec<u8>) {
    let text: &str = match part {
        ValuePart::Text(text) => {
            out.extend_from_slice(text);
            return;
        }
        ValuePart::Host => head.host.as_deref().unwrap_or(""),
        ValuePart::HttpHost => match header_values(head, "host").next() {
            Some(value) => {
                out.extend_from_slice(value);
                return;
            }
            None => head.host.as_deref().unwrap_or(""),
        },
        ValuePart::ClientIp => {
            out.extend_from_slice(KeyText::default().of(head.client_ip).as_bytes());
            return;
        }
        ValuePart::Scheme => head.scheme.as_str(),
        ValuePart::RequestId => head.request_id.as_deref().unwrap_or(""),
        ValuePart::Method => head.method.as_str(),
        ValuePart::Path => head.path.as_deref().unwrap_or(""),
        ValuePart::Query => head.query.as_deref().unwrap_or(""),
        ValuePart::Uri => {
            out.extend_from_slice(head.path.as_deref().unwrap_or("").as_bytes());
            if let Some(query) = head.query.as_deref().filter(|q| !q.is_empty()) {
                out.push(b'?');
                out.extend_from_slice(query.as_bytes());
            }
            return;
        }
        ValuePart::Route => head.route.as_deref().unwrap_or(""),
        ValuePart::Header(name) => {
            let separator: &[u8] = if name == "cookie" { b"; " } else { b", " };
            for (i, value) in header_values(head, name).enumerate() {
                if i > 0 {
                    out.extend_from_slice(separator);
                }
                out.extend_from_slice(value);
            }
            return;
        }
    };
    out.extend_from_slice(text.as_bytes());
}

/// The values of every field `name` (lower case) in `head`'s list.
fn header_values<'h>(head: &'h RequestHead, name: &'h str) -> impl Iterator<Item = &'h [u8]> {
    head.headers
        .iter()
        .flatten()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

#[cfg(test)]
mod tests;
