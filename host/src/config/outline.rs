//! Which route or upstream a TOML/serde error is inside. Used only when
//! `config.toml` fails to deserialize (an unknown key, a wrong type): the
//! error has a byte span but no key path, so this re-reads the file,
//! deserializing each route and upstream on its own until the same error
//! comes back — and then knows whose it is.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::Context;
use super::route::RawRoute;
use super::upstream::RawUpstream;
use super::values::check_identifier;

/// The route or upstream whose deserialization fails with exactly `failed`
/// (same message, same span), or `None` when the error is elsewhere.
pub fn context_of(text: &str, failed: &toml::de::Error) -> Option<Context> {
    let found = RefCell::new(None);
    let probe = toml::de::Deserializer::new(text).deserialize_map(FileProbe { found: &found });
    let again = probe.err()?;
    if again.message() != failed.message() || again.span() != failed.span() {
        return None;
    }
    match found.into_inner()? {
        Culprit::Upstream(name) => Some(Context::Upstream(name)),
        Culprit::Route(index) => Some(route_context(text, index)),
    }
}

/// `route "NAME"` when route `index` has a valid name, else `routes[INDEX]`.
fn route_context(text: &str, index: usize) -> Context {
    let doc: Option<toml::Table> = text.parse().ok();
    doc.as_ref()
        .and_then(|doc| {
            doc.get("routes")?
                .as_array()?
                .get(index)?
                .get("name")?
                .as_str()
        })
        .and_then(|name| check_identifier("route name", name).ok())
        .map_or(Context::RouteIndex(index), Context::Route)
}

enum Culprit {
    Route(usize),
    Upstream(String),
}

type Found<'a> = &'a RefCell<Option<Culprit>>;

/// The top-level table: probes `routes` and `upstreams`, skips the rest.
struct FileProbe<'a> {
    found: Found<'a>,
}

impl<'de> Visitor<'de> for FileProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a config table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "routes" => map.next_value_seed(RoutesProbe { found: self.found })?,
                "upstreams" => map.next_value_seed(UpstreamsProbe { found: self.found })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `routes`: deserializes each route, noting the index of the one that fails.
struct RoutesProbe<'a> {
    found: Found<'a>,
}

impl<'de> DeserializeSeed<'de> for RoutesProbe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RoutesProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of routes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            match seq.next_element::<RawRoute>() {
                Ok(Some(_)) => index += 1,
                Ok(None) => return Ok(()),
                Err(e) => {
                    *self.found.borrow_mut() = Some(Culprit::Route(index));
                    return Err(e);
                }
            }
        }
    }
}

/// `upstreams`: deserializes each upstream, noting the name of the one that fails.
struct UpstreamsProbe<'a> {
    found: Found<'a>,
}

impl<'de> DeserializeSeed<'de> for UpstreamsProbe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UpstreamsProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of upstreams")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            if let Err(e) = map.next_value::<RawUpstream>() {
                *self.found.borrow_mut() = Some(Culprit::Upstream(name));
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawFile;

    /// The context `load` would give the error of `text`.
    fn context(text: &str) -> Option<Context> {
        let err = toml::from_str::<RawFile>(text).expect_err("an invalid config");
        context_of(text, &err)
    }

    const ROUTE: &str = "[[routes]]\nhosts = [\"a\"]\npath = \"/\"\nupstream = \"u\"\n";

    #[test]
    fn an_error_inside_a_route_names_it() {
        let text = format!("{ROUTE}name = \"first\"\n\n{ROUTE}name = \"second\"\ntypo = 1\n");
        assert_eq!(context(&text), Some(Context::Route("second".into())));
    }

    #[test]
    fn a_route_without_a_usable_name_is_named_by_index() {
        let text = format!("{ROUTE}name = \"first\"\n\n{ROUTE}name = \"bad name\"\nx = 1\n");
        assert_eq!(context(&text), Some(Context::RouteIndex(1)));
        let text = format!("{ROUTE}name = \"first\"\n\n{ROUTE}");
        assert_eq!(context(&text), Some(Context::RouteIndex(1)));
    }

    #[test]
    fn errors_in_nested_and_dotted_tables_belong_to_their_route() {
        let text = format!(
            "{ROUTE}name = \"r\"\n[[routes.plugins]]\nplugin = \"p\"\n[routes.plugins.config.deep]\nx = 1\n[[routes.plugins]]\nplugin = \"p\"\non_failure = \"maybe\"\n"
        );
        assert_eq!(context(&text), Some(Context::Route("r".into())));
    }

    #[test]
    fn an_error_inside_an_upstream_names_it() {
        let text = "[upstreams]\nok.url = \"http://a\"\nbad.url = 5\n";
        assert_eq!(context(text), Some(Context::Upstream("bad".into())));
    }

    #[test]
    fn errors_elsewhere_have_no_context() {
        // A route is also broken, but the server error comes first.
        let text = format!("[server]\nbogus = 1\n\n{ROUTE}name = \"r\"\ntypo = 1\n");
        assert_eq!(context(&text), None);
        assert_eq!(context("[sever]\nx = 1\n"), None);
    }
}
