//! Positions in a configuration file: byte spans from the TOML parser, turned
//! into 1-based line and column numbers and looked up by path.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use wardgate_model::config::PathSeg;

type Spanned<T> = toml::Spanned<T>;

/// A 1-based line and column (in characters) inside a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// The text of one configuration file, for positions and snippets.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }

    /// The whole line holding `offset`, without its newline.
    pub(crate) fn line_text(&self, offset: usize) -> &str {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        self.text[start..end].trim_end_matches('\r')
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The span that best names `path` inside `root`: the key itself when the last
/// step is a key that exists, else the deepest value that exists.
pub(crate) fn span_of(root: &Spanned<DeValue<'_>>, path: &[PathSeg]) -> Range<usize> {
    let mut current = root;
    let mut best = root.span();
    for seg in path {
        match (seg, current.get_ref()) {
            (PathSeg::Key(k), DeValue::Table(t)) => match t.get_key_value(k.as_ref()) {
                Some((key, value)) => {
                    best = key.span();
                    current = value;
                }
                None => return best,
            },
            (PathSeg::Index(i), DeValue::Array(a)) => match a.get(*i) {
                Some(value) => {
                    best = value.span();
                    current = value;
                }
                None => return best,
            },
            _ => return best,
        }
    }
    best
}

/// The value at `key` in a table, with the key's span.
pub(crate) fn get<'t, 'i>(
    table: &'t DeTable<'i>,
    key: &str,
) -> Option<(Range<usize>, &'t Spanned<DeValue<'i>>)> {
    table.get_key_value(key).map(|(k, v)| (k.span(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = Source {
            text: "a = 1\nb = \"é\" x\n",
        };
        assert_eq!(s.position(0), Position { line: 1, column: 1 });
        let x = s.text.find('x').unwrap();
        assert_eq!(s.position(x), Position { line: 2, column: 9 });
        assert_eq!(s.line_text(x), "b = \"é\" x");
    }
}
