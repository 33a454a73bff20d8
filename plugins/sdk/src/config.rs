//! A route's plugin config as `configure` receives it (the JSON form of the
//! TOML table under `[routes.plugins.config]`), and its parsing into the
//! plugin's own settings type with errors that name the offending field;
//! durations and sizes written as `config.toml` writes them ([`Duration`],
//! [`Size`]).

use std::fmt;

mod units;

pub use units::{parse_duration, parse_size, Duration, Size};

use serde::de::DeserializeOwned;

/// The config handed to [`Plugin::configure`](crate::Plugin::configure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    json: String,
}

/// A config that does not fit the plugin's settings type: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `deny[0].status`; empty for the whole
    /// config.
    pub path: String,
    pub message: String,
}

impl Config {
    pub fn new(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The raw JSON text. An absent config table arrives as `{}`.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Parse into the plugin's settings type, typically a
    /// `#[derive(Deserialize)] #[serde(deny_unknown_fields)]` struct. The
    /// error names the field: `response.always: invalid type: string "yes",
    /// expected a boolean`. Blank text counts as `{}`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let text = if self.json.trim().is_empty() {
            "{}"
        } else {
            self.json.as_str()
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            ConfigError {
                path: if path == "." { String::new() } else { path },
                message: message_without_position(err.inner()),
            }
        })?;
        de.end().map_err(|err| ConfigError {
            path: String::new(),
            message: message_without_position(&err),
        })?;
        Ok(value)
    }
}

/// serde_json appends "at line L column C" of the JSON text; the operator
/// wrote TOML, so that position means nothing to them. The field path does.
fn message_without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

impl ConfigError {
    /// An error at `path` (dotted, e.g. `deny[0].path`), for checks a
    /// plugin makes after parsing.
    pub fn new(path: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// So `config.parse()?` works in a `configure` returning `Result<_, String>`.
impl From<ConfigError> for String {
    fn from(err: ConfigError) -> String {
        err.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[serde(default)]
        response: Section,
        #[serde(default)]
        deny: Vec<Rule>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        always: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        status: u16,
    }

    fn parse(json: &str) -> Result<Settings, String> {
        Config::new(json).parse::<Settings>().map_err(String::from)
    }

    #[test]
    fn parses_a_valid_config() {
        let settings = parse(r#"{"response":{"always":true},"deny":[{"status":403}]}"#);
        assert_eq!(
            settings,
            Ok(Settings {
                response: Section {
                    set: BTreeMap::new(),
                    always: true
                },
                deny: vec![Rule { status: 403 }],
            })
        );
    }

    #[test]
    fn blank_config_is_an_empty_table() {
        assert!(parse("").is_ok());
        assert!(parse("  \n").is_ok());
    }

    #[test]
    fn unknown_field_names_its_path() {
        assert_eq!(
            parse(r#"{"response":{"alway":true}}"#),
            Err("response.alway: unknown field `alway`, expected `set` or `always`".to_owned())
        );
    }

    #[test]
    fn wrong_type_names_its_path_without_json_position() {
        assert_eq!(
            parse(r#"{"response":{"always":"yes"}}"#),
            Err("response.always: invalid type: string \"yes\", expected a boolean".to_owned())
        );
        assert_eq!(
            parse(r#"{"deny":[{"status":403},{"status":"x"}]}"#),
            Err("deny[1].status: invalid type: string \"x\", expected u16".to_owned())
        );
    }

    #[test]
    fn missing_field_names_the_table() {
        assert_eq!(
            parse(r#"{"deny":[{}]}"#),
            Err("deny[0]: missing field `status`".to_owned())
        );
    }

    #[test]
    fn plugin_checks_format_like_parse_errors() {
        assert_eq!(
            String::from(ConfigError::new(
                "deny[0].status",
                "99 is not a final status"
            )),
            "deny[0].status: 99 is not a final status"
        );
        assert_eq!(ConfigError::new("", "empty").to_string(), "empty");
    }

    #[test]
    fn top_level_errors_have_no_path() {
        assert_eq!(
            parse(r#""x""#),
            Err("invalid type: string \"x\", expected struct Settings".to_owned())
        );
        assert!(parse(r#"{} x"#).is_err());
    }
}
