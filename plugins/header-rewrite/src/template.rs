//! Value templates: the `{host}`, `{http_user_agent}`, `$1` ... strings of
//! header values and redirect locations. The parser and renderer are the
//! SDK's ([`tailgate_plugin_sdk::template`], shared with rate-limit's
//! keys); header values parse `$n` as text, redirect locations as the path
//! regex's captures (see `answer_rules.rs`).

pub use tailgate_plugin_sdk::template::{CaptureRefs, Template};

#[cfg(test)]
pub(crate) mod tests {
    use tailgate_plugin_sdk::{Header, RequestHead};

    /// A request as the host would hand it over.
    pub(crate) fn request(method: &str, path: &str, query: Option<&str>) -> RequestHead {
        RequestHead {
            method: method.to_owned(),
            scheme: "https".to_owned(),
            host: "example.com".to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: vec![
                Header::new("user-agent", "curl/8.5"),
                Header::new("cookie", "a=1"),
                Header::new("x-forwarded-for", "10.0.0.1"),
                Header::new("cookie", "b=2"),
                Header::new("x-forwarded-for", "10.0.0.2"),
            ],
            client_ip: "203.0.113.7".to_owned(),
            route: "site".to_owned(),
            request_id: "01HZX".to_owned(),
        }
    }
}
