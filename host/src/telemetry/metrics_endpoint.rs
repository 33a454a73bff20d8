//! `GET /metrics` on the admin listener: every metric in the Prometheus text
//! format (version 0.0.4), for a scraper or a person. Off the request path.

use http::{header, HeaderValue, StatusCode};

use super::{render_metrics, METRICS_CONTENT_TYPE};
use crate::admin::{handler, text_response, AdminHandler};

/// The admin path.
pub const METRICS_PATH: &str = "/metrics";

/// The handler: 200 with the text, or 503 before telemetry has started.
pub fn endpoint() -> AdminHandler {
    handler(|_req| async {
        match render_metrics() {
            Some(text) => {
                let mut response = text_response(StatusCode::OK, text);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(METRICS_CONTENT_TYPE),
                );
                response
            }
            None => text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics recorder not installed\n",
            ),
        }
    })
}
