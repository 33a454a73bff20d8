//! Per-route HTTP -> HTTPS redirect (`https_redirect = true`): a request that
//! arrived as plain HTTP (by the listener, or by `X-Forwarded-Proto` from a
//! trusted edge) is answered right after routing, before the request hooks
//! and the upstream, with a redirect to the same host and target on `https`
//! (default port). The response hooks and the log phase still run.

use http::{header, HeaderValue, Method, Response, StatusCode};

use crate::body::{full_body, ProxyBody};

/// `301` for GET and HEAD (as nginx's `return 301 https://...`), `308` for
/// other methods so the method and body are kept.
pub fn redirect_to_https(method: &Method, host: &str, path_and_query: &str) -> Response<ProxyBody> {
    let status = if method == Method::GET || method == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let location = format!("https://{host}{path_and_query}");
    let mut resp = Response::new(full_body(format!("Redirecting to {location}\n")));
    *resp.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_is_301_and_post_is_308_to_the_same_target() {
        let r = redirect_to_https(&Method::GET, "docs.example.com", "/a/b?x=1");
        assert_eq!(r.status(), 301);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://docs.example.com/a/b?x=1"
        );
        let r = redirect_to_https(&Method::POST, "[::1]", "/form");
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()[header::LOCATION], "https://[::1]/form");
    }
}
