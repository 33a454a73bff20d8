//! Builds the validated `[upstreams.NAME]` tables: an HTTP(S) base URL with
//! its timeouts and TLS/Host settings, or a static folder. Part of config
//! loading; routes then refer to these by name.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Context, Source};
use super::model::{
    ActiveHealthCheck, Endpoint, HealthPolicy, HostHeader, HttpUpstream, TailnetConfig, Upstream,
    UpstreamKind, UpstreamName,
};
use super::raw::SpannedKey;
use super::resolve_path;
use super::tailnet::check_allowed;
use super::values::{check_identifier, parse_duration};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous: a tailnet service's first handshake waits for its certificate.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_FAILS: u32 = 1;
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

// === raw ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<Spanned<String>>,
    #[serde(rename = "static")]
    pub static_root: Option<Spanned<String>>,
    pub host_header: Option<Spanned<RawHostHeader>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    pub tls_verify: Option<Spanned<bool>>,
    /// Several addresses of one upstream, in failover order (instead of `url`).
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
    pub ca_file: Option<Spanned<String>>,
    pub tls_handshake_timeout: Option<Spanned<String>>,
    pub max_fails: Option<Spanned<u32>>,
    pub fail_timeout: Option<Spanned<String>>,
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

/// `host_header`: `"client"`, `"upstream"` or `{ set = "name" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHostHeader {
    Client,
    Upstream,
    Set(String),
}

// === build ===

pub(super) fn build_upstreams(
    src: &Source<'_>,
    base_dir: &Path,
    tailnet: &TailnetConfig,
    raw: BTreeMap<SpannedKey, RawUpstream>,
) -> Result<BTreeMap<UpstreamName, Arc<Upstream>>, ConfigError> {
    let mut upstreams = BTreeMap::new();
    for (name, table) in raw {
        let name_span = name.span();
        let name = src.at(
            name.span(),
            None,
            check_identifier("upstream name", name.get_ref()),
        )?;
        let context = Context::Upstream(name.clone());
        let kind = build_kind(src, base_dir, tailnet, &context, name_span, table)?;
        let name = UpstreamName(name);
        upstreams.insert(name.clone(), Arc::new(Upstream { name, kind }));
    }
    Ok(upstreams)
}

