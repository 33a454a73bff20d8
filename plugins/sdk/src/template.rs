//! Request templates: text with `{host}`, `{http_host}`, `{client_ip}`, `{http_user_agent}`
//! ... placeholders (and, where allowed, `$1`..`$9` capture references),
//! parsed and checked once in `configure` into a [`Template`] and rendered
//! per request from the [`RequestHead`]. Shared by the plugins that build
//! values from request fields (header-rewrite's header values and redirect
//! locations, rate-limit's keys). A template also says what it reads, for
//! the plugin to declare: [`Template::request_fields`] and
//! [`Template::header_names`].

use crate::{RequestFieldSet, RequestHead, ValuePart};

/// A parsed template: literal bytes and the request fields between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// Total length of the literal parts, to size the output once.
    literal_len: usize,
    /// Highest `$n` used, 0 for none.
    max_capture: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<[u8]>),
    Field(Field),
    /// `$1`..`$9`: a capture group of the caller's regex.
    Capture(usize),
}

/// A request field a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The host as routed: lower case, without the port (nginx `$host`).
    Host,
    /// The `Host` header as sent, port included (nginx `$http_host`; the
    /// host hands HTTP/2's `:authority` in as `host`); the routed host when
    /// the request named none (HTTP/1.0).
    HttpHost,
    ClientIp,
    Scheme,
    RequestId,
    Method,
    Path,
    /// The query without `?`; empty when there is none.
    Query,
    /// Path, then `?query` when there is one.
    Uri,
    Route,
    /// `{http_<name>}`: a request header, lower case with dashes; every
    /// field of that name, joined like nginx does (`; ` for cookies, `, `
    /// otherwise). Empty when absent.
    Header(Box<str>),
}

