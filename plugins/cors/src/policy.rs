//! `CorsPolicy`: the route's validated CORS config and its two decisions.
//! In `on-request`, a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered here and never reaches the
//! upstream; in `on-response`, an allowed origin gets
//! `Access-Control-Allow-Origin` (and credentials, exposed headers) on the
//! actual response, a refused one gets none (the upstream's are removed).
//!
//! What does not depend on the origin is given to the host once
//! ([`CorsPolicy::fixed_edits`]: `Vary: Origin`, the upstream's own
//! `Access-Control-Allow-*` removed), and the hooks are gated
//! ([`CorsPolicy::request_gate`], [`CorsPolicy::response_gate`]): a request
//! that is no preflight does not enter `on-request`, and one without
//! `Origin` (most requests: same-origin and non-browser ones) enters
//! neither hook.

use serde::Deserialize;
use tailgate_plugin_sdk::validate::is_token;
use tailgate_plugin_sdk::{
    Config, ConfigError, FixedEdits, HeaderEdit, HookGate, ImmediateResponse, Method,
    RequestAction, RequestFieldSet, RequestHead, ResponseEdits, ResponseHead,
};

use crate::origin::OriginRule;

/// Longest preflight cache browsers honour (Firefox: 24 h).
const MAX_AGE_LIMIT: u32 = 86_400;

/// The config table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    max_age: Option<u32>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

/// The validated config.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Vec<OriginRule>,
    any_origin: bool,
    methods: Vec<String>,
    /// Lower case; `["*"]` = any.
    headers: Vec<String>,
    expose: String,
    credentials: bool,
    max_age: Option<u32>,
}

fn tokens(key: &str, items: &[String], upper: bool) -> Result<Vec<String>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if item != "*" && !is_token(item) {
                return Err(ConfigError::new(
                    format!("{key}[{i}]"),
                    format!("`{item}` is not a valid name"),
                ));
            }
            Ok(if upper {
                item.to_ascii_uppercase()
            } else {
                item.to_ascii_lowercase()
            })
        })
        .collect()
}