fn build_kind(
    src: &Source<'_>,
    base_dir: &Path,
    tailnet: &TailnetConfig,
    context: &Context,
    name_span: Range<usize>,
    mut raw: RawUpstream,
) -> Result<UpstreamKind, ConfigError> {
    let ctx = Some(context);
    let mut more_urls = Vec::new();
    match (&raw.url, raw.urls.take()) {
        (Some(_), Some(urls)) => {
            return Err(src.error(
                urls.span(),
                ctx,
                invalid("urls", "`url` and `urls` are exclusive; set one"),
            ))
        }
        (None, Some(urls)) => {
            let span = urls.span();
            let mut urls = urls.into_inner().into_iter();
            raw.url =
                Some(urls.next().ok_or_else(|| {
                    src.error(span, ctx, invalid("urls", "name at least one url"))
                })?);
            more_urls = urls.collect();
        }
        _ => {}
    }
    match (&raw.url, &raw.static_root) {
        (None, None) => Err(src.error(name_span, ctx, ConfigErrorKind::UpstreamKindMissing)),
        (Some(_), Some(root)) => {
            Err(src.error(root.span(), ctx, ConfigErrorKind::UpstreamKindBoth))
        }
        (None, Some(root)) => {
            let url_only = [
                ("host_header", raw.host_header.as_ref().map(Spanned::span)),
                (
                    "connect_timeout",
                    raw.connect_timeout.as_ref().map(Spanned::span),
                ),
                (
                    "response_timeout",
                    raw.response_timeout.as_ref().map(Spanned::span),
                ),
                ("tls_verify", raw.tls_verify.as_ref().map(Spanned::span)),
                ("ca_file", raw.ca_file.as_ref().map(Spanned::span)),
                (
                    "tls_handshake_timeout",
                    raw.tls_handshake_timeout.as_ref().map(Spanned::span),
                ),
                ("max_fails", raw.max_fails.as_ref().map(Spanned::span)),
                ("fail_timeout", raw.fail_timeout.as_ref().map(Spanned::span)),
                (
                    "health_check",
                    raw.health_check.as_ref().map(|h| h.path.span()),
                ),
            ];
            if let Some((key, Some(span))) = url_only.into_iter().find(|(_, s)| s.is_some()) {
                return Err(src.error(span, ctx, ConfigErrorKind::UrlOnlyKey(key)));
            }
            if root.get_ref().is_empty() {
                return Err(src.error(root.span(), ctx, ConfigErrorKind::EmptyPath("static")));
            }
            let root_path = resolve_path(base_dir, root.get_ref());
            src.at(root.span(), ctx, check_folder(&root_path))?;
            Ok(UpstreamKind::Static { root: root_path })
        }
        (Some(url), None) => {
            let (url_value, tls, host, port) =
                src.at(url.span(), ctx, parse_upstream_url(url.get_ref()))?;
            let timeout = |t: &Option<Spanned<String>>, default| match t {
                None => Ok(default),
                Some(t) => src.at(t.span(), ctx, parse_duration(t.get_ref())),
            };
            check_allowed(src, tailnet, context, url.span(), &host, port)?;
            let mut endpoints = vec![endpoint(&url_value, &host, port)];
            for other in &more_urls {
                let (other_url, other_tls, other_host, other_port) =
                    src.at(other.span(), ctx, parse_upstream_url(other.get_ref()))?;
                if other_tls != tls || other_url.path() != url_value.path() {
                    return Err(src.error(
                        other.span(),
                        ctx,
                        invalid(
                            "urls",
                            "every url of an upstream must have the same scheme and path",
                        ),
                    ));
                }
                check_allowed(src, tailnet, context, other.span(), &other_host, other_port)?;
                let next = endpoint(&other_url, &other_host, other_port);
                if endpoints.contains(&next) {
                    return Err(src.error(
                        other.span(),
                        ctx,
                        invalid("urls", format!("{} is listed twice", next.authority)),
                    ));
                }
                endpoints.push(next);
            }
            let ca_file = match &raw.ca_file {
                None => None,
                Some(file) if file.get_ref().is_empty() => {
                    return Err(src.error(file.span(), ctx, ConfigErrorKind::EmptyPath("ca_file")))
                }
                Some(file) if !tls => {
                    return Err(src.error(
                        file.span(),
                        ctx,
                        invalid("ca_file", "applies only to https upstreams"),
                    ))
                }
                Some(file) => {
                    let path = resolve_path(base_dir, file.get_ref());
                    src.at(file.span(), ctx, check_ca_file(&path))?;
                    Some(path)
                }
            };
            let max_fails = match &raw.max_fails {
                None => DEFAULT_MAX_FAILS,
                Some(n) if *n.get_ref() == 0 => {
                    return Err(src.error(
                        n.span(),
                        ctx,
                        invalid("max_fails", "must be at least 1"),
                    ))
                }
                Some(n) => *n.get_ref(),
            };
            let active = raw
                .health_check
                .as_ref()
                .map(|check| build_health_check(src, ctx, check))
                .transpose()?;
            Ok(UpstreamKind::Http(Box::new(HttpUpstream {
                url: url_value,
                tls,
                host,
                port,
                host_header: match raw.host_header {
                    None => HostHeader::Client,
                    Some(raw) => src.at(raw.span(), ctx, host_header(raw.into_inner()))?,
                },
                connect_timeout: timeout(&raw.connect_timeout, DEFAULT_CONNECT_TIMEOUT)?,
                response_timeout: timeout(&raw.response_timeout, DEFAULT_RESPONSE_TIMEOUT)?,
                tls_verify: raw.tls_verify.is_none_or(Spanned::into_inner),
                ca_file,
                tls_handshake_timeout: timeout(
                    &raw.tls_handshake_timeout,
                    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                )?,
                endpoints,
                health: HealthPolicy {
                    max_fails,
                    fail_timeout: timeout(&raw.fail_timeout, DEFAULT_FAIL_TIMEOUT)?,
                    active,
                },
            })))
        }
    }
}

fn endpoint(url: &http::Uri, host: &str, port: u16) -> Endpoint {
    Endpoint {
        host: host.to_owned(),
        port,
        authority: url
            .authority()
            .cloned()
            .unwrap_or_else(|| http::uri::Authority::from_static("invalid")),
    }
}

