//! `{field}` templates: the line of `format = "template"` and the values of
//! `labels`. Parsed and checked at configure time (fields resolved through
//! the catalog); rendered per line in `on-log`.

use crate::fields::{Field, FieldError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Box<str>),
    Field(Field),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{` at byte {at} has no closing `}}` (write `{{{{` for a literal `{{`)")]
    UnclosedBrace { at: usize },
    #[error("`}}` at byte {at} has no opening `{{` (write `}}}}` for a literal `}}`)")]
    StrayClosingBrace { at: usize },
    #[error(transparent)]
    Field(#[from] FieldError),
}

impl Template {
    /// Parse `source`; `{{` and `}}` stand for literal braces.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        let mut at = 0;
        while let Some(c) = rest.chars().next() {
            let step = if rest.starts_with("{{") {
                literal.push('{');
                2
            } else if rest.starts_with("}}") {
                literal.push('}');
                2
            } else if c == '{' {
                let len = rest[1..]
                    .find('}')
                    .ok_or(TemplateError::UnclosedBrace { at })?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal).into_boxed_str()));
                }
                parts.push(Part::Field(Field::parse(&rest[1..1 + len])?));
                len + 2
            } else if c == '}' {
                return Err(TemplateError::StrayClosingBrace { at });
            } else {
                literal.push(c);
                c.len_utf8()
            };
            rest = &rest[step..];
            at += step;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into_boxed_str()));
        }
        Ok(Template { parts })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The fields the template uses.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(field) => Some(field),
            Part::Literal(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_fields_alternate() {
        let t =
            Template::parse("{remote_addr} - [{time_local}] \"{request}\" {{x}}").expect("parses");
        assert_eq!(
            t.parts(),
            &[
                Part::Field(Field::RemoteAddr),
                Part::Literal(" - [".into()),
                Part::Field(Field::TimeLocal),
                Part::Literal("] \"".into()),
                Part::Field(Field::RequestLine),
                Part::Literal("\" {x}".into()),
            ]
        );
        assert_eq!(t.fields().count(), 3);
        assert_eq!(Template::parse("").expect("parses").parts(), &[]);
        assert_eq!(
            Template::parse("é{status}").expect("parses").parts(),
            &[Part::Literal("é".into()), Part::Field(Field::Status)]
        );
    }

    #[test]
    fn malformed_templates_say_where() {
        assert_eq!(
            Template::parse("ab{status"),
            Err(TemplateError::UnclosedBrace { at: 2 })
        );
        assert_eq!(
            Template::parse("a}b"),
            Err(TemplateError::StrayClosingBrace { at: 1 })
        );
        assert_eq!(
            Template::parse("{stauts}"),
            Err(TemplateError::Field(FieldError::Unknown("stauts".into())))
        );
    }
}
