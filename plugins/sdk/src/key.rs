//! Request keys (feature `key`): what a plugin counts or keeps state by,
//! written as rate-limit's keys are (docs/rate-limit.md#keys): the client
//! IP (after the host's trusted-proxy resolution), `"header:<name>"` (every
//! field of that name, joined with `, `), a [`Template`] of request fields
//! (`"{http_x_api_key}:{host}"`), or, where the plugin allows it,
//! `"global"` (one key for every request). Parsed in `configure` into a
//! [`KeySource`]; rendered per request with [`KeySource::key`]. An empty
//! key is no key (nginx: the request is not counted).
//!
//! Keys longer than [`MAX_PLAIN_KEY_BYTES`], and header values that are not
//! UTF-8, become `sha256:<hex>`: still one key per distinct value, so a
//! long header can neither escape its limit or jail nor trap the plugin on
//! the host's key length limit.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::template::{push_ip, push_joined_header, CaptureRefs, Field, Template, TemplateError};
use crate::validate::is_token;
use crate::{wit_ip, RateKey, RequestFieldSet, RequestHead};

/// Longest key sent to the host as is (the host refuses keys above 512
/// bytes); longer ones go as `sha256:<hex>`.
pub const MAX_PLAIN_KEY_BYTES: usize = 256;

/// What a plugin's keys are for: whether `"global"` is one, and the words
/// its errors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    /// `None`: `"global"` is a key (one for every request). `Some(why)`:
    /// it is refused with this message (`"global" would ...`).
    pub global_refused: Option<&'static str>,
    /// How a key using `{request_id}` would fail: "limit anything" reads
    /// "a key using it would never limit anything".
    pub never: &'static str,
}

/// Where a key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `"client_ip"`: the request's client IP.
    ClientIp,
    /// `"header:<name>"` (name lower-cased): every value of that header,
    /// joined with `, `.
    Header(Box<str>),
    /// `"{http_x_api_key}:{host}"`: request fields between literal text
    /// (no `$n` captures, no `{request_id}`, at least one field).
    Template(Template),
    /// `"global"`: one key for every request.
    Global,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a key at all; the hint lists `"global"` where it is one.
    Unknown {
        text: String,
        global: bool,
    },
    BadHeaderName(String),
    Template(TemplateError),
    /// `"global"` where [`KeyUse::global_refused`] refuses it.
    Global(&'static str),
    /// `{request_id}` in a template.
    RequestId {
        never: &'static str,
    },
    /// A template without fields.
    NoPlaceholder {
        global: bool,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unknown { text, global } => write!(
                f,
                "`{text}` is not a key: use \"client_ip\", {}\"header:<name>\" or a template \
                 with placeholders such as \"{{http_x_api_key}}\"",
                if *global { "\"global\", " } else { "" }
            ),
            KeyError::BadHeaderName(name) => write!(f, "`{name}` is not a valid header name"),
            KeyError::Template(err) => err.fmt(f),
            KeyError::Global(why) => write!(f, "\"global\" {why}"),
            KeyError::RequestId { never } => write!(
                f,
                "`{{request_id}}` differs on every request: a key using it would never {never}"
            ),
            KeyError::NoPlaceholder { global } => {
                f.write_str("a template key needs at least one placeholder")?;
                if *global {
                    f.write_str("; for one key for every request use \"global\"")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for KeyError {}

impl From<TemplateError> for KeyError {
    fn from(err: TemplateError) -> Self {
        KeyError::Template(err)
    }
}

impl KeySource {
    /// Parse a config's key; `uses` says whether `"global"` is one.
    pub fn parse(text: &str, uses: KeyUse) -> Result<KeySource, KeyError> {
        let global = uses.global_refused.is_none();
        match (text, uses.global_refused) {
            ("client_ip", _) => return Ok(KeySource::ClientIp),
            ("global", None) => return Ok(KeySource::Global),
            ("global", Some(why)) => return Err(KeyError::Global(why)),
            _ => {}
        }
        if let Some(name) = text.strip_prefix("header:") {
            if !is_token(name) {
                return Err(KeyError::BadHeaderName(name.to_owned()));
            }
            return Ok(KeySource::Header(name.to_ascii_lowercase().into()));
        }
        if !text.contains('{') && !text.contains('}') {
            return Err(KeyError::Unknown {
                text: text.to_owned(),
                global,
            });
        }
        let template = Template::parse(text, CaptureRefs::Literal)?;
        if template.fields().any(|field| *field == Field::RequestId) {
            return Err(KeyError::RequestId { never: uses.never });
        }
        if template.fields().next().is_none() {
            return Err(KeyError::NoPlaceholder { global });
        }
        Ok(KeySource::Template(template))
    }

    /// The request headers the key reads.
    pub fn header_names(&self) -> Vec<&str> {
        match self {
            KeySource::ClientIp | KeySource::Global => Vec::new(),
            KeySource::Header(name) => vec![&**name],
            KeySource::Template(template) => template.header_names().collect(),
        }
    }

    /// The request fields the key reads (headers aside; the client address
    /// always comes: a number, not text).
    pub fn request_fields(&self) -> RequestFieldSet {
        match self {
            KeySource::ClientIp | KeySource::Header(_) | KeySource::Global => {
                RequestFieldSet::empty()
            }
            KeySource::Template(template) => template.request_fields(),
        }
    }

    /// The request's key; `None` when it is empty (a template whose fields
    /// are all empty is empty, as in nginx).
    pub fn key<'r>(&self, req: &'r RequestHead) -> Option<Cow<'r, str>> {
        let mut bytes = Vec::with_capacity(64);
        match self {
            KeySource::Global => return Some(Cow::Borrowed("global")),
            KeySource::ClientIp => push_ip(req.client_ip, &mut bytes),
            KeySource::Header(name) => push_joined_header(req, name, &mut bytes),
            KeySource::Template(template) => {
                if template.render_into(req, |_| None, &mut bytes) {
                    return None;
                }
            }
        }
        if bytes.is_empty() {
            return None;
        }
        Some(Cow::Owned(match String::from_utf8(bytes) {
            Ok(key) if key.len() <= MAX_PLAIN_KEY_BYTES => key,
            Ok(key) => hashed(key.as_bytes()),
            Err(err) => hashed(err.as_bytes()),
        }))
    }
}

/// A request's key as [`KeySource::request_key`] gives it: the client
/// address as a number (no text made or sent for it), or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKey<'r> {
    Address(IpAddr),
    Text(Cow<'r, str>),
}

impl RequestKey<'_> {
    /// The key as the host's `rate-limit-check` takes it.
    pub fn as_rate_key(&self) -> RateKey<'_> {
        match self {
            RequestKey::Address(ip) => RateKey::Address(wit_ip(*ip)),
            RequestKey::Text(text) => RateKey::Text(text),
        }
    }

    /// The key's text (an address as `Display` writes it), as
    /// [`KeySource::key`] gives it.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            RequestKey::Address(ip) => Cow::Owned(ip.to_string()),
            RequestKey::Text(text) => Cow::Borrowed(text),
        }
    }
}

impl KeySource {
    /// The request's key as [`KeySource::key`] makes it, but the client
    /// IP left a number: what a rate limit keyed by the client sends the
    /// host per request. `None` when the key is empty.
    pub fn request_key<'r>(&self, req: &'r RequestHead) -> Option<RequestKey<'r>> {
        match self {
            KeySource::ClientIp => Some(RequestKey::Address(req.client_ip)),
            _ => self.key(req).map(RequestKey::Text),
        }
    }
}

/// `sha256:<hex>` of `bytes`.
fn hashed(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in Sha256::digest(bytes) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests;
