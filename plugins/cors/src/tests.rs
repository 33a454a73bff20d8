//! Native tests of what the plugin asks the host for: the declared request
//! fields and header fields, and that both hooks answer the same from only
//! those as from a request the host copied whole.

use tailgate_plugin_sdk::testing::{
    assert_reads_exactly, narrowed_request, narrowed_response, request_head,
};
use tailgate_plugin_sdk::{Header, ResponseHead};

use super::*;

/// The docs' example (docs/cors.md).
const SITE: &str = include_str!("../tests/site.json");

const CONFIGS: [&str; 3] = [
    SITE,
    r#"{"allow_origins": ["*"], "allow_headers": ["*"]}"#,
    r#"{"allow_origins": ["https://app.example.com"]}"#,
];

fn cors(json: &str) -> Cors {
    Cors::configure(&Config::new(json)).unwrap_or_else(|err| panic!("{err}\n{json}"))
}

/// Preflights allowed and refused, actual requests from allowed, refused
/// and no origins.
fn sample_requests() -> Vec<RequestHead> {
    let cases: [(&str, &[(&str, &str)]); 8] = [
        (
            "OPTIONS",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "DELETE"),
                (
                    "access-control-request-headers",
                    "content-type, Authorization",
                ),
            ],
        ),
        (
            "options",
            &[
                ("origin", "https://a.example.org"),
                ("access-control-request-method", "GET"),
            ],
        ),
        (
            "OPTIONS",
            &[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "GET"),
            ],
        ),
        (
            "OPTIONS",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "PUT"),
            ],
        ),
        ("OPTIONS", &[("origin", "https://app.example.com")]),
        ("GET", &[("origin", "https://app.example.com")]),
        ("POST", &[("origin", "https://evil.test")]),
        ("GET", &[]),
    ];
    cases
        .into_iter()
        .map(|(method, headers)| {
            let mut req = request_head(method, "/api/items", Some("page=2"));
            req.headers.extend(
                headers
                    .iter()
                    .map(|(name, value)| Header::new(*name, *value)),
            );
            req
        })
        .collect()
}

/// What both hooks make of every sample request, each field outside
/// `fields` and each header field outside the declared filters left out
/// the way the host leaves it out.
fn answers(cors: &Cors, fields: RequestFieldSet) -> Vec<String> {
    let upstream = ResponseHead {
        status: 200,
        headers: vec![Header::new("access-control-allow-origin", "*")],
        host_generated: false,
    };
    let resp = narrowed_response(&upstream, &cors.response_headers());
    sample_requests()
        .iter()
        .flat_map(|full| {
            let req = narrowed_request(full, fields, &cors.request_headers());
            [
                format!("{:?}", cors.on_request(&req)),
                format!("{:?}", cors.on_response(&req, &resp)),
            ]
        })
        .collect()
}

#[test]
fn the_gates_keep_out_only_requests_the_hooks_have_nothing_for() {
    let upstream = ResponseHead {
        status: 200,
        headers: vec![Header::new("access-control-allow-origin", "*")],
        host_generated: false,
    };
    for json in CONFIGS {
        let cors = cors(json);
        let (request_gate, response_gate) = (cors.request_gate(), cors.response_gate());
        let mut entered = (0, 0);
        for req in sample_requests() {
            if request_gate.admits(&req) {
                entered.0 += 1;
            } else {
                assert_eq!(
                    format!("{:?}", cors.on_request(&req)),
                    format!("{:?}", RequestAction::proceed()),
                    "{json}: {} {:?}",
                    req.method.as_str(),
                    req.headers
                );
            }
            if response_gate.admits(&req) {
                entered.1 += 1;
            } else {
                assert!(
                    cors.on_response(&req, &upstream).headers.is_empty(),
                    "{json}: {:?}",
                    req.headers
                );
            }
        }
        // The three `OPTIONS` preflights enter the request hook (methods
        // are case-sensitive: `options` is another one, and no preflight),
        // the seven requests with an Origin the response hook; the last
        // sample has neither.
        assert_eq!(entered, (3, 7), "{json}");
    }
}

#[test]
fn the_host_is_asked_for_three_headers_only() {
    for json in CONFIGS {
        let cors = cors(json);
        // No text field: the method, which tells a preflight, always comes.
        assert_eq!(cors.request_fields(), RequestFieldSet::empty(), "{json}");
        assert_eq!(cors.log_fields(), LogFieldSet::empty());
        assert_eq!(
            cors.request_headers(),
            HeaderFilter::only([
                "origin",
                "access-control-request-method",
                "access-control-request-headers",
            ])
        );
        assert_eq!(cors.response_headers(), HeaderFilter::none());
    }
}

#[test]
fn the_hooks_answer_the_same_from_only_the_declared_fields() {
    for json in CONFIGS {
        let cors = cors(json);
        // Reading a text field it did not declare would panic here.
        assert_reads_exactly(
            cors.request_fields(),
            RequestFieldSet::all(),
            |fields| answers(&cors, fields),
            json,
        );
    }
}
