//! Building the [`HeaderFilter`]s a plugin reports from `configure`: which
//! header fields the host copies into the hooks' arguments.

use crate::HeaderFilter;

impl HeaderFilter {
    /// Only the fields with these names: lower-cased, sorted, repeats
    /// removed (so filters built from a config compare equal).
    pub fn only<I, S>(names: I) -> HeaderFilter
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names: Vec<String> = names
            .into_iter()
            .map(|name| name.as_ref().to_ascii_lowercase())
            .collect();
        names.sort_unstable();
        names.dedup();
        HeaderFilter::Only(names)
    }

    /// No header fields at all.
    pub fn none() -> HeaderFilter {
        HeaderFilter::Only(Vec::new())
    }

    /// Whether a field named `name` (any case) is let through.
    pub fn lets_through(&self, name: &str) -> bool {
        match self {
            HeaderFilter::All => true,
            HeaderFilter::Only(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }

    /// The filter that lets through what either lets through.
    pub fn union(self, other: HeaderFilter) -> HeaderFilter {
        match (self, other) {
            (HeaderFilter::Only(mut a), HeaderFilter::Only(b)) => {
                a.extend(b);
                HeaderFilter::only(a)
            }
            _ => HeaderFilter::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_normalises_names() {
        assert_eq!(
            HeaderFilter::only(["X-B", "x-a", "x-b"]),
            HeaderFilter::Only(vec!["x-a".into(), "x-b".into()])
        );
        assert!(HeaderFilter::only(["Origin"]).lets_through("origin"));
        assert!(!HeaderFilter::none().lets_through("origin"));
        assert!(HeaderFilter::All.lets_through("anything"));
    }

    #[test]
    fn union_keeps_every_name_and_all_wins() {
        assert_eq!(
            HeaderFilter::only(["a"]).union(HeaderFilter::only(["b", "a"])),
            HeaderFilter::only(["a", "b"])
        );
        assert_eq!(
            HeaderFilter::none().union(HeaderFilter::All),
            HeaderFilter::All
        );
    }
}
