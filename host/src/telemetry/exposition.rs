//! Reads the Prometheus text format the recorder renders back into series
//! (name, labels, value): what a scrape of `/metrics` would see, which the
//! remote_write pusher turns into samples. Histograms arrive as their
//! cumulative `_bucket{le}`, `_sum` and `_count` series.

/// One series of a rendered snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// In the order rendered (not sorted).
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A line that is not valid exposition text (a bug in the renderer: the
/// pusher logs it and skips the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics text line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

/// Every sample line of `text`; comments and blank lines are skipped. Bad
/// lines are returned apart so one cannot hide the others.
pub fn parse(text: &str) -> (Vec<Series>, Vec<ParseError>) {
    let mut series = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(s) => series.push(s),
            Err(reason) => errors.push(ParseError {
                line: i + 1,
                reason,
            }),
        }
    }
    (series, errors)
}

fn parse_line(line: &str) -> Result<Series, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or("invalid value")?;
    Ok(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` and returns what follows the `}`.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, &'static str> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = text.find('=').ok_or("label without '='")?;
        let name = text[..eq].trim();
        if name.is_empty() {
            return Err("empty label name");
        }
        let body = text[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        text = body[end + 1..].trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("expected ',' or '}' after a label");
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_counters_histograms_and_escapes() {
        let text = r#"# TYPE x_total counter
x_total{status="200",host="a.example"} 3

# TYPE d histogram
d_bucket{le="0.5"} 1
d_bucket{le="+Inf"} 2
d_sum 0.75
d_count 2
g{path="a \"q\" \\ b\nc"} -1.5e-3
plain 7 1700000000000
"#;
        let (series, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            series[0],
            Series {
                name: "x_total".into(),
                labels: labels(&[("status", "200"), ("host", "a.example")]),
                value: 3.0
            }
        );
        assert_eq!(series[2].labels, labels(&[("le", "+Inf")]));
        assert_eq!(series[3].name, "d_sum");
        assert_eq!(series[5].labels, labels(&[("path", "a \"q\" \\ b\nc")]));
        assert_eq!(series[5].value, -0.0015);
        assert_eq!(series[6].value, 7.0);
        assert_eq!(series.len(), 7);
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let (series, errors) = parse("ok 1\nbroken{a=\"x} 1\nnovalue\nalso_ok{a=\"b\",} 2\n");
        assert_eq!(series.len(), 2);
        assert_eq!(series[1].labels, labels(&[("a", "b")]));
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 2);
        assert_eq!(errors[1].line, 3);
    }
}
