//! From a TOML error to a message a person can act on: the byte span of a `toml` parse
//! or type error is mapped (with `toml_edit`'s spans) to the dotted field path
//! (`replica[1].addr`) and the line and column it is on.

use crate::error::Error;
use std::ops::Range;

/// Turns a toml error into an [`Error::Config`] naming the field at the error's span and
/// quoting the line it is on.
pub(super) fn toml_error_to_config(text: &str, origin: &str, error: &toml::de::Error) -> Error {
    let message = error
        .message()
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let span = error.span();
    let mut field = span
        .clone()
        .and_then(|span| field_at(text, span))
        .unwrap_or_default();
    // Unknown and missing fields: the message names the key; the span may only reach
    // the enclosing table.
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(name) = rest.split('`').next() {
                if prefix.starts_with("missing") {
                    field = missing_field_path(text, &field, name);
                } else if !field.ends_with(name) {
                    field = join_path(&field, name);
                }
            }
        }
    }
    let location = match span {
        Some(span) => {
            let (line_no, column, line) = line_of(text, span.start);
            format!(
                " at {origin} line {line_no}, column {column}: `{}`",
                line.trim()
            )
        }
        None => format!(" in {origin}"),
    };
    if field.is_empty() {
        // A syntax error, not tied to one field: name the file.
        Error::config(origin, format!("{message}{location}"))
    } else {
        Error::config(field, format!("{message}{location}"))
    }
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// 1-based line number, 1-based column and the text of the line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line_no = text[..offset].matches('\n').count() + 1;
    let column = text[start..offset].chars().count() + 1;
    (line_no, column, &text[start..end])
}

fn contains(outer: &Option<Range<usize>>, inner: &Range<usize>) -> bool {
    matches!(outer, Some(o) if o.start <= inner.start && inner.end <= o.end)
}

/// The dotted path (`replica[1].addr`) of the deepest key whose key or value span holds
/// `span`, or `None` if the document does not parse or no key matches.
fn field_at(text: &str, span: Range<usize>) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut path = String::new();
    walk_table(doc.as_table(), &span, &mut path);
    (!path.is_empty()).then_some(path)
}

fn walk_table(table: &toml_edit::Table, span: &Range<usize>, path: &mut String) {
    for (key, item) in table.iter() {
        let key_span = table.get_key_value(key).and_then(|(k, _)| k.span());
        if walk_item(key, key_span, item, span, path) {
            return;
        }
    }
}

/// Appends `key` (and deeper keys) to `path` if `span` lies in this key or its value.
fn walk_item(
    key: &str,
    key_span: Option<Range<usize>>,
    item: &toml_edit::Item,
    span: &Range<usize>,
    path: &mut String,
) -> bool {
    use toml_edit::Item;
    match item {
        Item::ArrayOfTables(tables) => {
            for (index, table) in tables.iter().enumerate() {
                let before = path.len();
                *path = format!("{}[{index}]", join_path(path, key));
                let len = path.len();
                walk_table(table, span, path);
                if path.len() > len || contains(&table.span(), span) {
                    return true;
                }
                path.truncate(before);
            }
            false
        }
        Item::Table(table) => {
            let before = path.len();
            *path = join_path(path, key);
            let len = path.len();
            walk_table(table, span, path);
            if path.len() > len || contains(&key_span, span) || contains(&table.span(), span) {
                return true;
            }
            path.truncate(before);
            false
        }
        Item::Value(value) => {
            if contains(&key_span, span) || contains(&value.span(), span) {
                *path = join_path(path, key);
                true
            } else {
                false
            }
        }
        Item::None => false,
    }
}

/// The path of a missing field `name`: a root field the document lacks, else the first
/// entry lacking it of the `[[table]]` array that `near` (the path at the error's span)
/// points into.
fn missing_field_path(text: &str, near: &str, name: &str) -> String {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return join_path(near, name);
    };
    let root = doc.as_table();
    // Only `f` and `replica` have no default at the root.
    if near.is_empty() || (matches!(name, "f" | "replica") && !root.contains_key(name)) {
        return name.to_string();
    }
    for (key, item) in root.iter() {
        let in_this_array = near == key || near.starts_with(&format!("{key}["));
        if let (true, toml_edit::Item::ArrayOfTables(tables)) = (in_this_array, item) {
            for (index, table) in tables.iter().enumerate() {
                if !table.contains_key(name) {
                    return format!("{key}[{index}].{name}");
                }
            }
        }
    }
    join_path(near, name)
}
