//! `tailgate plugin ...`: the plugin author's commands, outside the request
//! path. `plugin test PLUGIN.wasm CASES.toml` runs a cases file through the
//! plugin harness (`tailgate-harness`); `plugin new NAME` starts a plugin
//! crate from the template in `plugins/template`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin's declarative cases: one ok/FAIL line per case and a
    /// summary. Exit 0 when all pass, 1 when one fails, 2 when the cases
    /// cannot run (unreadable file, plugin that does not load).
    Test {
        /// The built plugin component (.wasm).
        #[arg(value_name = "PLUGIN.wasm")]
        plugin: PathBuf,
        /// The cases file.
        #[arg(value_name = "CASES.toml")]
        cases: PathBuf,
    },
    /// Start a new plugin crate in the plugin workspace from the template
    /// (a hook, a harness test and a cases file, ready to build and pass).
    New {
        /// Crate name: lower-case letters, digits and dashes.
        name: String,
        /// The plugin workspace to add it to.
        #[arg(long, value_name = "DIR", default_value = "plugins")]
        plugins_dir: PathBuf,
    },
}

/// Runs a plugin command and picks its exit code.
pub fn main(command: PluginCommand) -> ExitCode {
    match command {
        PluginCommand::Test { plugin, cases } => test(&plugin, &cases),
        PluginCommand::New { name, plugins_dir } => match new(&name, &plugins_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tailgate plugin new: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn test(plugin: &Path, cases: &Path) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match tailgate_harness::cases::run_file(plugin, cases, &mut stdout) {
        Ok(summary) if summary.all_passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tailgate plugin test: {e}");
            ExitCode::from(2)
        }
    }
}

/// The template's files: path in the crate, text.
const TEMPLATE: [(&str, &str); 4] = [
    (
        "Cargo.toml",
        include_str!("../../plugins/template/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../plugins/template/src/lib.rs"),
    ),
    (
        "tests/harness.rs",
        include_str!("../../plugins/template/tests/harness.rs"),
    ),
    (
        "cases.toml",
        include_str!("../../plugins/template/cases.toml"),
    ),
];

/// Checks `name` can be a plugin crate (and wasm file) name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!("`{name}` is not a plugin name: use lower-case letters, digits and dashes, starting with a letter");
    }
    if ["sdk", "sdk-macros", "template", "target"].contains(&name) {
        bail!("`{name}` is taken by the plugin workspace itself");
    }
    // The plugin's type is named after it: it must not clash with a name
    // the template's code uses (`config` -> `Config`).
    let camel = camel_case(name);
    let template_lib = TEMPLATE[1].1;
    if template_lib
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| word == camel)
    {
        bail!("`{name}` would name the plugin's type `{camel}`, which the template's code already uses: pick another name");
    }
    Ok(())
}

/// `ban-jail` as a type name: `BanJail`.
fn camel_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The template's files with its names replaced by `name`: the crate
/// (`plugin-template`), the wasm file and crate path (`plugin_template`),
/// the plugin's type (`PluginTemplate`) and the comments naming it.
pub fn render_template(name: &str) -> Vec<(&'static str, String)> {
    let snake = name.replace('-', "_");
    let camel = camel_case(name);
    TEMPLATE
        .iter()
        .map(|(path, text)| {
            let text = text
                .replace(
                    "Tailgate plugin template: copy it (or run `tailgate plugin new NAME`) to start a plugin.",
                    &format!("Tailgate plugin {name}."),
                )
                .replace("plugin-template", name)
                .replace("plugin_template", &snake)
                .replace("PluginTemplate", &camel);
            (*path, text)
        })
        .collect()
}

/// `members = [...]` with `name` added, or `None` if there is no such array.
fn with_member(manifest: &str, name: &str) -> Option<String> {
    let start = manifest.find("members")?;
    let open = start + manifest[start..].find('[')?;
    let close = open + manifest[open..].find(']')?;
    let inside = manifest[open + 1..close].trim_end();
    let inside = inside.strip_suffix(',').unwrap_or(inside);
    let separator = if inside.trim().is_empty() { "" } else { ", " };
    Some(format!(
        "{}[{inside}{separator}\"{name}\"]{}",
        &manifest[..open],
        &manifest[close + 1..]
    ))
}

