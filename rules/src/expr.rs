//! The expression language of `when` and `clear`: lexing, parsing and compiling
//! to a typed tree that the engine evaluates. Owns nothing at run time; never
//! reads the clock (evaluation is given a [`Ctx`] that carries `now`).
//!
//! The parser is a small hand-written Pratt parser rather than a parser crate:
//! the grammar has a dozen productions, errors must carry the exact byte offset
//! of the offending token (turned into file line/column by the rule loader), and
//! a hand-written lexer keeps the `5m` duration tokens and `"..."` strings
//! simple. A combinator crate would add a dependency for no less code.
//!
//! Semantics, kept deliberately simple for nurses' and biomeds' rule authors:
//! numbers are `f64`; a value may be *missing* (metric never seen, empty window,
//! NEWS2 not fresh, unset parameter, division by zero); any comparison with a
//! missing operand is `false`, so `not (spo2 > 90)` is `true` when no SpO2 was
//! ever seen. Write a `clear` expression that needs a positive observation when
//! missing data must not clear an alert.

use std::fmt;

use chrono::TimeDelta;
use wardgate_model::{DeviceId, DeviceKind, Metric, MetricRegistry};

use crate::window::WindowFn;

/// A position-carrying compile error: `offset` is a byte offset into the
/// expression text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExprError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

impl ExprError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, ExprError>;

