//! Alert message templates: literal text with `{metric}`, `{param.NAME}`
//! and the other placeholders, resolved at load.

use super::tree::{Resolve, Slot};
use super::{ExprError, Result};

/// A message template: literal text with `{metric}` and `{param.NAME}`
/// placeholders, resolved at load.
#[derive(Clone, Debug)]
pub(crate) enum Piece {
    Text(Box<str>),
    Metric(Slot),
    Param(u16),
    News2,
    Pulse,
    Device,
    /// What the device said of the alarm that explains the alert.
    Detail,
}

/// Parses a message template; `{{` and `}}` are literal braces.
pub(crate) fn compile_template(src: &str, names: &mut dyn Resolve) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let close = src[i..]
                    .find('}')
                    .ok_or_else(|| ExprError::new(i, "unclosed '{' in message"))?;
                let name = src[i + 1..i + close].trim();
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text).into()));
                }
                let piece = if let Some(p) = name.strip_prefix("param.") {
                    Piece::Param(names.param(p).ok_or_else(|| {
                        ExprError::new(i + 1, format!("unknown parameter '{p}' in message"))
                    })?)
                } else if name == "news2" {
                    Piece::News2
                } else if name == "pulse" {
                    Piece::Pulse
                } else if name == "device" {
                    Piece::Device
                } else if name == "detail" {
                    Piece::Detail
                } else {
                    Piece::Metric(names.metric(name).ok_or_else(|| {
                        ExprError::new(
                            i + 1,
                            format!("unknown metric '{name}' in message; use {{metric}}, {{param.NAME}}, {{news2}}, {{pulse}}, {{device}} or {{detail}}"),
                        )
                    })?)
                };
                pieces.push(piece);
                while let Some(&(j, _)) = chars.peek() {
                    if j > i + close {
                        break;
                    }
                    chars.next();
                }
            }
            '}' => return Err(ExprError::new(i, "unmatched '}' in message; write '}}'")),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text.into()));
    }
    Ok(pieces)
}