/// Whether `$1`..`$9` are capture references or plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureRefs {
    Allowed,
    Literal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    UnclosedBrace { at: usize },
    StrayClosingBrace { at: usize },
    UnknownPlaceholder { name: String },
    BadHeaderPlaceholder { name: String },
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::UnclosedBrace { at } => write!(
                f,
                "`{{` at byte {at} has no closing `}}` (write `{{{{` for a literal `{{`)"
            ),
            TemplateError::StrayClosingBrace { at } => write!(
                f,
                "`}}` at byte {at} has no opening `{{` (write `}}}}` for a literal `}}`)"
            ),
            TemplateError::UnknownPlaceholder { name } => write!(
                f,
                "unknown placeholder `{{{name}}}`; known: {{host}}, {{http_host}}, {{client_ip}}, \
                 {{scheme}}, {{request_id}}, {{method}}, {{path}}, {{query}}, {{uri}}, {{route}}, {{http_<header>}}"
            ),
            TemplateError::BadHeaderPlaceholder { name } => write!(
                f,
                "placeholder `{{{name}}}`: a header name takes letters, digits, `_` and `-` \
                 (e.g. {{http_user_agent}})"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parse `source`. `{{` and `}}` stand for literal braces.
    pub fn parse(source: &str, captures: CaptureRefs) -> Result<Template, TemplateError> {
        let bytes = source.as_bytes();
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'{' => {
                    let name_len = source[i + 1..]
                        .find('}')
                        .ok_or(TemplateError::UnclosedBrace { at: i })?;
                    let name = &source[i + 1..i + 1 + name_len];
                    flush_literal(&mut literal, &mut parts);
                    parts.push(Part::Field(Field::parse(name)?));
                    i += name_len + 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'}' => return Err(TemplateError::StrayClosingBrace { at: i }),
                b'$' if captures == CaptureRefs::Allowed
                    && matches!(bytes.get(i + 1), Some(b'1'..=b'9')) =>
                {
                    flush_literal(&mut literal, &mut parts);
                    parts.push(Part::Capture(usize::from(bytes[i + 1] - b'0')));
                    i += 2;
                }
                byte => {
                    literal.push(byte);
                    i += 1;
                }
            }
        }
        flush_literal(&mut literal, &mut parts);
        Ok(Template::of_parts(parts))
    }

    fn of_parts(parts: Vec<Part>) -> Template {
        let literal_len = parts
            .iter()
            .map(|part| match part {
                Part::Literal(bytes) => bytes.len(),
                _ => 0,
            })
            .sum();
        let max_capture = parts
            .iter()
            .map(|part| match part {
                Part::Capture(n) => *n,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        Template {
            parts,
            literal_len,
            max_capture,
        }
    }

    /// The bytes of a plain-text template (no placeholder, no `$n`): the
    /// same value for every request, which a plugin can give once
    /// ([`Plugin::fixed_edits`](crate::Plugin::fixed_edits)). `None` when
    /// the template reads the request.
    pub fn literal(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.literal_len);
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                _ => return None,
            }
        }
        Some(out)
    }

    /// The template as the parts of a fixed edit's value, for the host to
    /// fill in per request ([`FixedEdit::template`](crate::FixedEdit::template));
    /// `None` when it uses `$n` captures, which only a hook can fill.
    pub fn value_parts(&self) -> Option<Vec<ValuePart>> {
        self.parts
            .iter()
            .map(|part| {
                Some(match part {
                    Part::Literal(bytes) => ValuePart::Text(bytes.to_vec()),
                    Part::Capture(_) => return None,
                    Part::Field(field) => match field {
                        Field::Host => ValuePart::Host,
                        Field::HttpHost => ValuePart::HttpHost,
                        Field::ClientIp => ValuePart::ClientIp,
                        Field::Scheme => ValuePart::Scheme,
                        Field::RequestId => ValuePart::RequestId,
                        Field::Method => ValuePart::Method,
                        Field::Path => ValuePart::Path,
                        Field::Query => ValuePart::Query,
                        Field::Uri => ValuePart::Uri,
                        Field::Route => ValuePart::Route,
                        Field::Header(name) => ValuePart::Header(name.to_string()),
                    },
                })
            })
            .collect()
    }

    /// The template a fixed edit's value stands for: the inverse of
    /// [`Template::value_parts`].
    pub fn from_value_parts(value: &[ValuePart]) -> Template {
        let parts: Vec<Part> = value
            .iter()
            .map(|part| match part {
                ValuePart::Text(bytes) => Part::Literal(bytes.clone().into_boxed_slice()),
                ValuePart::Host => Part::Field(Field::Host),
                ValuePart::HttpHost => Part::Field(Field::HttpHost),
                ValuePart::ClientIp => Part::Field(Field::ClientIp),
                ValuePart::Scheme => Part::Field(Field::Scheme),
                ValuePart::RequestId => Part::Field(Field::RequestId),
                ValuePart::Method => Part::Field(Field::Method),
                ValuePart::Path => Part::Field(Field::Path),
                ValuePart::Query => Part::Field(Field::Query),
                ValuePart::Uri => Part::Field(Field::Uri),
                ValuePart::Route => Part::Field(Field::Route),
                ValuePart::Header(name) => Part::Field(Field::Header(name.as_str().into())),
            })
            .collect();
        Template::of_parts(parts)
    }

    /// Highest `$n` the template uses; 0 when it uses none.
    pub fn max_capture(&self) -> usize {
        self.max_capture
    }

    /// The request fields the template uses, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(field) => Some(field),
            _ => None,
        })
    }

    /// The request headers the template reads (`{http_<name>}`, and
    /// `host` for `{http_host}`), lower case with dashes: what a plugin
    /// reports in [`Plugin::request_headers`](crate::Plugin::request_headers).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.fields().filter_map(Field::header_name)
    }

    /// The [`RequestHead`] fields the template reads: what a plugin
    /// reports in [`Plugin::request_fields`](crate::Plugin::request_fields)
    /// for it (`{uri}` reads the path and the query; `{http_<name>}` reads
    /// a header, see [`Template::header_names`]).
    pub fn request_fields(&self) -> RequestFieldSet {
        self.fields().fold(RequestFieldSet::empty(), |set, field| {
            set | field.request_fields()
        })
    }

    /// The value for this request; `$n` references render empty.
    pub fn render(&self, req: &RequestHead) -> Vec<u8> {
        self.render_with_captures(req, |_| None)
    }

    /// The value for this request, `$n` taken from `capture(n)` (a group
    /// that did not take part renders empty).
    pub fn render_with_captures<'c>(
        &self,
        req: &RequestHead,
        capture: impl Fn(usize) -> Option<&'c str>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.literal_len + 32);
        self.render_into(req, capture, &mut out);
        out
    }

    /// Appends the value to `out`; returns true when every field in it
    /// rendered empty (nginx: a key made only of empty variables is empty).
    pub fn render_into<'c>(
        &self,
        req: &RequestHead,
        capture: impl Fn(usize) -> Option<&'c str>,
        out: &mut Vec<u8>,
    ) -> bool {
        let mut fields_empty = true;
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Field(field) => {
                    let before = out.len();
                    field.render_into(req, out);
                    fields_empty &= out.len() == before;
                }
                Part::Capture(n) => {
                    if let Some(group) = capture(*n) {
                        out.extend_from_slice(group.as_bytes());
                    }
                }
            }
        }
        fields_empty
    }
}

