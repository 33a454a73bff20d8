//! The HTTP client both pushers share: POSTs one encoded batch to the
//! configured endpoint (HTTP or HTTPS with the web PKI roots), with its auth
//! header, under a deadline, and sorts the outcome into accepted, worth
//! retrying (connection error, timeout, 429, 5xx — with `Retry-After`), or
//! rejected for good (any other status). In `[tailnet] dial = "socks5"`
//! mode it connects through tailscaled's SOCKS5 server, like the upstreams.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::TelemetryError;
use crate::config::model::telemetry::{PushAuth, PushEndpoint};
use crate::error::error_chain;

/// Longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Bytes of an error response kept for the log.
const ERROR_BODY_LIMIT: usize = 512;

const AGENT: &str = concat!("tailgate/", env!("CARGO_PKG_VERSION"));

/// How one POST went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushResult {
    Accepted,
    /// Try again later (after at least `retry_after`, when the server said).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The server refused this batch; sending it again cannot help.
    Rejected {
        status: StatusCode,
        message: String,
    },
}

/// A keep-alive client for one endpoint.
#[derive(Debug, Clone)]
pub struct PushClient {
    client: Client<HttpsConnector<PushDialer>, Full<Bytes>>,
    url: Uri,
    auth: Option<HeaderValue>,
    timeout: Duration,
}

impl PushClient {
    /// `what` names the endpoint in errors (`telemetry.loki`).
    pub fn new(endpoint: &PushEndpoint, what: &'static str) -> Result<Self, TelemetryError> {
        let tls = tls_config().map_err(|e| TelemetryError::Tls {
            what,
            reason: e.to_string(),
        })?;
        let dialer = match endpoint.socks5 {
            Some(proxy) => PushDialer::Socks5(proxy),
            None => {
                let mut direct = HttpConnector::new();
                direct.enforce_http(false);
                direct.set_nodelay(true);
                PushDialer::Direct(direct)
            }
        };
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(dialer);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let auth = endpoint
            .auth
            .as_ref()
            .map(|auth| auth_header(auth, what))
            .transpose()?;
        Ok(PushClient {
            client,
            url: endpoint.url.clone(),
            auth,
            timeout: endpoint.timeout,
        })
    }

    /// POST `body` with `headers` (plus User-Agent and auth).
    pub async fn post(&self, headers: &[(HeaderName, HeaderValue)], body: Bytes) -> PushResult {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(USER_AGENT, AGENT);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth);
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return PushResult::Rejected {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("building the request: {e}"),
                }
            }
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((parts, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => PushResult::Retry {
                reason: format!("no answer within {:?}", self.timeout),
                retry_after: None,
            },
            Ok(Err(e)) => PushResult::Retry {
                reason: error_chain(&e),
                retry_after: None,
            },
            Ok(Ok((parts, body))) => classify(parts.status, &parts.headers, &body),
        }
    }
}

/// How a push reaches its endpoint: directly (system resolver), or through
/// tailscaled's SOCKS5 server, which is handed the host name (socks5h).
#[derive(Debug, Clone)]
pub enum PushDialer {
    Direct(HttpConnector),
    Socks5(SocketAddr),
}

type DialFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, crate::body::BoxError>> + Send>>;

impl tower_service::Service<Uri> for PushDialer {
    type Response = TokioIo<TcpStream>;
    type Error = crate::body::BoxError;
    type Future = DialFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            PushDialer::Direct(direct) => direct.poll_ready(cx).map_err(Into::into),
            PushDialer::Socks5(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match self {
            PushDialer::Direct(direct) => {
                let dialing = direct.call(uri);
                Box::pin(async move { dialing.await.map_err(Into::into) })
            }
            PushDialer::Socks5(proxy) => {
                let proxy = *proxy;
                Box::pin(async move {
                    let host = uri
                        .host()
                        .ok_or("push URL without a host")?
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned();
                    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                        Some("https") => 443,
                        _ => 80,
                    });
                    let stream = crate::upstream::socks5::connect(proxy, &host, port).await?;
                    Ok(TokioIo::new(stream))
                })
            }
        }
    }
}

/// rustls with the ring provider and the web PKI roots.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Sort a response into the three outcomes.
pub fn classify(status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> PushResult {
    if status.is_success() {
        return PushResult::Accepted;
    }
    let cut = &body[..body.len().min(ERROR_BODY_LIMIT)];
    let message = format!("{status}: {}", String::from_utf8_lossy(cut).trim());
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        PushResult::Retry {
            reason: message,
            retry_after,
        }
    } else {
        PushResult::Rejected { status, message }
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date; capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

fn auth_header(auth: &PushAuth, what: &'static str) -> Result<HeaderValue, TelemetryError> {
    let expand = |text: &crate::config::model::telemetry::EnvText| {
        text.expand()
            .map_err(|e| TelemetryError::Env { what, source: e })
    };
    let value = match auth {
        PushAuth::Basic { username, password } => {
            let pair = format!("{}:{}", expand(username)?, expand(password)?);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        PushAuth::Bearer(token) => format!("Bearer {}", expand(token)?),
    };
    let mut value =
        HeaderValue::from_str(&value).map_err(|_| TelemetryError::Credentials { what })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retry_and_reject() {
        let none = http::HeaderMap::new();
        assert_eq!(
            classify(StatusCode::NO_CONTENT, &none, b""),
            PushResult::Accepted
        );
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &none, b"boom"),
            PushResult::Retry {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &none, b""),
            PushResult::Retry { .. }
        ));
        let mut later = http::HeaderMap::new();
        later.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &later, b"slow down"),
            PushResult::Retry {
                reason: "429 Too Many Requests: slow down".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &none, b"entry out of order\n"),
            PushResult::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "400 Bad Request: entry out of order".into()
            }
        );
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &none, b""),
            PushResult::Rejected { .. }
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(12)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
