//! Reads values out of the spanned TOML tree, recording every problem instead of stopping at
//! the first, so `corral check` can list all mistakes of a file in one run.
//! Over 400 lines: one typed getter per value kind, each with its own error wording, and
//! the spans and suggestions they share; they belong together.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{line_col, ConfigError};
use crate::units::{parse_duration, parse_size};

/// A value of the parsed document with its place in the source.
pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// Collects the errors of one file while its tables are read.
pub(crate) struct Reader<'s> {
    file: PathBuf,
    src: &'s str,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(file: PathBuf, src: &'s str) -> Self {
        Reader {
            file,
            src,
            errors: Vec::new(),
        }
    }

    /// Records a problem at `span` (a byte range of the source) for `key`.
    pub(crate) fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = line_col(self.src, span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Where `span` is, for problems found later (in files the config names).
    pub(crate) fn place(&self, span: Range<usize>, key: &str) -> crate::model::Place {
        let (line, column) = line_col(self.src, span.start);
        crate::model::Place {
            line,
            column,
            key: key.to_string(),
        }
    }

    /// Records a problem with no place in the file, such as a missing key.
    pub(crate) fn error_nowhere(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: 0,
            column: 0,
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// A table being read: remembers which keys were used so the rest can be reported as unknown.
pub(crate) struct Table<'t, 'i> {
    pub(crate) path: String,
    table: Option<&'t DeTable<'i>>,
    known: Vec<&'static str>,
}

impl<'t, 'i> Table<'t, 'i> {
    /// A table at `path`; `None` reads as an empty table so every key takes its default.
    pub(crate) fn new(path: impl Into<String>, table: Option<&'t DeTable<'i>>) -> Self {
        Table {
            path: path.into(),
            table,
            known: Vec::new(),
        }
    }

    /// The sub-table `key`, or an error if `key` holds something else.
    pub(crate) fn table(&mut self, r: &mut Reader, key: &'static str) -> Table<'t, 'i> {
        let path = self.key_path(key);
        let inner = self.get(key).and_then(|node| match node.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!("expected a table, found {}", kind(other)),
                );
                None
            }
        });
        Table::new(path, inner)
    }

    /// The raw node of `key`, marking the key as known.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'t Node<'i>> {
        self.known.push(key);
        self.table?
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// Every entry, for tables whose keys are names chosen by the user (`[pools.NAME]`).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'t str, Range<usize>, &'t Node<'i>)> {
        self.table
            .into_iter()
            .flat_map(|t| t.iter())
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// Reports every key that no getter asked for, with the closest known key as a hint.
    pub(crate) fn finish(self, r: &mut Reader) {
        let Some(table) = self.table else { return };
        for (key, _) in table.iter() {
            let name = key.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let mut message = "unknown key".to_string();
            if let Some(best) = closest(name, &self.known) {
                message.push_str(&format!("; did you mean `{best}`?"));
            } else {
                message.push_str(&format!("; known keys here: {}", self.known.join(", ")));
            }
            r.error(key.span(), &self.key_path(name), message);
        }
    }

    /// A string value.
    pub(crate) fn string(&mut self, r: &mut Reader, key: &'static str) -> Option<String> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        as_string(r, node, &path)
    }

    /// A boolean value.
    pub(crate) fn boolean(&mut self, r: &mut Reader, key: &'static str) -> Option<bool> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        match node.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub(crate) fn integer(
        &mut self,
        r: &mut Reader,
        key: &'static str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        as_integer(r, node, &path, min, max)
    }

    /// A duration written as a string such as `"30s"` or `"500ms"`.
    /// A duration that must be more than 0 (an interval, a timeout); 0 is an error.
    pub(crate) fn positive_duration(
        &mut self,
        r: &mut Reader,
        key: &'static str,
    ) -> Option<Duration> {
        let d = self.duration(r, key)?;
        if d.is_zero() {
            if let Some(node) = self.get(key) {
                r.error(node.span(), &self.key_path(key), "must be more than 0");
            }
            return None;
        }
        Some(d)
    }

    pub(crate) fn duration(&mut self, r: &mut Reader, key: &'static str) -> Option<Duration> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        match node.get_ref() {
            DeValue::String(s) => {
                match parse_duration(s) {
                    Ok(d) => Some(d),
                    Err(why) => {
                        r.error(
                        node.span(),
                        &path,
                        format!("{s:?} is not a duration ({why}); write it like \"30s\" or \"500ms\""),
                    );
                        None
                    }
                }
            }
            DeValue::Integer(i) => {
                r.error(
                    node.span(),
                    &path,
                    format!(
                        "{} is not a duration; durations need a unit, like \"{}s\"",
                        i.as_str(),
                        i.as_str()
                    ),
                );
                None
            }
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!("expected a duration like \"30s\", found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A size in bytes: an integer, or a string such as `"10MiB"`.
    pub(crate) fn size(&mut self, r: &mut Reader, key: &'static str) -> Option<u64> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        match node.get_ref() {
            DeValue::String(s) => match parse_size(s) {
                Ok(n) => Some(n),
                Err(why) => {
                    r.error(
                        node.span(),
                        &path,
                        format!("{s:?} is not a size ({why}); write it like \"10MiB\" or 4096"),
                    );
                    None
                }
            },
            DeValue::Integer(_) => as_integer(r, node, &path, 0, i64::MAX).map(|n| n as u64),
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!("expected a size like \"10MiB\", found {}", kind(other)),
                );
                None
            }
        }
    }

    /// One of a fixed set of words.
    pub(crate) fn choice(
        &mut self,
        r: &mut Reader,
        key: &'static str,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        let text = as_string(r, node, &path)?;
        match allowed.iter().find(|a| **a == text) {
            Some(a) => Some(a),
            None => {
                let list = allowed
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>();
                r.error(
                    node.span(),
                    &path,
                    format!(
                        "{text:?} is not allowed; expected one of {}",
                        list.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// A socket address such as `"127.0.0.1:8080"`.
    pub(crate) fn address(&mut self, r: &mut Reader, key: &'static str) -> Option<SocketAddr> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        as_address(r, node, &path)
    }

    /// One address or an array of them.
    pub(crate) fn addresses(
        &mut self,
        r: &mut Reader,
        key: &'static str,
    ) -> Option<Vec<SocketAddr>> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        match node.get_ref() {
            DeValue::String(_) => as_address(r, node, &path).map(|a| vec![a]),
            DeValue::Array(items) => {
                let mut out: Vec<SocketAddr> = Vec::new();
                let mut valid = true;
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match as_address(r, item, &item_path) {
                        Some(a) if out.contains(&a) => {
                            r.error(
                                item.span(),
                                &item_path,
                                format!("lists {a} a second time; each address is bound once"),
                            );
                            valid = false;
                        }
                        Some(a) => out.push(a),
                        None => valid = false,
                    }
                }
                valid.then_some(out)
            }
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!(
                        "expected an array of addresses like [\"0.0.0.0:8080\"], found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// The items of the array at `key` (`None` when absent, or when it is no array: then an
    /// error says `expected`).
    pub(crate) fn array(
        &mut self,
        r: &mut Reader,
        key: &'static str,
        expected: &str,
    ) -> Option<(String, &'t toml::de::DeArray<'i>)> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        match node.get_ref() {
            DeValue::Array(items) => Some((path, items)),
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!("expected {expected}, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A non-empty array of strings (a command line).
    pub(crate) fn string_array(
        &mut self,
        r: &mut Reader,
        key: &'static str,
    ) -> Option<Vec<String>> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        match node.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.extend(as_string(r, item, &format!("{path}[{i}]")));
                }
                (out.len() == items.len()).then_some(out)
            }
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!(
                        "expected an array of strings like [\"python3\", \"app.py\"], found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// A table of string values (`env = { KEY = "value" }`), in file order.
    pub(crate) fn string_map(
        &mut self,
        r: &mut Reader,
        key: &'static str,
    ) -> Option<Vec<(String, String)>> {
        let path = self.key_path(key);
        let node = self.get(key)?;
        match node.get_ref() {
            DeValue::Table(t) => {
                let mut out = Vec::new();
                for (k, v) in t.iter() {
                    let name = k.get_ref().to_string();
                    if let Some(value) = as_string(r, v, &format!("{path}.{name}")) {
                        out.push((name, value));
                    }
                }
                Some(out)
            }
            other => {
                r.error(
                    node.span(),
                    &path,
                    format!(
                        "expected a table like {{ KEY = \"value\" }}, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }
}

pub(crate) fn as_string(r: &mut Reader, node: &Node, path: &str) -> Option<String> {
    match node.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        other => {
            r.error(
                node.span(),
                path,
                format!("expected a string, found {}", kind(other)),
            );
            None
        }
    }
}

pub(crate) fn as_integer(
    r: &mut Reader,
    node: &Node,
    path: &str,
    min: i64,
    max: i64,
) -> Option<i64> {
    match node.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                r.error(
                    node.span(),
                    path,
                    format!("{} is out of range; expected {min} to {max}", i.as_str()),
                );
                None
            }
        },
        other => {
            r.error(
                node.span(),
                path,
                format!("expected an integer, found {}", kind(other)),
            );
            None
        }
    }
}

fn as_address(r: &mut Reader, node: &Node, path: &str) -> Option<SocketAddr> {
    let text = as_string(r, node, path)?;
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(node.span(), path, format!("{text:?} is not an address; write it like \"127.0.0.1:8080\" or \"[::1]:8080\""));
            None
        }
    }
}

/// Names a TOML value's type the way the user wrote it.
pub(crate) fn kind(value: &DeValue) -> String {
    match value {
        DeValue::String(s) => format!("the string {s:?}"),
        DeValue::Integer(i) => format!("the integer {}", i.as_str()),
        DeValue::Float(f) => format!("the float {}", f.as_str()),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(_) => "a datetime".into(),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// The known key closest to a misspelt one, if any is close enough to be a likely typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
