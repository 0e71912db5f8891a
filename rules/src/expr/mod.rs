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
//!
//! `lexer` (text → tokens with byte offsets), `parser` (tokens → syntax tree,
//! depth-bounded), `tree` (the typed tree the engine evaluates, compiled
//! from the syntax tree with its names resolved and its type checked, and
//! what it reads) and `template` (alert message templates). Evaluation of a
//! compiled tree is the engine's (`engine/evaluator.rs`): it reads the
//! engine's per-subject state.

mod lexer;
mod parser;
mod template;
mod tree;

pub use parser::parse_expression;
pub(crate) use template::{Piece, compile_template};
pub(crate) use tree::{ArOp, CmpOp, Deps, Expr, Resolve, Slot, SlotTable, compile_condition};

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

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use wardgate_model::MetricRegistry;

    use super::parser::MAX_DEPTH;
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