fn build_health_check(
    src: &Source<'_>,
    ctx: Option<&Context>,
    raw: &RawHealthCheck,
) -> Result<ActiveHealthCheck, ConfigError> {
    let path = raw.path.get_ref();
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(src.error(
            raw.path.span(),
            ctx,
            invalid(
                "health_check.path",
                format!("\"{path}\" must be a path starting with \"/\""),
            ),
        ));
    }
    let duration = |t: &Option<Spanned<String>>, default| match t {
        None => Ok(default),
        Some(t) => src.at(t.span(), ctx, parse_duration(t.get_ref())),
    };
    Ok(ActiveHealthCheck {
        path: path.clone(),
        interval: duration(&raw.interval, DEFAULT_HEALTH_INTERVAL)?,
        timeout: duration(&raw.timeout, DEFAULT_HEALTH_TIMEOUT)?,
    })
}

/// `host_header`: a fixed name must be a host with an optional port, as a
/// client would send it (no scheme, path or userinfo).
fn host_header(raw: RawHostHeader) -> Result<HostHeader, ConfigErrorKind> {
    let name = match raw {
        RawHostHeader::Client => return Ok(HostHeader::Client),
        RawHostHeader::Upstream => return Ok(HostHeader::Upstream),
        RawHostHeader::Set(name) => name,
    };
    let bad = |why: &str| invalid("host_header.set", format!("\"{name}\" {why}"));
    let authority: http::uri::Authority = name
        .parse()
        .map_err(|_| bad("is not a host name with an optional port"))?;
    if name.is_empty() || name.contains('@') || authority.host().is_empty() {
        return Err(bad("is not a host name with an optional port"));
    }
    let value =
        http::HeaderValue::from_str(&name).map_err(|_| bad("is not a valid header value"))?;
    Ok(HostHeader::Set(value))
}

/// A readable file with at least one PEM certificate.
fn check_ca_file(path: &Path) -> Result<(), ConfigErrorKind> {
    crate::upstream::tls::load_roots(path)
        .map(|_| ())
        .map_err(|reason| ConfigErrorKind::Certificate {
            path: path.to_path_buf(),
            reason,
        })
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigErrorKind {
    ConfigErrorKind::Invalid {
        key,
        reason: reason.into(),
    }
}

fn check_folder(path: &Path) -> Result<(), ConfigErrorKind> {
    let bad = |reason: String| ConfigErrorKind::StaticFolder {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(bad("not a folder".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// An upstream base URL: `http` or `https`, a host, an optional port and
/// path prefix; no credentials, query or fragment. Returns (url, tls, host, port).
fn parse_upstream_url(text: &str) -> Result<(http::Uri, bool, String, u16), ConfigErrorKind> {
    let bad = |reason: &str| ConfigErrorKind::UpstreamUrl {
        value: redact_userinfo(text),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = text
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(_) => return Err(bad("the scheme must be http or https")),
        None => return Err(bad("it must start with http:// or https://")),
    };
    let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the url are not supported"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    if uri.query().is_some() {
        return Err(bad("a query is not allowed in an upstream url"));
    }
    let port = match authority.port_u16() {
        Some(0) => return Err(bad("port 0 is not a port to connect to")),
        Some(port) => port,
        None if tls => 443,
        None => 80,
    };
    let host = host.to_ascii_lowercase();
    Ok((uri, tls, host, port))
}

/// `https://user:secret@host/x` -> `https://***@host/x`, so an error never
/// repeats a password.
fn redact_userinfo(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..authority_start], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_give_scheme_host_and_port() {
        let (uri, tls, host, port) = parse_upstream_url("https://Docs.tail8d86e.ts.net").unwrap();
        assert!(tls);
        assert_eq!((host.as_str(), port), ("docs.tail8d86e.ts.net", 443));
        assert_eq!(uri.path(), "/");
        let (uri, tls, host, port) = parse_upstream_url("http://100.64.0.7:3000/app").unwrap();
        assert!(!tls);
        assert_eq!(
            (host.as_str(), port, uri.path()),
            ("100.64.0.7", 3000, "/app")
        );
        let (_, _, host, port) = parse_upstream_url("http://[fd7a::1]:8080").unwrap();
        assert_eq!((host.as_str(), port), ("[fd7a::1]", 8080));
    }

    #[test]
    fn upstream_urls_reject_what_cannot_be_dialled() {
        for (bad, why) in [
            ("ftp://x", "scheme"),
            ("x.example.com", "http://"),
            ("/just/a/path", "http://"),
            ("http://user:pw@x", "\"http://***@x\": credentials"),
            ("http://x/?a=1", "query"),
            ("http://x:0", "port 0"),
            ("http://x y", "invalid"),
            ("", "empty"),
        ] {
            let err = parse_upstream_url(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
