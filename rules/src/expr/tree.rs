//! The compiled form: the typed expression tree the engine evaluates, its
//! operators, what it reads ([`Deps`]), and the compiler from the syntax
//! tree that resolves names and checks types.

use std::fmt;

use chrono::TimeDelta;
use wardgate_model::{DeviceId, DeviceKind, Metric, MetricRegistry};

use super::parser::{Ast, BinOp, parse};
use super::{ExprError, Result};
use crate::window::WindowFn;

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
    pub(super) fn as_str(self) -> &'static str {
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