fn new(name: &str, plugins_dir: &Path) -> anyhow::Result<()> {
    check_name(name)?;
    let manifest_path = plugins_dir.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {} (run this from the repository root, or give --plugins-dir)",
            manifest_path.display()
        )
    })?;
    if !plugins_dir.join("sdk").is_dir() {
        bail!(
            "{} has no sdk/: not Tailgate's plugin workspace",
            plugins_dir.display()
        );
    }
    let dir = plugins_dir.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let updated = with_member(&manifest, name)
        .with_context(|| format!("{} has no `members = [...]`", manifest_path.display()))?;
    for (path, text) in render_template(name) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(&manifest_path, updated)
        .with_context(|| format!("adding {name} to {}", manifest_path.display()))?;
    let snake = name.replace('-', "_");
    println!(
        "created {dir} (added to {manifest})\n\nnext:\n  cd {plugins}\n  cargo build --release -p {name}\n  cargo test --target $(rustc -vV | sed -n 's/^host: //p') -p {name}\n  tailgate plugin test target/wasm32-wasip2/release/{snake}.wasm {name}/cases.toml",
        dir = dir.display(),
        manifest = manifest_path.display(),
        plugins = plugins_dir.display(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("cors").is_ok());
        assert!(check_name("basic-auth2").is_ok());
        for bad in [
            "", "Cors", "2fa", "a_b", "a-", "sdk", "template", "a b", "config", "settings",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_template_is_renamed_throughout() {
        let files = render_template("basic-auth");
        let cargo = &files[0].1;
        assert!(cargo.contains("name = \"basic-auth\""), "{cargo}");
        assert!(
            cargo.contains("description = \"Tailgate plugin basic-auth.\""),
            "{cargo}"
        );
        for (path, text) in &files {
            assert!(!text.contains("plugin-template"), "{path}");
            assert!(!text.contains("plugin_template"), "{path}");
            assert!(!text.contains("PluginTemplate"), "{path}");
        }
        let lib = &files[1].1;
        assert!(lib.contains("struct BasicAuth {"), "{lib}");
        assert!(lib.contains("impl Plugin for BasicAuth {"), "{lib}");
        assert!(lib.contains("export_plugin!(BasicAuth);"), "{lib}");
        assert!(
            lib.starts_with("//! `basic-auth`: a Tailgate plugin."),
            "{lib}"
        );
        assert!(files[2].1.starts_with("//! `basic-auth`'s harness tests"));
    }

    #[test]
    fn names_become_type_names() {
        assert_eq!(camel_case("ban-jail"), "BanJail");
        assert_eq!(camel_case("cors"), "Cors");
        assert_eq!(camel_case("basic-auth2"), "BasicAuth2");
        assert_eq!(camel_case("a-b-c"), "ABC");
    }

    #[test]
    fn members_gain_the_new_crate() {
        assert_eq!(
            with_member("[workspace]\nmembers = [\"sdk\", \"a\"]\n", "b").as_deref(),
            Some("[workspace]\nmembers = [\"sdk\", \"a\", \"b\"]\n")
        );
        assert_eq!(
            with_member("members = [\n  \"sdk\",\n]\n", "b").as_deref(),
            Some("members = [\n  \"sdk\", \"b\"]\n")
        );
        assert_eq!(with_member("[package]\n", "b"), None);
    }

    #[test]
    fn new_creates_the_crate_and_refuses_to_overwrite() {
        let root = tempfile_dir();
        let plugins = root.join("plugins");
        std::fs::create_dir_all(plugins.join("sdk")).expect("mkdir");
        std::fs::write(
            plugins.join("Cargo.toml"),
            "[workspace]\nmembers = [\"sdk\"]\n",
        )
        .expect("write");
        new("cors", &plugins).expect("created");
        let manifest = std::fs::read_to_string(plugins.join("Cargo.toml")).expect("read");
        assert!(
            manifest.contains("members = [\"sdk\", \"cors\"]"),
            "{manifest}"
        );
        for path in ["Cargo.toml", "src/lib.rs", "tests/harness.rs", "cases.toml"] {
            assert!(plugins.join("cors").join(path).is_file(), "{path}");
        }
        let err = new("cors", &plugins).expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err}");
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tailgate-plugin-new-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
