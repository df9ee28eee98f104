//! Arrays whose entries come from a fixed set (`compression.algorithms`,
//! `server.forward_fields`): each entry one of the set, each at most once, an error at the
//! entry otherwise.

use crate::reader::{as_string, Reader, Table};

/// One such array: its key, what it should look like, the set and how an entry names one.
pub(crate) struct Choices<T: 'static> {
    pub(crate) key: &'static str,
    /// What the whole value should be, for the error when it is no array.
    pub(crate) expected: &'static str,
    /// What an entry must be, for the error when it is none of the set ("a coding corral
    /// applies").
    pub(crate) entry: &'static str,
    pub(crate) all: &'static [T],
    pub(crate) name: fn(T) -> &'static str,
    /// Whether `GZIP` names `gzip` (field names) or not (codings).
    pub(crate) any_case: bool,
}

impl<T: Copy + PartialEq> Choices<T> {
    /// The entries, in the order given, with the key's path and how many entries there were
    /// (valid or not); `None` when the key is absent or no array.
    pub(crate) fn read(&self, r: &mut Reader, t: &mut Table) -> Option<(String, Vec<T>, usize)> {
        let (path, items) = t.array(r, self.key, self.expected)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(text) = as_string(r, item, &item_path) else {
                continue;
            };
            let named = |c: &T| {
                let name = (self.name)(*c);
                if self.any_case {
                    name.eq_ignore_ascii_case(&text)
                } else {
                    name == text
                }
            };
            match self.all.iter().copied().find(named) {
                Some(choice) if out.contains(&choice) => {
                    r.error(item.span(), &item_path, format!("{text:?} is listed twice"))
                }
                Some(choice) => out.push(choice),
                None => {
                    let names: Vec<&str> = self.all.iter().map(|c| (self.name)(*c)).collect();
                    r.error(
                        item.span(),
                        &item_path,
                        format!(
                            "{text:?} is not {}; expected one of {}",
                            self.entry,
                            names.join(", ")
                        ),
                    )
                }
            }
        }
        Some((path, out, items.len()))
    }
}
