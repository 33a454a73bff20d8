//! A record field the plugin may not have asked for: the host copies into
//! a guest only the text fields a plugin names in
//! [`Plugin::request_fields`](crate::Plugin::request_fields) /
//! [`Plugin::log_fields`](crate::Plugin::log_fields), so a hook that reads
//! one it did not name would see nothing. Here such a read is loud: it
//! panics (the call traps, and the harness and the proxy's log show why),
//! naming the field and the flag to add. A field that was asked for reads
//! as its value, empty when the request had none.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// A field's value, or the name of the flag the plugin left out.
#[derive(Clone, PartialEq)]
pub struct Field<T> {
    value: T,
    /// `Some("RequestFieldSet::PATH")` when the plugin did not ask for it.
    not_asked: Option<&'static str>,
}

impl<T> Field<T> {
    /// A field that was asked for.
    pub fn new(value: T) -> Self {
        Field {
            value,
            not_asked: None,
        }
    }

    /// A field the plugin did not ask for (`flag` names the set and flag,
    /// e.g. `"RequestFieldSet::PATH"`).
    pub fn not_asked(flag: &'static str) -> Self
    where
        T: Default,
    {
        Field {
            value: T::default(),
            not_asked: Some(flag),
        }
    }

    /// The value, or `None` when the plugin did not ask for the field
    /// (never panics).
    pub fn get(&self) -> Option<&T> {
        match self.not_asked {
            None => Some(&self.value),
            Some(_) => None,
        }
    }

    /// Replaces the value, asked for or not (the export glue refilling one
    /// record in place: log_export.rs).
    pub(crate) fn set(&mut self, value: T) {
        self.value = value;
    }

    /// Whether the plugin asked for this field.
    pub fn is_asked(&self) -> bool {
        self.not_asked.is_none()
    }

    #[track_caller]
    fn value(&self) -> &T {
        if let Some(flag) = self.not_asked {
            not_asked(flag);
        }
        &self.value
    }
}

#[cold]
#[track_caller]
fn not_asked(flag: &'static str) -> ! {
    let field = flag
        .rsplit("::")
        .next()
        .unwrap_or(flag)
        .to_ascii_lowercase();
    let message = format!(
        "read the field `{field}`, which this plugin did not ask for: the host sent it \
         empty. Add {flag} to the plugin's {} (or stop reading it).",
        if flag.starts_with("Log") {
            "log_fields()"
        } else {
            "request_fields()"
        }
    );
    // In a component the panic traps the call; say why through the host's
    // log too. Natively (unit tests) there is no host to call.
    #[cfg(target_family = "wasm")]
    crate::host::log(crate::LogLevel::Error, &message);
    panic!("{message}");
}

impl<T> Deref for Field<T> {
    type Target = T;

    #[track_caller]
    fn deref(&self) -> &T {
        self.value()
    }
}

impl<T> DerefMut for Field<T> {
    #[track_caller]
    fn deref_mut(&mut self) -> &mut T {
        if let Some(flag) = self.not_asked {
            not_asked(flag);
        }
        &mut self.value
    }
}

impl<T: Default> Default for Field<T> {
    /// An asked-for field with the empty value.
    fn default() -> Self {
        Field::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Field<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.not_asked {
            None => self.value.fmt(f),
            Some(flag) => write!(f, "<not asked: {flag}>"),
        }
    }
}

impl<T: fmt::Display> fmt::Display for Field<T> {
    #[track_caller]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value().fmt(f)
    }
}

impl From<&str> for Field<String> {
    fn from(value: &str) -> Self {
        Field::new(value.to_owned())
    }
}

impl From<String> for Field<String> {
    fn from(value: String) -> Self {
        Field::new(value)
    }
}

impl From<Option<String>> for Field<Option<String>> {
    fn from(value: Option<String>) -> Self {
        Field::new(value)
    }
}

impl<T> From<Vec<T>> for Field<Vec<T>> {
    fn from(value: Vec<T>) -> Self {
        Field::new(value)
    }
}

impl PartialEq<str> for Field<String> {
    #[track_caller]
    fn eq(&self, other: &str) -> bool {
        self.value() == other
    }
}

impl PartialEq<&str> for Field<String> {
    #[track_caller]
    fn eq(&self, other: &&str) -> bool {
        self.value() == other
    }
}

impl AsRef<str> for Field<String> {
    #[track_caller]
    fn as_ref(&self) -> &str {
        self.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asked_field_reads_as_its_value() {
        let path: Field<String> = "/a".into();
        assert_eq!(path, "/a");
        assert!(path.starts_with('/'));
        assert_eq!(path.get().map(String::as_str), Some("/a"));
        assert_eq!(format!("{path}"), "/a");
    }

    #[test]
    fn reading_a_field_not_asked_for_panics_naming_it() {
        let client: Field<String> = Field::not_asked("RequestFieldSet::ROUTE");
        assert_eq!(client.get(), None);
        assert!(!client.is_asked());
        let panic = std::panic::catch_unwind(|| client.len()).expect_err("must panic");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("`route`"), "{message}");
        assert!(message.contains("RequestFieldSet::ROUTE"), "{message}");
        assert!(message.contains("request_fields()"), "{message}");
        assert_eq!(format!("{client:?}"), "<not asked: RequestFieldSet::ROUTE>");
    }
}