impl CorsPolicy {
    pub fn from_config(config: &Config) -> Result<CorsPolicy, ConfigError> {
        let settings: Settings = config.parse()?;
        if settings.allow_origins.is_empty() {
            return Err(ConfigError::new(
                "allow_origins",
                "list at least one origin (or \"*\")",
            ));
        }
        let origins = settings
            .allow_origins
            .iter()
            .enumerate()
            .map(|(i, o)| {
                OriginRule::parse(o).map_err(|e| ConfigError::new(format!("allow_origins[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let any_origin = origins.contains(&OriginRule::Any);
        if any_origin && origins.len() > 1 {
            return Err(ConfigError::new(
                "allow_origins",
                "\"*\" already allows every origin; give it alone",
            ));
        }
        let methods = tokens("allow_methods", &settings.allow_methods, true)?;
        if methods.iter().any(|m| m == "*") {
            return Err(ConfigError::new(
                "allow_methods",
                "list the methods; \"*\" is not honoured for credentialed requests and hides mistakes",
            ));
        }
        let headers = tokens("allow_headers", &settings.allow_headers, false)?;
        let expose = tokens("expose_headers", &settings.expose_headers, false)?;
        if settings.allow_credentials {
            if any_origin {
                return Err(ConfigError::new(
                    "allow_credentials",
                    "browsers refuse credentials with `Access-Control-Allow-Origin: *`; list the origins",
                ));
            }
            if headers.iter().any(|h| h == "*") || expose.iter().any(|h| h == "*") {
                return Err(ConfigError::new(
                    "allow_credentials",
                    "with credentials, \"*\" in allow_headers / expose_headers is taken literally by browsers; list the headers",
                ));
            }
        }
        if headers.iter().any(|h| h == "*") && headers.len() > 1 {
            return Err(ConfigError::new(
                "allow_headers",
                "\"*\" already allows every header; give it alone",
            ));
        }
        if let Some(age) = settings.max_age {
            if age > MAX_AGE_LIMIT {
                return Err(ConfigError::new(
                    "max_age",
                    format!("{age} s is more than browsers keep a preflight ({MAX_AGE_LIMIT} s)"),
                ));
            }
        }
        Ok(CorsPolicy {
            origins,
            any_origin,
            methods,
            headers,
            expose: expose.join(", "),
            credentials: settings.allow_credentials,
            max_age: settings.max_age,
        })
    }

    /// The request text fields the two hooks read: none (the method, which
    /// tells a preflight, always comes; the rest is in headers: `Origin`,
    /// ...).
    pub fn request_fields(&self) -> RequestFieldSet {
        RequestFieldSet::empty()
    }

    fn allowed_origin<'r>(&self, req: &'r RequestHead) -> Option<&'r str> {
        let origin = req.header_str("origin")?;
        self.origins
            .iter()
            .any(|rule| rule.allows(origin))
            .then_some(origin)
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin.
    fn allow_origin_value<'a>(&self, origin: &'a str) -> &'a str {
        if self.any_origin {
            "*"
        } else {
            origin
        }
    }

    /// The requests `on-request` has work for: preflights (the host does not
    /// enter it for the rest, which go on).
    pub fn request_gate(&self) -> HookGate {
        HookGate::methods([Method::Options])
            .with_header("origin")
            .with_header("access-control-request-method")
    }

    /// The requests whose responses `on-response` has work for: those
    /// with an `Origin` (the fixed edits are all the rest get).
    pub fn response_gate(&self) -> HookGate {
        HookGate::every().with_header("origin")
    }

    /// The response edits that do not depend on the origin, made by the
    /// host on every response (the host's own error pages included, as
    /// the hook's were): `Vary: Origin` when the answer depends on it, and
    /// the upstream's own `Access-Control-Allow-Origin` and
    /// `-Credentials` removed, so only an origin allowed here gets them
    /// ([`CorsPolicy::on_response`] sets them after these).
    pub fn fixed_edits(&self) -> FixedEdits {
        let mut edits = Vec::with_capacity(3);
        if !self.any_origin {
            edits.push(HeaderEdit::append("vary", "Origin"));
        }
        edits.push(HeaderEdit::remove("access-control-allow-origin"));
        edits.push(HeaderEdit::remove("access-control-allow-credentials"));
        FixedEdits::none().response(edits, true)
    }

    /// on-request: answers preflights; everything else goes on.
    pub fn on_request(&self, req: &RequestHead) -> RequestAction {
        let is_preflight = req.method == Method::Options
            && req.has_header("origin")
            && req.has_header("access-control-request-method");
        if !is_preflight {
            return RequestAction::proceed();
        }
        let vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
        let refuse = |reason: &str| -> RequestAction {
            ImmediateResponse::new(403)
                .header("vary", vary)
                .header("content-type", "text/plain; charset=utf-8")
                .body(format!("CORS preflight refused: {reason}\n"))
                .var("cors", "preflight_refused")
                .into()
        };
        let Some(origin) = self.allowed_origin(req) else {
            return refuse("origin not allowed");
        };
        let method = req
            .header_str("access-control-request-method")
            .unwrap_or_default()
            .trim();
        if !self.methods.iter().any(|m| m == method) {
            return refuse("method not allowed");
        }
        let requested: Vec<String> = req
            .header_values("access-control-request-headers")
            .flat_map(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|h| !h.is_empty())
            .collect();
        let any_header = self.headers.iter().any(|h| h == "*");
        if !any_header {
            if let Some(bad) = requested.iter().find(|h| !self.headers.contains(h)) {
                return refuse(&format!("header `{bad}` not allowed"));
            }
        }
        let mut answer = ImmediateResponse::new(204)
            .header(
                "access-control-allow-origin",
                self.allow_origin_value(origin),
            )
            .header("access-control-allow-methods", self.methods.join(", "))
            .header("vary", vary);
        if !requested.is_empty() {
            answer = answer.header("access-control-allow-headers", requested.join(", "));
        }
        if self.credentials {
            answer = answer.header("access-control-allow-credentials", "true");
        }
        if let Some(age) = self.max_age {
            answer = answer.header("access-control-max-age", age.to_string());
        }
        answer.var("cors", "preflight").into()
    }

    /// on-response: the CORS headers of an allowed origin's response, after
    /// [`CorsPolicy::fixed_edits`] (which a refused origin's response, and
    /// one without an origin, get alone).
    pub fn on_response(&self, req: &RequestHead, _resp: &ResponseHead) -> ResponseEdits {
        let mut edits = ResponseEdits::new();
        let Some(origin) = self.allowed_origin(req) else {
            return edits;
        };
        edits = edits.set_header(
            "access-control-allow-origin",
            self.allow_origin_value(origin),
        );
        if self.credentials {
            edits = edits.set_header("access-control-allow-credentials", "true");
        }
        if !self.expose.is_empty() {
            edits = edits.set_header("access-control-expose-headers", self.expose.as_str());
        }
        edits
    }
}
