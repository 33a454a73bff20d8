//! Sets of HTTP statuses as the config writes them: `"404"`, `"200-399"`,
//! `"5xx"`, or a comma list of those (`"200-299, 304"`). Used by drop rules
//! and sampling to pick classes of requests in `on-log`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    /// Inclusive ranges.
    ranges: Vec<(u16, u16)>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{item}` is not a status, a range (\"200-399\") or a class (\"5xx\"); statuses are 100-599"
)]
pub struct StatusSetError {
    item: String,
}

impl StatusSet {
    pub fn parse(text: &str) -> Result<StatusSet, StatusSetError> {
        let mut ranges = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let bad = || StatusSetError {
                item: item.to_owned(),
            };
            let range = if let Some(class) = item.strip_suffix("xx") {
                let digit = match class.as_bytes() {
                    [d @ b'1'..=b'5'] => u16::from(d - b'0'),
                    _ => return Err(bad()),
                };
                (digit * 100, digit * 100 + 99)
            } else if let Some((lo, hi)) = item.split_once('-') {
                let (lo, hi) = (
                    status(lo.trim()).ok_or_else(bad)?,
                    status(hi.trim()).ok_or_else(bad)?,
                );
                if lo > hi {
                    return Err(bad());
                }
                (lo, hi)
            } else {
                let one = status(item).ok_or_else(bad)?;
                (one, one)
            };
            ranges.push(range);
        }
        Ok(StatusSet {
            ranges,
            source: text.to_owned(),
        })
    }

    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn status(text: &str) -> Option<u16> {
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|s| (100..=599).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> StatusSet {
        StatusSet::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn ranges_classes_and_lists() {
        let ok = set("200-399");
        assert!(ok.contains(200) && ok.contains(304) && ok.contains(399));
        assert!(!ok.contains(199) && !ok.contains(400));
        let errors = set("5xx");
        assert!(errors.contains(500) && errors.contains(599) && !errors.contains(499));
        let list = set("200-299, 304,404");
        assert!(list.contains(204) && list.contains(304) && list.contains(404));
        assert!(!list.contains(301) && !list.contains(403));
        assert_eq!(list.to_string(), "200-299, 304,404");
    }

    #[test]
    fn malformed_sets_are_refused() {
        for text in [
            "", "20", "2000", "600", "099", "399-200", "6xx", "xx", "2x", "a-b", "200-", "200,,300",
        ] {
            assert!(StatusSet::parse(text).is_err(), "{text:?} accepted");
        }
        assert_eq!(
            StatusSet::parse("200-abc").expect_err("refused").to_string(),
            "`200-abc` is not a status, a range (\"200-399\") or a class (\"5xx\"); statuses are 100-599"
        );
    }
}
