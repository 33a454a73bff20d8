//! Reads `fly/tailnet-policy.hujson` (the tailnet side of the Fly deploy, not
//! part of the request path): HuJSON to JSON, and the few ACL semantics the
//! policy's `acls` and `tests` sections need to be checked against each other.

/// HuJSON (JSON with `//` and `/* */` comments and trailing commas) as JSON.
pub fn parse(text: &str) -> Result<serde_json::Value, String> {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            // A string, copied as is (escapes included).
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                i += 1;
                if chars[i - 1] == '"' {
                    break;
                }
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .ok_or("unterminated /* comment")?;
            i = end + 2;
        } else if c == ',' {
            // Drop a comma followed (past blanks and comments) by a closer.
            let mut j = i + 1;
            loop {
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'/') {
                    while j < chars.len() && chars[j] != '\n' {
                        j += 1;
                    }
                    continue;
                }
                break;
            }
            if !matches!(chars.get(j), Some('}') | Some(']')) {
                out.push(c);
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    serde_json::from_str(&out).map_err(|e| format!("{e}"))
}

/// One `acls` rule: who may reach what.
#[derive(Debug)]
pub struct Rule {
    pub src: Vec<String>,
    pub dst: Vec<String>,
}

/// The `acls` section's accept rules.
pub fn accept_rules(policy: &serde_json::Value) -> Vec<Rule> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    policy["acls"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter(|r| r["action"] == "accept")
                .map(|r| Rule {
                    src: strings(&r["src"]),
                    dst: strings(&r["dst"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Splits `tag:name:ports` into the host and the port part.
fn host_and_ports(dst: &str) -> Option<(&str, &str)> {
    let at = dst.rfind(':')?;
    Some((&dst[..at], &dst[at + 1..]))
}

/// Whether a rule's port spec (`*`, `443`, `80,443`, `8000-8999`) covers `port`.
fn ports_cover(spec: &str, port: u16) -> bool {
    spec.split(',').any(|part| {
        if part == "*" {
            return true;
        }
        match part.split_once('-') {
            Some((lo, hi)) => matches!(
                (lo.parse::<u16>(), hi.parse::<u16>()),
                (Ok(lo), Ok(hi)) if lo <= port && port <= hi
            ),
            None => part.parse::<u16>() == Ok(port),
        }
    })
}

/// Whether the rules let `src` open a connection to `dst` (`host:port`).
pub fn allows(rules: &[Rule], src: &str, dst: &str) -> bool {
    let Some((host, port)) = host_and_ports(dst) else {
        return false;
    };
    let Ok(port) = port.parse::<u16>() else {
        return false;
    };
    rules.iter().any(|r| {
        (r.src.iter().any(|s| s == src || s == "*"))
            && r.dst.iter().any(|d| {
                host_and_ports(d)
                    .map(|(h, spec)| (h == host || h == "*") && ports_cover(spec, port))
                    .unwrap_or(false)
            })
    })
}

#[test]
fn hujson_comments_and_trailing_commas_are_removed_but_strings_kept() {
    let v = parse(
        "// head\n{\"a\": \"x // not a comment\", /* c */ \"b\": [1, 2,],\n \"c\": {\"d\": \"e\", // t\n},\n}",
    )
    .expect("parse");
    assert_eq!(v["a"], "x // not a comment");
    assert_eq!(v["b"], serde_json::json!([1, 2]));
    assert_eq!(v["c"]["d"], "e");
}

#[test]
fn acl_port_specs_follow_tailscale_syntax() {
    let rules = vec![Rule {
        src: vec!["tag:a".into()],
        dst: vec![
            "tag:b:80,443".into(),
            "tag:c:8000-8999".into(),
            "tag:d:*".into(),
        ],
    }];
    assert!(allows(&rules, "tag:a", "tag:b:443"));
    assert!(!allows(&rules, "tag:a", "tag:b:22"));
    assert!(allows(&rules, "tag:a", "tag:c:8080"));
    assert!(!allows(&rules, "tag:a", "tag:c:9000"));
    assert!(allows(&rules, "tag:a", "tag:d:22"));
    assert!(!allows(&rules, "tag:b", "tag:b:443"));
}
