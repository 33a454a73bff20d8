//! The admin listener's router: (method, path) -> handler, by exact path
//! or, for endpoints that take names in the path (`DELETE /bans/JAIL/KEY`),
//! by path prefix. Bodies are read whole (bounded) before the handler runs, and every
//! handler answers with a small in-memory body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};

use super::MAX_ADMIN_BODY;

/// A request as handlers see it: the body already read.
pub type AdminRequest = Request<Bytes>;
pub type AdminResponse = Response<Full<Bytes>>;
type AdminFuture = Pin<Box<dyn Future<Output = AdminResponse> + Send>>;
/// One endpoint's handler.
pub type AdminHandler = Arc<dyn Fn(AdminRequest) -> AdminFuture + Send + Sync>;

/// Wrap an async function as an [`AdminHandler`].
pub fn handler<F, Fut>(f: F) -> AdminHandler
where
    F: Fn(AdminRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = AdminResponse> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// A JSON response (`body` and a newline).
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> AdminResponse {
    let mut resp = text_response(status, format!("{body}\n"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A plain-text response.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> AdminResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// How a route's path is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathMatch {
    Exact(&'static str),
    /// The path starts with this and goes on (the handler parses the rest).
    Prefix(&'static str),
}

impl PathMatch {
    fn matches(self, path: &str) -> bool {
        match self {
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => path.len() > prefix.len() && path.starts_with(prefix),
        }
    }
}

/// The admin endpoints by method and path.
#[derive(Default, Clone)]
pub struct AdminRouter {
    routes: Vec<(Method, PathMatch, AdminHandler)>,
}

impl AdminRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an endpoint (a later route for the same method and path wins).
    pub fn route(self, method: Method, path: &'static str, handler: AdminHandler) -> Self {
        self.add(method, PathMatch::Exact(path), handler)
    }

    /// Add an endpoint for every path that starts with `prefix` and goes on
    /// (`/bans/` matches `/bans/ssh/192.0.2.1`, not `/bans/`).
    pub fn route_prefix(self, method: Method, prefix: &'static str, handler: AdminHandler) -> Self {
        self.add(method, PathMatch::Prefix(prefix), handler)
    }

    fn add(mut self, method: Method, path: PathMatch, handler: AdminHandler) -> Self {
        self.routes
            .retain(|(m, p, _)| !(*m == method && *p == path));
        self.routes.push((method, path, handler));
        self
    }

    /// Answer one request: the handler's response, 404 for an unknown path,
    /// 405 for a known path with another method, 413 for a body too large.
    pub async fn dispatch<B>(&self, req: Request<B>) -> AdminResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path();
        let Some(handler) = self
            .routes
            .iter()
            .find(|(m, p, _)| m == req.method() && p.matches(path))
            .map(|(_, _, h)| h.clone())
        else {
            let allowed: Vec<&str> = self
                .routes
                .iter()
                .filter(|(_, p, _)| p.matches(path))
                .map(|(m, _, _)| m.as_str())
                .collect();
            if allowed.is_empty() {
                return text_response(StatusCode::NOT_FOUND, "no such admin endpoint\n");
            }
            let mut resp = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, allow);
            }
            return resp;
        };
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_ADMIN_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return text_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("reading the request body: {e}\n"),
                )
            }
        };
        handler(Request::from_parts(parts, body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> AdminRouter {
        AdminRouter::new()
            .route(
                Method::POST,
                "/echo",
                handler(|req: AdminRequest| async move {
                    text_response(StatusCode::OK, req.into_body())
                }),
            )
            .route_prefix(
                Method::DELETE,
                "/items/",
                handler(|req: AdminRequest| async move {
                    text_response(StatusCode::OK, req.uri().path().to_owned())
                }),
            )
    }

    fn request(method: Method, path: &str, body: &'static str) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    }

    async fn body(resp: AdminResponse) -> String {
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn a_known_endpoint_gets_the_body() {
        let resp = router()
            .dispatch(request(Method::POST, "/echo", "hi"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, "hi");
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
        let resp = router().dispatch(request(Method::GET, "/nope", "")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = router().dispatch(request(Method::GET, "/echo", "")).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "POST");
    }

    #[tokio::test]
    async fn a_prefix_route_takes_longer_paths_only() {
        let resp = router()
            .dispatch(request(Method::DELETE, "/items/a/b", ""))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, "/items/a/b");
        let resp = router()
            .dispatch(request(Method::DELETE, "/items/", ""))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = router()
            .dispatch(request(Method::GET, "/items/a", ""))
            .await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "DELETE");
    }

    #[tokio::test]
    async fn an_oversized_body_is_413() {
        let big: &'static str = Box::leak("x".repeat(MAX_ADMIN_BODY + 1).into_boxed_str());
        let resp = router().dispatch(request(Method::POST, "/echo", big)).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
