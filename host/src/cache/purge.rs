//! The purge endpoint on the admin listener (never on the public one):
//! `POST /cache/purge?key=K` removes one key (every variant of it),
//! `?prefix=P` every key starting with P, `?all=true` everything. Keys are
//! the rendered `cache.key` templates (default `{scheme}://{host}{uri}`),
//! percent-encoded in the query. Answers `{"purged": N}`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use percent_encoding::percent_decode_str;

use super::{PurgeScope, ResponseCache};
use crate::admin::{handler, text_response, AdminHandler, AdminResponse};

/// The purge endpoint's path.
pub const PURGE_PATH: &str = "/cache/purge";

/// The `POST /cache/purge` handler over the process's cache.
pub fn endpoint(cache: Arc<ResponseCache>) -> AdminHandler {
    handler(move |req| {
        let scope = purge_scope(req.uri().query());
        let cache = cache.clone();
        async move {
            match scope {
                Ok(scope) => {
                    let purged = cache.purge(&scope);
                    tracing::info!(?scope, purged, "cache purge");
                    json_response(StatusCode::OK, format!("{{\"purged\":{purged}}}\n"))
                }
                Err(message) => text_response(StatusCode::BAD_REQUEST, message),
            }
        }
    })
}

/// The scope named by the query string: exactly one of `key`, `prefix`, `all`.
fn purge_scope(query: Option<&str>) -> Result<PurgeScope, &'static str> {
    const USAGE: &str = "purge what? use ?key=K, ?prefix=P or ?all=true\n";
    let mut scopes = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(&value.replace('+', " "))
            .decode_utf8()
            .map_err(|_| "the value is not UTF-8\n")?
            .into_owned();
        scopes.push(match name {
            "key" if !value.is_empty() => PurgeScope::Key(value),
            "prefix" if !value.is_empty() => PurgeScope::Prefix(value),
            "all" if value == "true" || value == "1" => PurgeScope::All,
            _ => return Err(USAGE),
        });
    }
    match scopes.len() {
        1 => Ok(scopes.remove(0)),
        _ => Err(USAGE),
    }
}

fn json_response(status: StatusCode, body: String) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_the_query() {
        assert_eq!(
            purge_scope(Some("key=http%3A%2F%2Fh%2Fa%3Fb%3D1")),
            Ok(PurgeScope::Key("http://h/a?b=1".into()))
        );
        assert_eq!(
            purge_scope(Some("prefix=http://h/docs/")),
            Ok(PurgeScope::Prefix("http://h/docs/".into()))
        );
        assert_eq!(purge_scope(Some("all=true")), Ok(PurgeScope::All));
        assert!(purge_scope(None).is_err());
        assert!(purge_scope(Some("key=")).is_err());
        assert!(purge_scope(Some("all=true&key=x")).is_err());
        assert!(purge_scope(Some("everything")).is_err());
    }
}
