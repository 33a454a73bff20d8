//! A plugin `config` table (TOML, as written under `[routes.plugins.config]`
//! laid over `[plugins.NAME] config`, or in a harness cases file) as the
//! JSON text the plugin's `configure` receives. Used at config load, before [`crate::Runtime::configure`]; the
//! plugin validates the content itself.

use serde_json::{Map, Number, Value};

/// A route's plugin config laid over the plugin-level one (`[plugins.NAME]
/// config`): each top-level key the route gives replaces the plugin's
/// whole value for it, tables included (nginx: a directive given in a
/// `location` replaces the `http` level's, it is not merged into it).
pub fn layered_config(plugin: Option<&toml::Table>, route: Option<&toml::Table>) -> toml::Table {
    let mut config = plugin.cloned().unwrap_or_default();
    if let Some(route) = route {
        config.extend(
            route
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
    }
    config
}

/// TOML table -> JSON object text. Datetimes become RFC 3339 strings; a
/// non-finite float (`nan`, `inf`) has no JSON form and is an error naming
/// its key path.
pub fn table_to_json(table: &toml::Table) -> Result<String, String> {
    let value = table_value(table, "")?;
    serde_json::to_string(&value).map_err(|e| e.to_string())
}

fn table_value(table: &toml::Table, path: &str) -> Result<Value, String> {
    let mut object = Map::new();
    for (key, value) in table {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        object.insert(key.clone(), json_value(value, &child)?);
    }
    Ok(Value::Object(object))
}

fn json_value(value: &toml::Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("`{path}` is {f}, which JSON cannot represent"))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| json_value(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => table_value(t, path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &str) -> Result<serde_json::Value, String> {
        let table: toml::Table = text.parse().expect("valid TOML");
        let json = table_to_json(&table)?;
        Ok(serde_json::from_str(&json).expect("valid JSON"))
    }

    #[test]
    fn a_routes_keys_replace_the_plugins_whole_values() {
        let plugin: toml::Table = r#"
            zones.general = { rate = "10r/s" }
            status = 503
            response.set = { "X-Frame-Options" = "DENY" }
            "#
        .parse()
        .expect("valid TOML");
        let route: toml::Table = r#"
            limits = [{ zone = "general", burst = 20 }]
            response.remove = ["Server"]
            "#
        .parse()
        .expect("valid TOML");
        let config = layered_config(Some(&plugin), Some(&route));
        assert_eq!(config["zones"]["general"]["rate"].as_str(), Some("10r/s"));
        assert_eq!(config["status"].as_integer(), Some(503));
        assert_eq!(config["limits"][0]["burst"].as_integer(), Some(20));
        // `response` is the route's alone: not merged key by key.
        assert_eq!(config["response"].as_table().map(|t| t.len()), Some(1));
        assert!(config["response"].get("remove").is_some());
        assert_eq!(layered_config(None, Some(&route)), route);
        assert_eq!(layered_config(Some(&plugin), None), plugin);
        assert!(layered_config(None, None).is_empty());
    }

    #[test]
    fn tables_arrays_and_scalars_keep_their_shape() {
        let v = convert(
            r#"
            response.set = { "X-Frame-Options" = "DENY" }
            response.always = true
            deny = [{ path = "^/\\.git", status = 403 }]
            ratio = 0.5
            at = 1979-05-27T07:32:00Z
            "#,
        )
        .unwrap();
        assert_eq!(v["response"]["set"]["X-Frame-Options"], "DENY");
        assert_eq!(v["response"]["always"], true);
        assert_eq!(v["deny"][0]["path"], "^/\\.git");
        assert_eq!(v["deny"][0]["status"], 403);
        assert_eq!(v["ratio"], 0.5);
        assert_eq!(v["at"], "1979-05-27T07:32:00Z");
    }

    #[test]
    fn non_finite_floats_are_refused_with_their_key_path() {
        let err = convert("a.b = [1.0, nan]").unwrap_err();
        assert_eq!(err, "`a.b[1]` is NaN, which JSON cannot represent");
    }
}
