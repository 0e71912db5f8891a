//! The evaluator: a rule's expressions over one subject's state at one
//! instant, and which device explains a condition that holds.

use std::sync::Arc;

use wardgate_model::{DeviceRef, Timestamp};

use super::Engine;
use super::index::SubjectState;
use crate::expr::{ArOp, CmpOp, Expr, Slot};

/// Evaluation of one rule for one subject at one instant.
pub(super) struct Ctx<'a> {
    pub(super) engine: &'a Engine,
    pub(super) si: usize,
    pub(super) now: Timestamp,
    pub(super) now_ns: i64,
    /// What explains the alert's device: the first metric read, or the alarm
    /// or offline device that made the condition true. Indices, not clones,
    /// to keep evaluation allocation- and refcount-free.
    pub(super) device: Option<Hint>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Hint {
    Slot(Slot),
    Alarm(usize),
    Offline(usize),
}

impl Hint {
    pub(super) fn cause(self, s: &SubjectState) -> Cause {
        match self {
            Hint::Slot(slot) => Cause {
                device: s.latest_device[slot as usize].clone(),
                detail: None,
            },
            Hint::Alarm(i) => Cause {
                device: s.alarms.get(i).map(|a| a.0.clone()),
                detail: s.alarms.get(i).and_then(|a| a.2.clone()),
            },
            Hint::Offline(i) => Cause {
                device: s.offline.get(i).cloned(),
                detail: None,
            },
        }
    }
}

/// What explains an alert: the device, and what it said of the condition
/// (a device alarm's detail, for `{detail}` in messages).
#[derive(Clone, Debug, Default)]
pub(super) struct Cause {
    pub(super) device: Option<DeviceRef>,
    pub(super) detail: Option<Arc<str>>,
}

/// Seconds from `then` to `now` (0 when `then` lies ahead: a device clock
/// slightly fast must not make an age negative).
fn secs(now: i64, then: i64) -> f64 {
    now.saturating_sub(then).max(0) as f64 / 1e9
}

impl Ctx<'_> {
    fn subject(&self) -> &SubjectState {
        &self.engine.subjects[self.si]
    }

    pub(super) fn num(&mut self, e: &Expr) -> Option<f64> {
        let v = match e {
            Expr::Num(n) => *n,
            Expr::Latest(s) => {
                let v = self.subject().latest[*s as usize]?.1;
                if self.device.is_none() {
                    self.device = Some(Hint::Slot(*s));
                }
                v
            }
            Expr::Param(i) => self.subject().params[*i as usize],
            Expr::Neg(a) => -self.num(a)?,
            Expr::Abs(a) => self.num(a)?.abs(),
            Expr::Arith(op, a, b) => {
                let (a, b) = (self.num(a)?, self.num(b)?);
                match op {
                    ArOp::Add => a + b,
                    ArOp::Sub => a - b,
                    ArOp::Mul => a * b,
                    ArOp::Div => a / b,
                }
            }
            Expr::Window(f, s, span) => self.subject().windows[*s as usize].as_ref().map_or(
                if *f == crate::window::WindowFn::Count {
                    Some(0.0)
                } else {
                    None
                },
                |w| w.eval(*f, self.now_ns, *span),
            )?,
            Expr::Age(s) => secs(self.now_ns, self.subject().latest[*s as usize]?.0),
            Expr::DataAge => secs(self.now_ns, self.subject().last_data?),
            Expr::Pulse => self.engine.pulse(self.si)?,
            Expr::News2 => f64::from(self.engine.news2_score(self.si, self.now)?.aggregate()),
            Expr::News2Max => f64::from(self.engine.news2_score(self.si, self.now)?.max_single()),
            _ => return None,
        };
        v.is_finite().then_some(v)
    }

    pub(super) fn cond(&mut self, e: &Expr) -> bool {
        match e {
            Expr::Cmp(op, a, b) => {
                let (Some(a), Some(b)) = (self.num(a), self.num(b)) else {
                    return false;
                };
                match op {
                    CmpOp::Lt => a < b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    CmpOp::Ge => a >= b,
                    CmpOp::Eq => a == b,
                    CmpOp::Ne => a != b,
                }
            }
            Expr::And(a, b) => self.cond(a) && self.cond(b),
            Expr::Or(a, b) => self.cond(a) || self.cond(b),
            Expr::Not(a) => {
                // Device hints found under a `not` do not explain the alert.
                let saved = self.device.take();
                let v = !self.cond(a);
                self.device = saved;
                v
            }
            Expr::ParamSet(i) => self.subject().params[*i as usize].is_finite(),
            Expr::Alarm { code, kind } => {
                let hit = self.subject().alarms.iter().position(|(dev, c, _)| {
                    kind.is_none_or(|k| dev.kind == k)
                        && (**c == **code
                            || (c.len() > code.len()
                                && c.starts_with(&**code)
                                && c.as_bytes()[code.len()] == b'_'))
                });
                match hit {
                    Some(i) => {
                        self.device = Some(Hint::Alarm(i));
                        true
                    }
                    None => false,
                }
            }
            Expr::DeviceOffline(id) => {
                let hit = self
                    .subject()
                    .offline
                    .iter()
                    .position(|d| id.as_ref().is_none_or(|id| d.id == *id));
                match hit {
                    Some(i) => {
                        self.device = Some(Hint::Offline(i));
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }
}