fn flush_literal(literal: &mut Vec<u8>, parts: &mut Vec<Part>) {
    if !literal.is_empty() {
        parts.push(Part::Literal(std::mem::take(literal).into_boxed_slice()));
    }
}

/// Every field of request header `name` (lower case), joined like nginx's
/// `$http_<name>`: `; ` for cookies, `, ` otherwise.
pub fn push_joined_header(req: &RequestHead, name: &str, out: &mut Vec<u8>) {
    let separator: &[u8] = if name == "cookie" { b"; " } else { b", " };
    for (i, value) in req.header_values(name).enumerate() {
        if i > 0 {
            out.extend_from_slice(separator);
        }
        out.extend_from_slice(value);
    }
}

// === impl Field ===

impl Field {
    fn parse(name: &str) -> Result<Field, TemplateError> {
        let field = match name {
            "host" => Field::Host,
            "client_ip" => Field::ClientIp,
            "scheme" => Field::Scheme,
            "request_id" => Field::RequestId,
            "method" => Field::Method,
            "path" => Field::Path,
            "query" => Field::Query,
            "uri" => Field::Uri,
            "route" => Field::Route,
            _ => match name.strip_prefix("http_") {
                Some(header) => {
                    let valid = !header.is_empty()
                        && header
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if !valid {
                        return Err(TemplateError::BadHeaderPlaceholder {
                            name: name.to_owned(),
                        });
                    }
                    let header: String = header
                        .chars()
                        .map(|c| {
                            if c == '_' {
                                '-'
                            } else {
                                c.to_ascii_lowercase()
                            }
                        })
                        .collect();
                    if header == "host" {
                        Field::HttpHost
                    } else {
                        Field::Header(header.into_boxed_str())
                    }
                }
                None => {
                    return Err(TemplateError::UnknownPlaceholder {
                        name: name.to_owned(),
                    })
                }
            },
        };
        Ok(field)
    }

    /// The request header [`Field::render_into`] reads, if any.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Field::Header(name) => Some(name),
            Field::HttpHost => Some("host"),
            _ => None,
        }
    }

    /// The [`RequestHead`] fields [`Field::render_into`] reads; none for a
    /// header (those are [`RequestHead::headers`], see
    /// [`Field::header_name`]).
    pub fn request_fields(&self) -> RequestFieldSet {
        match self {
            // The routed host is `{http_host}`'s fallback.
            Field::Host | Field::HttpHost => RequestFieldSet::HOST,
            // Always given: numbers, not text.
            Field::ClientIp | Field::Scheme | Field::Method => RequestFieldSet::empty(),
            Field::RequestId => RequestFieldSet::REQUEST_ID,
            Field::Path => RequestFieldSet::PATH,
            Field::Query => RequestFieldSet::QUERY,
            Field::Uri => RequestFieldSet::PATH | RequestFieldSet::QUERY,
            Field::Route => RequestFieldSet::ROUTE,
            Field::Header(_) => RequestFieldSet::empty(),
        }
    }

    /// Appends this field's value for `req` to `out`.
    pub fn render_into(&self, req: &RequestHead, out: &mut Vec<u8>) {
        let text: &str = match self {
            Field::Host => &req.host,
            Field::ClientIp => {
                push_ip(req.client_ip, out);
                return;
            }
            Field::Scheme => req.scheme.as_str(),
            Field::RequestId => &req.request_id,
            Field::Method => req.method.as_str(),
            Field::Path => &req.path,
            Field::Query => req.query.as_deref().unwrap_or(""),
            Field::Route => &req.route,
            Field::Uri => {
                out.extend_from_slice(req.path.as_bytes());
                if let Some(query) = &*req.query {
                    out.push(b'?');
                    out.extend_from_slice(query.as_bytes());
                }
                return;
            }
            Field::HttpHost => match req.header("host") {
                Some(value) => {
                    out.extend_from_slice(value);
                    return;
                }
                None => &req.host,
            },
            Field::Header(name) => {
                push_joined_header(req, name, out);
                return;
            }
        };
        out.extend_from_slice(text.as_bytes());
    }
}

/// `ip` as `IpAddr`'s `Display` writes it; IPv4 digit by digit (the
/// formatting machinery costs a guest ~1k instructions).
pub fn push_ip(ip: std::net::IpAddr, out: &mut Vec<u8>) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests;
