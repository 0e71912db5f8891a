//! Text → tokens, each with the byte offset where it starts (for errors).

use std::fmt;

use chrono::TimeDelta;

use super::tree::CmpOp;
use super::{ExprError, Result};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Num(f64),
    /// A duration and its text as written (`5m`, `1.5h`), for printing.
    Dur(TimeDelta, Box<str>),
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Cmp(CmpOp),
    And,
    Or,
    Not,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Num(n) => write!(f, "number {n}"),
            Tok::Dur(..) => f.write_str("a duration"),
            Tok::Ident(s) => write!(f, "'{s}'"),
            Tok::Str(s) => write!(f, "string \"{s}\""),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
            Tok::Plus => f.write_str("'+'"),
            Tok::Minus => f.write_str("'-'"),
            Tok::Star => f.write_str("'*'"),
            Tok::Slash => f.write_str("'/'"),
            Tok::Cmp(op) => write!(f, "'{}'", op.as_str()),
            Tok::And => f.write_str("'and'"),
            Tok::Or => f.write_str("'or'"),
            Tok::Not => f.write_str("'not'"),
            Tok::Eof => f.write_str("end of expression"),
        }
    }
}

pub(super) fn lex(src: &str) -> Result<Vec<(Tok, usize)>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => out.push((Tok::LParen, start)),
            b')' => out.push((Tok::RParen, start)),
            b',' => out.push((Tok::Comma, start)),
            b'+' => out.push((Tok::Plus, start)),
            b'-' => out.push((Tok::Minus, start)),
            b'*' => out.push((Tok::Star, start)),
            b'/' => out.push((Tok::Slash, start)),
            b'<' | b'>' | b'=' | b'!' => {
                let next_eq = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, next_eq) {
                    (b'<', true) => CmpOp::Le,
                    (b'<', false) => CmpOp::Lt,
                    (b'>', true) => CmpOp::Ge,
                    (b'>', false) => CmpOp::Gt,
                    (b'=', true) => CmpOp::Eq,
                    (b'!', true) => CmpOp::Ne,
                    (b'=', false) => {
                        return Err(ExprError::new(start, "'=' is not an operator; use '=='"));
                    }
                    _ => {
                        return Err(ExprError::new(start, "'!' is not an operator; use 'not'"));
                    }
                };
                if next_eq {
                    i += 1;
                }
                out.push((Tok::Cmp(op), start));
            }
            b'"' | b'\'' => {
                let close = src[i + 1..]
                    .find(c as char)
                    .ok_or_else(|| ExprError::new(start, "unterminated string"))?;
                out.push((Tok::Str(src[i + 1..i + 1 + close].to_owned()), start));
                i += close + 2;
                continue;
            }
            b'0'..=b'9' | b'.' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let text = &src[start..i];
                let n: f64 = text
                    .parse()
                    .map_err(|_| ExprError::new(start, format!("'{text}' is not a number")))?;
                let unit_start = i;
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                if unit_start == i {
                    out.push((Tok::Num(n), start));
                } else {
                    let unit = &src[unit_start..i];
                    let secs = match unit {
                        "ms" => 0.001,
                        "s" => 1.0,
                        "m" => 60.0,
                        "h" => 3600.0,
                        "d" => 86_400.0,
                        "w" => 604_800.0,
                        _ => {
                            return Err(ExprError::new(
                                unit_start,
                                format!(
                                    "unknown duration unit '{unit}'; allowed: ms, s, m, h, d, w"
                                ),
                            ));
                        }
                    };
                    let nanos = n * secs * 1e9;
                    if !(1.0..1e18).contains(&nanos) {
                        return Err(ExprError::new(
                            start,
                            "a duration must be positive and below 30 years",
                        ));
                    }
                    out.push((
                        Tok::Dur(TimeDelta::nanoseconds(nanos as i64), src[start..i].into()),
                        start,
                    ));
                }
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &src[start..i];
                let tok = match word {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    _ => Tok::Ident(word.to_owned()),
                };
                out.push((tok, start));
                continue;
            }
            _ => {
                let ch = src[start..].chars().next().unwrap_or('?');
                return Err(ExprError::new(
                    start,
                    format!("unexpected character '{ch}'"),
                ));
            }
        }
        i += 1;
    }
    out.push((Tok::Eof, src.len()));
    Ok(out)
}
