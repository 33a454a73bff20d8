//! Test support for plugin crates (feature `testing`, used from
//! `[dev-dependencies]`): a request head as the host hands one over, and the
//! per-route configs of one plugin found in a TOML document or in the
//! ```toml blocks of a Markdown page, each as JSON, the way the host passes
//! `[routes.plugins.config]` to `configure`. Lets a plugin test every config
//! its docs show.

use crate::{Header, RequestHead};

/// A request as the host would hand it over: `https://example.com`, a
/// curl user agent, two cookies and two `X-Forwarded-For` headers, client
/// `203.0.113.7`, route `site`.
pub fn request_head(method: &str, path: &str, query: Option<&str>) -> RequestHead {
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

#[cfg(feature = "testing")]
/// A file of the repository, by its path from the root; `manifest_dir` is
/// the calling crate's `env!("CARGO_MANIFEST_DIR")` (a crate under
/// `plugins/`). Panics with the path when it cannot be read.
pub fn repo_file(manifest_dir: &str, path: &str) -> String {
    let full = format!("{manifest_dir}/../../{path}");
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("read {full}: {err}"))
}

#[cfg(feature = "testing")]
/// The config tables (as JSON) of every `plugin = "<plugin>"` entry in a
/// TOML document, at any depth; an entry without `config` gives `{}`.
/// Panics when `document` is not valid TOML.
pub fn plugin_configs(document: &str, plugin: &str) -> Vec<String> {
    let value: toml::Value =
        toml::from_str(document).unwrap_or_else(|err| panic!("not valid TOML: {err}\n{document}"));
    let mut out = Vec::new();
    collect(&value, plugin, &mut out);
    out
}

#[cfg(feature = "testing")]
/// [`plugin_configs`] over every ```toml block of a Markdown page; every
/// block must be valid TOML.
pub fn documented_configs(markdown: &str, plugin: &str) -> Vec<String> {
    markdown
        .split("```toml\n")
        .skip(1)
        .flat_map(|block| plugin_configs(block.split("```").next().unwrap_or_default(), plugin))
        .collect()
}

#[cfg(feature = "testing")]
fn collect(value: &toml::Value, plugin: &str, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            if table.get("plugin").and_then(|p| p.as_str()) == Some(plugin) {
                let config = table
                    .get("config")
                    .cloned()
                    .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
                out.push(serde_json::to_string(&config).expect("TOML values are JSON values"));
            }
            table.values().for_each(|v| collect(v, plugin, out));
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect(v, plugin, out)),
        _ => {}
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[test]
    fn finds_each_entry_of_the_plugin_at_any_depth() {
        let doc = r#"
[[routes]]
name = "a"
[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
limits = [{ zone = "z", rate = "1r/s" }]
[[routes.plugins]]
plugin = "other"
[[routes]]
name = "b"
[[routes.plugins]]
plugin = "rate-limit"
"#;
        assert_eq!(
            plugin_configs(doc, "rate-limit"),
            vec![r#"{"limits":[{"rate":"1r/s","zone":"z"}]}"#, "{}"]
        );
        let page = format!("text\n```toml\n{doc}```\nmore\n```toml\n[x]\n```\n");
        assert_eq!(documented_configs(&page, "rate-limit").len(), 2);
    }

    #[test]
    #[should_panic(expected = "not valid TOML")]
    fn a_broken_block_fails_the_test() {
        documented_configs("```toml\nkey = = 1\n```\n", "any");
    }
}