// ---------------------------------------------------------------- lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
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

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>> {
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

// ---------------------------------------------------------------- parser

#[derive(Clone, Debug, PartialEq)]
enum Ast {
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
enum BinOp {
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
const MAX_DEPTH: usize = 100;

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

fn parse(src: &str) -> Result<(Ast, usize)> {
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

// ---------------------------------------------------------------- compiled form

/// Index of a metric in the engine's slot table.
pub(crate) type Slot = u16;

/// A compiled expression; its type (number or condition) was checked at load.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Num(f64),
    Latest(Slot),
    Param(u16),
    Neg(Box<Expr>),
    Abs(Box<Expr>),
    Arith(ArOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// Window function over a span in nanoseconds.
    Window(WindowFn, Slot, i64),
    Age(Slot),
    DataAge,
    Pulse,
    Alarm {
        code: Box<str>,
        kind: Option<DeviceKind>,
    },
    DeviceOffline(Option<DeviceId>),
    News2,
    News2Max,
    ParamSet(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Num,
    Bool,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Num => "a number",
            Ty::Bool => "a condition",
        })
    }
}

/// What an expression reads, so the engine evaluates a rule only when one of
/// its inputs changed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Deps {
    /// Metric slots whose new readings re-evaluate the rule.
    pub(crate) slots: Vec<Slot>,
    /// (slot, longest window) for every windowed metric.
    pub(crate) windows: Vec<(Slot, TimeDelta)>,
    pub(crate) alarms: bool,
    pub(crate) status: bool,
    pub(crate) news2: bool,
    /// Value can change with time alone (windows, `age`, `data_age`); NEWS2
    /// freshness is tracked separately.
    pub(crate) time: bool,
}

impl Deps {
    fn slot(&mut self, s: Slot) {
        if !self.slots.contains(&s) {
            self.slots.push(s);
        }
    }

    fn window(&mut self, s: Slot, d: TimeDelta) {
        if let Some(w) = self.windows.iter_mut().find(|w| w.0 == s) {
            w.1 = w.1.max(d);
        } else {
            self.windows.push((s, d));
        }
    }
}

/// Names an expression may use, resolved at compile time.
pub(crate) trait Resolve {
    /// The slot of a metric name, or `None` if no such metric is known.
    fn metric(&mut self, name: &str) -> Option<Slot>;
    /// The index of a declared parameter.
    fn param(&self, name: &str) -> Option<u16>;
    /// Every declared parameter name, for error messages.
    fn param_names(&self) -> Vec<String>;
}

/// Compiles a condition (`when`/`clear`).
pub(crate) fn compile_condition(
    src: &str,
    names: &mut dyn Resolve,
    deps: &mut Deps,
) -> Result<Expr> {
    let (ast, at) = parse(src)?;
    let (e, ty) = compile(&ast, at, names, deps)?;
    if ty != Ty::Bool {
        return Err(ExprError::new(
            0,
            "a rule condition must be a comparison or a condition, not a number (e.g. 'spo2 < 90')",
        ));
    }
    Ok(e)
}

fn want(ty: Ty, need: Ty, at: usize, what: &str) -> Result<()> {
    if ty == need {
        Ok(())
    } else {
        Err(ExprError::new(
            at,
            format!("{what} needs {need}, found {ty}"),
        ))
    }
}

fn compile(ast: &Ast, at: usize, names: &mut dyn Resolve, deps: &mut Deps) -> Result<(Expr, Ty)> {
    Ok(match ast {
        Ast::Num(n) => (Expr::Num(*n), Ty::Num),
        Ast::Dur(..) => {
            return Err(ExprError::new(
                at,
                "a duration is only allowed as a window function's second argument, e.g. avg(spo2, 5m)",
            ));
        }
        Ast::Str(_) => {
            return Err(ExprError::new(
                at,
                "a string is only allowed as an argument of alarm(), param() or device_offline()",
            ));
        }
        Ast::Name(name) => {
            if name == "true" || name == "false" {
                return Err(ExprError::new(
                    at,
                    "there are no boolean literals; write the condition itself",
                ));
            }
            let slot = names.metric(name).ok_or_else(|| {
                ExprError::new(
                    at,
                    format!(
                        "unknown metric '{name}' (a metric name, or a function call like news2())"
                    ),
                )
            })?;
            deps.slot(slot);
            (Expr::Latest(slot), Ty::Num)
        }
        Ast::Neg(inner) => {
            let (e, ty) = compile(inner, at + 1, names, deps)?;
            want(ty, Ty::Num, at, "'-'")?;
            (Expr::Neg(Box::new(e)), Ty::Num)
        }
        Ast::Not(inner) => {
            let (e, ty) = compile(inner, at + 4, names, deps)?;
            want(ty, Ty::Bool, at, "'not'")?;
            (Expr::Not(Box::new(e)), Ty::Bool)
        }
        Ast::Bin(op, l, r) => {
            let (le, lt) = compile(&l.0, l.1, names, deps)?;
            let (re, rt) = compile(&r.0, r.1, names, deps)?;
            match op {
                BinOp::Ar(a) => {
                    want(lt, Ty::Num, l.1, "arithmetic")?;
                    want(rt, Ty::Num, r.1, "arithmetic")?;
                    (Expr::Arith(*a, Box::new(le), Box::new(re)), Ty::Num)
                }
                BinOp::Cmp(c) => {
                    want(lt, Ty::Num, l.1, "a comparison")?;
                    want(rt, Ty::Num, r.1, "a comparison")?;
                    (Expr::Cmp(*c, Box::new(le), Box::new(re)), Ty::Bool)
                }
                BinOp::And | BinOp::Or => {
                    let w = if *op == BinOp::And { "'and'" } else { "'or'" };
                    want(lt, Ty::Bool, l.1, w)?;
                    want(rt, Ty::Bool, r.1, w)?;
                    if *op == BinOp::And {
                        (Expr::And(Box::new(le), Box::new(re)), Ty::Bool)
                    } else {
                        (Expr::Or(Box::new(le), Box::new(re)), Ty::Bool)
                    }
                }
            }
        }
        Ast::Call(name, args) => compile_call(name, args, at, names, deps)?,
    })
}

fn arity(
    name: &str,
    args: &[(Ast, usize)],
    at: usize,
    range: std::ops::RangeInclusive<usize>,
    usage: &str,
) -> Result<()> {
    if range.contains(&args.len()) {
        Ok(())
    } else {
        Err(ExprError::new(
            at,
            format!("{name}() takes {usage}, got {} argument(s)", args.len()),
        ))
    }
}

fn metric_arg(name: &str, arg: &(Ast, usize), names: &mut dyn Resolve) -> Result<Slot> {
    match &arg.0 {
        Ast::Name(m) => names
            .metric(m)
            .ok_or_else(|| ExprError::new(arg.1, format!("unknown metric '{m}'"))),
        _ => Err(ExprError::new(
            arg.1,
            format!("the first argument of {name}() must be a metric name"),
        )),
    }
}

fn str_arg<'a>(name: &str, arg: &'a (Ast, usize), what: &str) -> Result<&'a str> {
    match &arg.0 {
        Ast::Str(s) => Ok(s),
        _ => Err(ExprError::new(
            arg.1,
            format!("{name}() needs {what} as a quoted string"),
        )),
    }
}

