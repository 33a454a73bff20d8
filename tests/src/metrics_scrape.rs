//! Reads Tailgate's `/metrics` (admin listener) in the tests: fetches the
//! Prometheus text and parses it into samples a test can look up by name
//! and a subset of labels.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::client::get;

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The whole `/metrics` text of the admin listener at `admin`.
pub async fn scrape_text(admin: SocketAddr) -> String {
    let reply = get(admin, "localhost", "/metrics").await;
    assert_eq!(reply.status, 200, "/metrics: {}", reply.text());
    reply.text()
}

/// `/metrics`, parsed.
pub async fn scrape(admin: SocketAddr) -> Vec<Sample> {
    parse(&scrape_text(admin).await)
}

/// Parse exposition text (comments skipped). Panics on a malformed line:
/// `/metrics` must always be valid.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("malformed metrics line: {l}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        None => (head, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.trim_start_matches(',').to_owned(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// Samples named `name` whose labels include every pair of `labels`.
pub fn matching<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The sum of the matching samples (0 when none).
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(samples, name, labels)
        .iter()
        .map(|s| s.value)
        .sum()
}
