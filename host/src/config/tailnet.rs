//! Builds the validated `[tailnet]` section (dial mode, DNS cache TTL, the
//! upstream allowlist, the LocalAPI identity check) from its raw table, and
//! checks every upstream address against the allowlist. Part of config
//! loading: a config naming a target outside `allow` never starts.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Context, Source};
use super::model::tailnet::{
    allowlist_permits, AllowedHost, AllowedTarget, DialMode, IdentityCheck, TailnetConfig,
    DEFAULT_DNS_TTL, DEFAULT_LOCALAPI_SOCKET, DEFAULT_WHOIS_CACHE,
};
use super::model::HostPattern;
use super::resolve_path;
use super::values::{parse_duration, parse_host_pattern};

/// `[tailnet]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTailnet {
    pub mode: Option<Spanned<RawDialMode>>,
    pub socks5: Option<Spanned<String>>,
    pub dns_ttl: Option<Spanned<String>>,
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub require_tag: Option<Spanned<String>>,
    pub localapi_socket: Option<Spanned<String>>,
    pub whois_cache: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDialMode {
    System,
    Socks5,
}

pub(super) fn build_tailnet(
    src: &Source<'_>,
    base_dir: &Path,
    raw: Option<RawTailnet>,
) -> Result<TailnetConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TailnetConfig::default());
    };
    let dial = match (raw.mode.as_ref().map(|m| *m.get_ref()), &raw.socks5) {
        (None | Some(RawDialMode::System), None) => DialMode::System,
        (None | Some(RawDialMode::System), Some(addr)) => {
            return Err(src.error(
                addr.span(),
                None,
                invalid("socks5", "applies only to mode = \"socks5\""),
            ))
        }
        (Some(RawDialMode::Socks5), None) => {
            let span = raw.mode.as_ref().map_or(0..0, Spanned::span);
            return Err(src.error(
                span,
                None,
                invalid(
                    "mode",
                    "mode = \"socks5\" needs `socks5`, the SOCKS5 server's IP:PORT (tailscaled --socks5-server)",
                ),
            ));
        }
        (Some(RawDialMode::Socks5), Some(addr)) => {
            let parsed: SocketAddr = addr.get_ref().parse().map_err(|_| {
                src.error(
                    addr.span(),
                    None,
                    invalid(
                        "socks5",
                        format!("\"{}\" is not an IP:PORT address", addr.get_ref()),
                    ),
                )
            })?;
            DialMode::Socks5(parsed)
        }
    };
    let dns_ttl = match &raw.dns_ttl {
        None => DEFAULT_DNS_TTL,
        Some(t) => src.at(t.span(), None, parse_duration(t.get_ref()))?,
    };
    let allow = match raw.allow {
        None => None,
        Some(list) => Some(
            list.get_ref()
                .iter()
                .map(|entry| src.at(entry.span(), None, parse_allow_entry(entry.get_ref())))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let identity = match raw.require_tag {
        None => {
            let stray = [
                (
                    "localapi_socket",
                    raw.localapi_socket.as_ref().map(Spanned::span),
                ),
                ("whois_cache", raw.whois_cache.as_ref().map(Spanned::span)),
            ];
            if let Some((key, Some(span))) = stray.into_iter().find(|(_, s)| s.is_some()) {
                return Err(src.error(span, None, invalid(key, "applies only with `require_tag`")));
            }
            None
        }
        Some(tag) => {
            if !tag.get_ref().starts_with("tag:") || tag.get_ref().len() <= 4 {
                return Err(src.error(
                    tag.span(),
                    None,
                    invalid(
                        "require_tag",
                        format!(
                            "\"{}\" is not a tailnet tag (e.g. \"tag:flyio-target\")",
                            tag.get_ref()
                        ),
                    ),
                ));
            }
            let localapi_socket = match &raw.localapi_socket {
                None => resolve_path(base_dir, DEFAULT_LOCALAPI_SOCKET),
                Some(p) if p.get_ref().is_empty() => {
                    return Err(src.error(
                        p.span(),
                        None,
                        ConfigErrorKind::EmptyPath("localapi_socket"),
                    ))
                }
                Some(p) => resolve_path(base_dir, p.get_ref()),
            };
            let cache_ttl = match &raw.whois_cache {
                None => DEFAULT_WHOIS_CACHE,
                Some(t) => src.at(t.span(), None, parse_duration(t.get_ref()))?,
            };
            Some(IdentityCheck {
                require_tag: tag.into_inner(),
                localapi_socket,
                cache_ttl,
            })
        }
    };
    Ok(TailnetConfig {
        dial,
        dns_ttl,
        allow,
        identity,
    })
}

/// `host:port`, host being a name, `*.suffix`, an IPv4 or a bracketed IPv6 address.
fn parse_allow_entry(text: &str) -> Result<AllowedTarget, ConfigErrorKind> {
    let bad = |reason| ConfigErrorKind::AllowEntry {
        value: text.to_owned(),
        reason,
    };
    let (host, port) = text
        .rsplit_once(':')
        .filter(|(host, _)| !host.ends_with(':') && (!host.starts_with('[') || host.ends_with(']')))
        .ok_or_else(|| bad("write host:port, e.g. \"docs.tail8d86e.ts.net:443\""))?;
    if host.contains(':') && !host.starts_with('[') {
        return Err(bad(
            "write an IPv6 address in brackets, e.g. \"[fd7a::1]:443\"",
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
    let host = match parse_host_pattern(host) {
        Ok(HostPattern::Exact(name)) => AllowedHost::Exact(name),
        Ok(HostPattern::WildcardSuffix(suffix)) => AllowedHost::Suffix(suffix),
        Ok(HostPattern::Any) => return Err(bad("\"*\" would allow every host; name the targets")),
        Err(ConfigErrorKind::HostPattern { reason, .. }) => return Err(bad(reason)),
        Err(other) => return Err(other),
    };
    Ok(AllowedTarget { host, port })
}

/// An upstream address must be admitted by `allow` (when there is a list).
pub(super) fn check_allowed(
    src: &Source<'_>,
    tailnet: &TailnetConfig,
    context: &Context,
    span: Range<usize>,
    host: &str,
    port: u16,
) -> Result<(), ConfigError> {
    if allowlist_permits(tailnet.allow.as_deref(), host, port) {
        Ok(())
    } else {
        Err(src.error(
            span,
            Some(context),
            ConfigErrorKind::TargetNotAllowed {
                target: format!("{host}:{port}"),
            },
        ))
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigErrorKind {
    ConfigErrorKind::Invalid {
        key,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries_need_host_and_port() {
        let t = parse_allow_entry("Docs.tail8d86e.ts.net:443").unwrap();
        assert_eq!(t.host, AllowedHost::Exact("docs.tail8d86e.ts.net".into()));
        assert_eq!(t.port, 443);
        let t = parse_allow_entry("*.tail8d86e.ts.net:443").unwrap();
        assert_eq!(t.host, AllowedHost::Suffix(".tail8d86e.ts.net".into()));
        let t = parse_allow_entry("[fd7a::1]:8080").unwrap();
        assert_eq!(t.host, AllowedHost::Exact("[fd7a::1]".into()));
        for (bad, why) in [
            ("docs.ts.net", "host:port"),
            ("docs.ts.net:0", "port"),
            ("docs.ts.net:http", "port"),
            ("*:443", "every host"),
            ("a*b.ts.net:443", "wildcard"),
            ("fd7a::1:443", "brackets"),
        ] {
            let err = parse_allow_entry(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