fn compile_call(
    name: &str,
    args: &[(Ast, usize)],
    at: usize,
    names: &mut dyn Resolve,
    deps: &mut Deps,
) -> Result<(Expr, Ty)> {
    if let Some(f) = WindowFn::from_name(name) {
        arity(
            name,
            args,
            at,
            2..=2,
            "a metric and a duration, e.g. avg(spo2, 5m)",
        )?;
        let slot = metric_arg(name, &args[0], names)?;
        let Ast::Dur(d, _) = args[1].0 else {
            return Err(ExprError::new(
                args[1].1,
                format!("the second argument of {name}() must be a duration such as 5m, 1h or 3d"),
            ));
        };
        deps.slot(slot);
        deps.window(slot, d);
        deps.time = true;
        return Ok((
            Expr::Window(f, slot, d.num_nanoseconds().unwrap_or(i64::MAX)),
            Ty::Num,
        ));
    }
    Ok(match name {
        "age" => {
            arity(name, args, at, 1..=1, "one metric name")?;
            let slot = metric_arg(name, &args[0], names)?;
            deps.slot(slot);
            deps.time = true;
            (Expr::Age(slot), Ty::Num)
        }
        "data_age" => {
            arity(name, args, at, 0..=0, "no arguments")?;
            deps.time = true;
            (Expr::DataAge, Ty::Num)
        }
        "abs" => {
            arity(name, args, at, 1..=1, "one number")?;
            let (e, ty) = compile(&args[0].0, args[0].1, names, deps)?;
            want(ty, Ty::Num, args[0].1, "abs()")?;
            (Expr::Abs(Box::new(e)), Ty::Num)
        }
        "pulse" => {
            arity(name, args, at, 0..=0, "no arguments")?;
            for m in ["heart_rate", "pulse_rate"] {
                let s = names
                    .metric(m)
                    .ok_or_else(|| ExprError::new(at, format!("metric {m} unknown")))?;
                deps.slot(s);
            }
            (Expr::Pulse, Ty::Num)
        }
        "param" | "param_set" => {
            arity(
                name,
                args,
                at,
                1..=1,
                "one parameter name, e.g. param(\"sys_crisis\")",
            )?;
            let p = str_arg(name, &args[0], "the parameter name")?;
            let idx = names.param(p).ok_or_else(|| {
                let known = names.param_names();
                ExprError::new(
                    args[0].1,
                    format!(
                        "unknown parameter '{p}'; declared: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
            if name == "param" {
                (Expr::Param(idx), Ty::Num)
            } else {
                (Expr::ParamSet(idx), Ty::Bool)
            }
        }
        "alarm" => {
            arity(
                name,
                args,
                at,
                1..=2,
                "an alarm code and optionally a device kind, e.g. alarm(\"occlusion\", \"pump\")",
            )?;
            let code = str_arg(name, &args[0], "the alarm code")?;
            if code.is_empty()
                || !code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(ExprError::new(
                    args[0].1,
                    "an alarm code is snake_case, e.g. \"occlusion\"",
                ));
            }
            let kind = match args.get(1) {
                None => None,
                Some(a) => Some(match str_arg(name, a, "the device kind")? {
                    "ble" => DeviceKind::Ble,
                    "pump" => DeviceKind::Pump,
                    "modbus" => DeviceKind::Modbus,
                    "synthetic" => DeviceKind::Synthetic,
                    "gateway" => DeviceKind::Gateway,
                    other => {
                        return Err(ExprError::new(
                            a.1,
                            format!(
                                "unknown device kind '{other}'; allowed: ble, pump, modbus, synthetic, gateway"
                            ),
                        ));
                    }
                }),
            };
            deps.alarms = true;
            (
                Expr::Alarm {
                    code: code.into(),
                    kind,
                },
                Ty::Bool,
            )
        }
        "device_offline" => {
            arity(name, args, at, 0..=1, "nothing or a device id")?;
            let dev = match args.first() {
                None => None,
                Some(a) => Some(DeviceId::from(str_arg(name, a, "the device id")?)),
            };
            deps.status = true;
            (Expr::DeviceOffline(dev), Ty::Bool)
        }
        "news2" | "news2_max" => {
            arity(name, args, at, 0..=0, "no arguments")?;
            // Not `time`: the engine re-evaluates NEWS2 rules when a parameter goes stale.
            deps.news2 = true;
            (
                if name == "news2" {
                    Expr::News2
                } else {
                    Expr::News2Max
                },
                Ty::Num,
            )
        }
        _ => {
            return Err(ExprError::new(
                at,
                format!(
                    "unknown function '{name}'; known: avg, min, max, count, rise, fall, age, data_age, abs, pulse, param, param_set, alarm, device_offline, news2, news2_max"
                ),
            ));
        }
    })
}

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

/// Resolves metric names against a registry into a shared slot table.
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotTable {
    pub(crate) metrics: Vec<Metric>,
    pub(crate) by_metric: rustc_hash::FxHashMap<Metric, Slot>,
}

impl SlotTable {
    pub(crate) fn slot_of(&mut self, metric: Metric) -> Slot {
        if let Some(&s) = self.by_metric.get(&metric) {
            return s;
        }
        let s = self.metrics.len() as Slot;
        self.metrics.push(metric.clone());
        self.by_metric.insert(metric, s);
        s
    }

    pub(crate) fn resolve(&mut self, registry: &MetricRegistry, name: &str) -> Option<Slot> {
        registry.resolve(name).map(|m| self.slot_of(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names(SlotTable, Vec<String>);

    impl Resolve for Names {
        fn metric(&mut self, name: &str) -> Option<Slot> {
            self.0.resolve(&MetricRegistry::default(), name)
        }
        fn param(&self, name: &str) -> Option<u16> {
            self.1.iter().position(|p| p == name).map(|i| i as u16)
        }
        fn param_names(&self) -> Vec<String> {
            self.1.clone()
        }
    }

    fn cond(src: &str) -> Result<(Expr, Deps)> {
        let mut n = Names(SlotTable::default(), vec!["sys_crisis".into()]);
        let mut d = Deps::default();
        compile_condition(src, &mut n, &mut d).map(|e| (e, d))
    }

    fn err_at(src: &str) -> (usize, String) {
        let e = cond(src).unwrap_err();
        (e.offset, e.message)
    }

    #[test]
    fn precedence_and_deps() {
        let (e, d) =
            cond("not spo2 < 90 and heart_rate + 1 * 2 > 100 or alarm(\"occlusion\")").unwrap();
        // ((not (spo2 < 90)) and (hr + (1*2) > 100)) or alarm
        let Expr::Or(l, _) = e else { panic!("{e:?}") };
        let Expr::And(nl, cmp) = *l else { panic!() };
        assert!(matches!(*nl, Expr::Not(_)));
        let Expr::Cmp(CmpOp::Gt, sum, _) = *cmp else {
            panic!()
        };
        let Expr::Arith(ArOp::Add, _, prod) = *sum else {
            panic!()
        };
        assert!(matches!(*prod, Expr::Arith(ArOp::Mul, _, _)));
        assert_eq!(d.slots.len(), 2);
        assert!(d.alarms && !d.time);
    }

    #[test]
    fn windows_and_durations() {
        let (_, d) =
            cond("rise(body_weight, 3d) > 2 and avg(spo2, 90s) < 88 and max(spo2, 5m) < 90")
                .unwrap();
        assert!(d.time);
        assert_eq!(d.windows.len(), 2);
        // spo2 window is the longest asked for: 5 minutes.
        assert_eq!(d.windows[1].1, TimeDelta::minutes(5));
        assert_eq!(d.windows[0].1, TimeDelta::days(3));
    }

    #[test]
    fn errors_point_at_the_token() {
        // column of 'spo3' is byte 0
        assert_eq!(err_at("spo3 < 90").0, 0);
        assert!(err_at("spo3 < 90").1.contains("unknown metric 'spo3'"));
        // "spo2 < " is 7 bytes, then the bad token
        assert_eq!(err_at("spo2 < )").0, 7);
        assert_eq!(err_at("spo2 = 90").0, 5);
        assert_eq!(err_at("avg(spo2, 5y) < 1").0, 11);
        assert!(
            err_at("avg(spo2, 5y) < 1")
                .1
                .contains("unknown duration unit")
        );
        assert_eq!(err_at("param(\"nope\") > 1").0, 6);
        assert_eq!(err_at("1 < 2 < 3").0, 6);
        assert!(err_at("spo2 + 1").1.contains("must be a comparison"));
        assert_eq!(err_at("spo2 and heart_rate").0, 0);
        assert_eq!(err_at("spo2 and hr").0, 9); // unknown metric first
        assert_eq!(err_at("frob(spo2) > 1").0, 0);
        assert_eq!(err_at("").1, "empty expression");
        assert_eq!(err_at("(spo2 < 90").0, 10);
        assert_eq!(err_at("spo2 < 90 spo2").0, 10);
    }

    #[test]
    fn printed_trees_have_every_operation_in_parentheses() {
        for (src, printed) in [
            (
                "not spo2 < 90 and heart_rate + 1 * 2 > 100 or alarm(\"occlusion\")",
                "(((not (spo2 < 90)) and ((heart_rate + (1 * 2)) > 100)) or alarm(\"occlusion\"))",
            ),
            (
                "-avg(spo2, 1.50m) <= -.5",
                "((-avg(spo2, 1.50m)) <= (-0.5))",
            ),
            (
                "alarm('say \"hi\"', \"pump\")",
                "alarm('say \"hi\"', \"pump\")",
            ),
            ("(a < b) < c", "((a < b) < c)"),
        ] {
            assert_eq!(parse_expression(src), Ok(printed.to_owned()), "{src}");
            assert_eq!(parse_expression(printed), Ok(printed.to_owned()), "{src}");
        }
    }

    /// Found while writing the `rule_expression` fuzz target (by reading the
    /// parser; the campaign's inputs stay below 4 KiB and did not get there):
    /// the parser, the compiler and `Drop` recursed once per level without
    /// a limit, so a deep expression overflowed the stack and aborted the
    /// process (`wardgate check-config` included) instead of naming the rule.
    #[test]
    fn deep_expressions_are_errors_not_stack_overflows() {
        let n = 100_000;
        for src in [
            format!("{}1 < 2", "-".repeat(n)),
            format!("{}1 < 2", "not ".repeat(n)),
            format!("{}1 < 2{}", "(".repeat(n), ")".repeat(n)),
            format!("1{} < 2", " + 1".repeat(n)),
            format!("{}1{} < 2", "abs(".repeat(n), ")".repeat(n)),
        ] {
            let (_, message) = err_at(&src);
            assert!(message.contains("nested too deeply"), "{message}");
        }
        // MAX_DEPTH levels are fine, one more is not: `1 + 1 + ... < 2` is a
        // comparison over a chain of additions, a level per `+`.
        let chain = |adds: usize| format!("1{} < 2", " + 1".repeat(adds));
        assert!(cond(&chain(MAX_DEPTH - 2)).is_ok());
        let (at, message) = err_at(&chain(MAX_DEPTH - 1));
        assert!(message.contains("at most 100 levels"), "{message}");
        assert_eq!(at, 0);
        // Redundant parentheses add no level to the tree, only nesting.
        let parens = format!("{}spo2{} < 90", "(".repeat(300), ")".repeat(300));
        assert!(cond(&parens).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,40}") {
            let _ = cond(&s);
        }

        #[test]
        fn never_panics_on_token_soup(parts in proptest::collection::vec(
            proptest::sample::select(vec!["spo2", "(", ")", "<", "and", "not", "1", "5m", "avg", ",", "\"x\"", "-", "*", "news2", "param"]), 0..12)) {
            let _ = cond(&parts.join(" "));
        }
    }
}
