//! The dial target comes only from the upstream definition: plugin path
//! rewrites (scheme-relative, userinfo-looking, absolute-looking targets)
//! and Host headers set by a plugin or the client never make the proxy
//! connect anywhere but the route's upstream, within `[tailnet] allow`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A plugin that rewrites every request's path and sets its Host.
struct Rewriter {
    path: String,
    host: String,
}

impl PluginHooks for Rewriter {
    fn name(&self) -> &str {
        "rewriter"
    }
    fn hooks(&self) -> HookSet {
        HookSet::REQUEST
    }
    fn on_request<'a>(&'a self, _req: &'a mut RequestHead) -> HookCall<'a, RequestAction> {
        Box::pin(std::future::ready(Ok(RequestAction::Continue(
            RequestEdits {
                headers: vec![HeaderEdit {
                    op: HeaderOp::Set,
                    name: "host".into(),
                    value: self.host.clone().into_bytes(),
                }],
                path: Some(self.path.clone()),
                delay_ms: 0,
                vars: vec![],
            },
        ))))
    }
    fn on_response<'a>(
        &'a self,
        _req: &'a mut RequestHead,
        _resp: &'a mut ResponseHead,
    ) -> HookCall<'a, ResponseEdits> {
        Box::pin(std::future::ready(Ok(ResponseEdits { headers: vec![] })))
    }
    fn on_log<'a>(&'a self, _rec: &'a mut LogRecord) -> HookCall<'a, LogVerdict> {
        Box::pin(std::future::ready(Ok(LogVerdict::Keep)))
    }
}

/// A listener that only counts the connections it gets.
async fn canary() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_rewrites_and_host_headers_never_change_the_dial_target() {
    let up = echo_upstream().await;
    let (canary, hits) = canary().await;
    let config = format!(
        r#"
[tailnet]
allow = ["127.0.0.1:{up_port}"]

[upstreams.echo]
url = "http://{up}/base"

[[routes]]
name = "app"
hosts = ["app.test"]
path = "/"
upstream = "echo"
"#,
        up_port = up.port()
    );
    for target in [
        format!("//{canary}/x"),
        format!("/@{canary}/x"),
        format!("//user@{canary}/x"),
        "/..%2f..%2fetc".to_string(),
        format!("/http://{canary}/"),
    ] {
        let plugin = Rewriter {
            path: target.clone(),
            host: canary.to_string(),
        };
        let chain = RouteChain::new(
            RouteName("app".into()),
            vec![ChainEntry::new(Box::new(plugin), FailurePolicy::Closed).expect("entry")],
        );
        let h = harness(&config, vec![chain]);
        let answer = h
            .send(
                Request::get("/start")
                    .header("host", "app.test")
                    .header("x-forwarded-host", canary.to_string())
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{target}");
        let echoed = answer.json();
        // The rewrite is a path on the upstream, normalised as a client's
        // path is (`//canary/x` is `/canary/x`).
        let normal = crate::request_path::normalize(&target).expect("a normalisable path");
        assert_eq!(
            echoed["uri"].as_str(),
            Some(format!("/base{normal}").as_str()),
            "the rewrite is a path on the upstream"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing dialled the canary");
}
