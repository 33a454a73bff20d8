//! Path normalisation, the first step of the proxy's pipeline (before
//! routing, `tailgate::request_path`): the one path that routing, every
//! plugin's `path`, deny and rate-limit regexes, cache keys and the upstream
//! request all see. Here, in the plugin runtime, because a plugin's path
//! rewrite is normalised with it too ([`crate::wire_edits`]).
//!
//! As nginx does before matching locations (and Envoy with `normalize_path`
//! and `merge_slashes`):
//! - percent-encoded unreserved characters (RFC 3986 §2.3: letters, digits,
//!   `-._~`) are decoded (`/%73wagger` is `/swagger`); other escapes stay,
//!   with upper-case hex (`%2f` -> `%2F`);
//! - runs of slashes are merged (`//user//login` is `/user/login`);
//! - dot segments are removed (RFC 3986 §5.2.4: `/a/./b/../c` is `/a/c`),
//!   also when they were percent-encoded (`%2e%2e`);
//! - a path that climbs above `/`, a malformed escape (`%zz`, a lone `%`)
//!   or an escaped NUL (`%00`) is refused: the client gets 400.
//!
//! `%2F` (an escaped slash) is kept as it is: it is not a separator for
//! routing or dot segments, and it is sent upstream escaped, as received
//! (Envoy's `KEEP_UNCHANGED`; nginx would decode it, which lets
//! `/a%2F..%2Fb` mean `/b` to nginx and something else to the upstream).

use std::borrow::Cow;

/// Why a request path was refused (the client gets 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with \"/\"")]
    NotAbsolute,
    #[error("malformed percent-escape in the path")]
    BadEscape,
    #[error("escaped NUL in the path")]
    Nul,
    #[error("the path climbs above \"/\"")]
    AboveRoot,
}

/// The normalised form of `path` (no query), borrowed when it is already
/// normal: the common case costs one scan and no allocation.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        // `*` (OPTIONS *) and authority-form never reach here with a path
        // to route on; anything else is not a path.
        return if path == "*" {
            Ok(Cow::Borrowed(path))
        } else {
            Err(PathError::NotAbsolute)
        };
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)?))
}

/// Normalise the path of `uri` in place (the query is kept as received).
pub fn normalize_uri(uri: &mut http::Uri) -> Result<(), PathError> {
    let path = match normalize(uri.path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = std::mem::take(uri).into_parts();
    // Every byte of `target` came from a valid path and query, so this
    // cannot fail; refuse the request rather than panic if it did.
    parts.path_and_query = Some(target.parse().map_err(|_| PathError::BadEscape)?);
    *uri = http::Uri::from_parts(parts).map_err(|_| PathError::BadEscape)?;
    Ok(())
}

/// True when `path` has no escape, no `//`, and no `.`/`..` segment.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.contains(&b'%') {
        return false;
    }
    let mut prev_slash = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'/' {
            if prev_slash {
                return false;
            }
            prev_slash = true;
        } else {
            if prev_slash && b == b'.' && is_dot_segment_at(bytes, i) {
                return false;
            }
            prev_slash = false;
        }
    }
    true
}

/// Is the segment starting at `i` (just after a `/`) `.` or `..`?
fn is_dot_segment_at(bytes: &[u8], i: usize) -> bool {
    let end = bytes[i..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(bytes.len(), |n| i + n);
    matches!(&bytes[i..end], b"." | b"..")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode the escapes of unreserved characters; keep every other escape,
/// with its hex digits in upper case.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Copy the run up to the next escape (valid UTF-8 boundaries:
            // `%` is ASCII).
            let end = bytes[i..]
                .iter()
                .position(|&c| c == b'%')
                .map_or(bytes.len(), |n| i + n);
            out.push_str(&path[i..end]);
            i = end;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let value = hi << 4 | lo;
        if value == 0 {
            return Err(PathError::Nul);
        }
        if is_unreserved(value) {
            out.push(char::from(value));
        } else {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
        }
        i += 3;
    }
    Ok(out)
}

/// Merge slashes and resolve `.` and `..` segments. A trailing `/` (or a
/// final `.`/`..` segment, which names a folder) is kept.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize(path).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for path in ["/", "/index.html", "/a/b/", "/a.b/..c/.d", "/user/login"] {
            assert!(matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path));
        }
    }

    #[test]
    fn the_bypasses_of_a_prefix_rule_all_become_the_same_path() {
        for path in [
            "//swagger",
            "/%73wagger",
            "/%73%77%61%67%67%65%72",
            "/a/../swagger",
            "/./swagger",
            "/a/%2e%2e/swagger",
            "/a/%2E./swagger",
            "///swagger",
        ] {
            assert_eq!(norm(path).as_deref(), Ok("/swagger"), "{path}");
        }
        assert_eq!(norm("//user//login").as_deref(), Ok("/user/login"));
        assert_eq!(norm("/user/%6cogin").as_deref(), Ok("/user/login"));
    }

    #[test]
    fn dot_segments_follow_rfc_3986() {
        assert_eq!(norm("/a/./b/../c").as_deref(), Ok("/a/c"));
        assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(norm("/a/..").as_deref(), Ok("/"));
        assert_eq!(norm("/..a/b").as_deref(), Ok("/..a/b"));
    }

    #[test]
    fn other_escapes_stay_escaped_in_upper_case() {
        assert_eq!(norm("/a%2fb").as_deref(), Ok("/a%2Fb"));
        assert_eq!(norm("/a%2F..%2Fb").as_deref(), Ok("/a%2F..%2Fb"));
        assert_eq!(norm("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
    }

    #[test]
    fn a_uri_keeps_its_query_and_authority() {
        let mut uri: http::Uri = "http://example.com//a/../%62?x=/../y".parse().unwrap();
        normalize_uri(&mut uri).unwrap();
        assert_eq!(uri.to_string(), "http://example.com/b?x=/../y");
        let mut uri: http::Uri = "/a//b?q".parse().unwrap();
        normalize_uri(&mut uri).unwrap();
        assert_eq!(uri.to_string(), "/a/b?q");
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%2"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%00b"), Err(PathError::Nul));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm("*").as_deref(), Ok("*"));
    }
}
