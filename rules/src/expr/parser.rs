//! Tokens → syntax tree: a Pratt parser with bounded depth, and the tree
//! printed back with every operation in parentheses.

use std::fmt;

use chrono::TimeDelta;

use super::lexer::{Tok, lex};
use super::tree::{ArOp, CmpOp};
use super::{ExprError, Result};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Ast {
    Num(f64),
    Dur(TimeDelta, Box<str>),
    Str(String),
    Name(String),
    Call(String, Vec<(Ast, usize)>),
    Neg(Box<Ast>),
    Not(Box<Ast>),
    Bin(BinOp, Box<(Ast, usize)>, Box<(Ast, usize)>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum BinOp {
    Ar(ArOp),
    Cmp(CmpOp),
    And,
    Or,
}

impl BinOp {
    fn as_str(self) -> &'static str {
        match self {
            BinOp::Ar(ArOp::Add) => "+",
            BinOp::Ar(ArOp::Sub) => "-",
            BinOp::Ar(ArOp::Mul) => "*",
            BinOp::Ar(ArOp::Div) => "/",
            BinOp::Cmp(c) => c.as_str(),
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

/// The tree as source text with every operation in parentheses, so that it
/// parses back to the same tree whatever the precedence rules say.
impl fmt::Display for Ast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `{}` of an f64 is the shortest text that reads back as the same
            // number, never in exponent notation (the lexer has none).
            Ast::Num(n) => write!(f, "{n}"),
            Ast::Dur(_, text) => f.write_str(text),
            // A string cannot hold the quote that delimited it.
            Ast::Str(s) if s.contains('"') => write!(f, "'{s}'"),
            Ast::Str(s) => write!(f, "\"{s}\""),
            Ast::Name(name) => f.write_str(name),
            Ast::Call(name, args) => {
                write!(f, "{name}(")?;
                for (i, (arg, _)) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            Ast::Neg(inner) => write!(f, "(-{inner})"),
            Ast::Not(inner) => write!(f, "(not {inner})"),
            Ast::Bin(op, l, r) => write!(f, "({} {} {})", l.0, op.as_str(), r.0),
        }
    }
}

/// Deepest syntax tree accepted. Compiling, evaluating and dropping a tree
/// recurse once per level, so an unbounded depth (a rule of 100 000 `+`
/// terms, or as many `-` or `(`) overflowed the stack and aborted the
/// process instead of reporting an error. Rules written by people nest a
/// few levels.
pub(super) const MAX_DEPTH: usize = 100;

/// How deeply the parser itself may recurse (parentheses, prefix operators,
/// call arguments and right operands each take a level). Any tree of at most
/// [`MAX_DEPTH`] levels, printed with every operation in parentheses, needs
/// at most `2 * MAX_DEPTH + 1`, so such a print always parses again.
const MAX_NESTING: usize = 4 * MAX_DEPTH;

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// `expr` calls in progress.
    nesting: usize,
}

/// A subtree, where it starts and how many levels deep it is.
type Parsed = (Ast, usize, usize);

fn too_deep(at: usize) -> ExprError {
    ExprError::new(
        at,
        format!("expression nested too deeply (at most {MAX_DEPTH} levels)"),
    )
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn offset(&self) -> usize {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, want: &Tok) -> Result<()> {
        if self.peek() == want {
            self.bump();
            Ok(())
        } else {
            Err(ExprError::new(
                self.offset(),
                format!("expected {want}, found {}", self.peek()),
            ))
        }
    }

    /// One level of [`Parser::expr_inner`], refused beyond [`MAX_NESTING`].
    fn expr(&mut self, min_bp: u8) -> Result<Parsed> {
        if self.nesting >= MAX_NESTING {
            return Err(too_deep(self.offset()));
        }
        self.nesting += 1;
        let parsed = self.expr_inner(min_bp);
        self.nesting -= 1;
        parsed
    }

    /// Pratt loop. Binding powers: or 1, and 3, not (prefix) 5, comparisons 7
    /// (non-associative), + - 9, * / 11, unary minus 13. Every node's depth
    /// is checked against [`MAX_DEPTH`] as it is built.
    fn expr_inner(&mut self, min_bp: u8) -> Result<Parsed> {
        let (tok, at) = self.bump();
        let node = |depth: usize| {
            if depth > MAX_DEPTH {
                Err(too_deep(at))
            } else {
                Ok(depth)
            }
        };
        let (mut lhs, mut depth) = match tok {
            Tok::Num(n) => (Ast::Num(n), 1),
            Tok::Dur(d, text) => (Ast::Dur(d, text), 1),
            Tok::Str(s) => (Ast::Str(s), 1),
            Tok::Ident(name) => {
                if *self.peek() == Tok::LParen {
                    self.bump();
                    let mut args = Vec::new();
                    let mut deepest = 0;
                    if *self.peek() != Tok::RParen {
                        loop {
                            let (arg, arg_at, arg_depth) = self.expr(0)?;
                            deepest = deepest.max(arg_depth);
                            args.push((arg, arg_at));
                            if *self.peek() == Tok::Comma {
                                self.bump();
                            } else {
                                break;
                            }
                        }
                    }
                    self.expect(&Tok::RParen)?;
                    (Ast::Call(name, args), node(deepest + 1)?)
                } else {
                    (Ast::Name(name), 1)
                }
            }
            Tok::LParen => {
                let (inner, _, inner_depth) = self.expr(0)?;
                self.expect(&Tok::RParen)?;
                (inner, inner_depth)
            }
            Tok::Minus => {
                let (inner, _, inner_depth) = self.expr(13)?;
                (Ast::Neg(Box::new(inner)), node(inner_depth + 1)?)
            }
            Tok::Not => {
                let (inner, _, inner_depth) = self.expr(5)?;
                (Ast::Not(Box::new(inner)), node(inner_depth + 1)?)
            }
            other => {
                return Err(ExprError::new(
                    at,
                    format!("expected a value, found {other}"),
                ));
            }
        };
        let mut last_was_cmp = false;
        loop {
            let (op, l_bp, r_bp) = match self.peek() {
                Tok::Or => (BinOp::Or, 1, 2),
                Tok::And => (BinOp::And, 3, 4),
                Tok::Cmp(c) => (BinOp::Cmp(*c), 7, 8),
                Tok::Plus => (BinOp::Ar(ArOp::Add), 9, 10),
                Tok::Minus => (BinOp::Ar(ArOp::Sub), 9, 10),
                Tok::Star => (BinOp::Ar(ArOp::Mul), 11, 12),
                Tok::Slash => (BinOp::Ar(ArOp::Div), 11, 12),
                Tok::RParen | Tok::Comma | Tok::Eof => break,
                other => {
                    return Err(ExprError::new(
                        self.offset(),
                        format!("expected an operator, found {other}"),
                    ));
                }
            };
            if l_bp < min_bp {
                break;
            }
            let op_at = self.offset();
            if matches!(op, BinOp::Cmp(_)) && last_was_cmp {
                return Err(ExprError::new(
                    op_at,
                    "comparisons do not chain; write 'a < b and b < c'",
                ));
            }
            self.bump();
            let (rhs, rhs_at, rhs_depth) = self.expr(r_bp)?;
            last_was_cmp = matches!(op, BinOp::Cmp(_));
            depth = node(depth.max(rhs_depth) + 1)?;
            lhs = Ast::Bin(op, Box::new((lhs, at)), Box::new((rhs, rhs_at)));
        }
        Ok((lhs, at, depth))
    }
}

pub(super) fn parse(src: &str) -> Result<(Ast, usize)> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        nesting: 0,
    };
    if *p.peek() == Tok::Eof {
        return Err(ExprError::new(0, "empty expression"));
    }
    let (ast, at, _) = p.expr(0)?;
    if *p.peek() != Tok::Eof {
        return Err(ExprError::new(
            p.offset(),
            format!("unexpected {}", p.peek()),
        ));
    }
    Ok((ast, at))
}

/// Parses a `when`/`clear` expression without compiling it: the syntax tree
/// printed with every operation in parentheses, or the error's byte offset
/// and message. For the fuzz targets (`fuzz/`), which check that the printed
/// tree parses back to itself; rule files go through [`crate::RuleSet::compile`].
#[doc(hidden)]
pub fn parse_expression(src: &str) -> std::result::Result<String, (usize, String)> {
    parse(src)
        .map(|(ast, _)| ast.to_string())
        .map_err(|e| (e.offset, e.message))
}
