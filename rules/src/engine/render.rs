//! Alert messages: a rule's message template filled in with the subject's
//! values, parameters, NEWS2 and the device that explains the alert. A value
//! that is not known is said in words, never as `?`.

use wardgate_model::Timestamp;

use super::Engine;
use super::evaluator::Cause;
use crate::expr::Piece;

impl Engine {
    pub(super) fn render(
        &self,
        si: usize,
        now: Timestamp,
        pieces: &[Piece],
        cause: &Cause,
    ) -> String {
        use std::fmt::Write;
        let s = &self.subjects[si];
        let mut out = String::new();
        let num = |out: &mut String, v: Option<f64>, unknown: &dyn Fn(&mut String)| match v {
            Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
                let _ = write!(out, "{}", v as i64);
            }
            Some(v) => {
                let _ = write!(out, "{}", (v * 10.0).round() / 10.0);
            }
            None => unknown(out),
        };
        // A value that is truly unknown is said in words, never as `?`.
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Metric(slot) => num(&mut out, s.latest[*slot as usize].map(|l| l.1), &|o| {
                    let name = self.rules.slots.metrics[*slot as usize].display_name();
                    let _ = write!(o, "({name} not measured)");
                }),
                Piece::Param(i) => num(
                    &mut out,
                    Some(s.params[*i as usize]).filter(|v| v.is_finite()),
                    &|o| {
                        let _ = write!(o, "({} not set)", self.rules.params[*i as usize].name);
                    },
                ),
                Piece::News2 => num(
                    &mut out,
                    self.news2_score(si, now).map(|n| f64::from(n.aggregate())),
                    &|o| o.push_str("(NEWS2 not available)"),
                ),
                Piece::Pulse => num(&mut out, self.pulse(si), &|o| {
                    o.push_str("(pulse not measured)");
                }),
                Piece::Device => {
                    out.push_str(
                        cause
                            .device
                            .as_ref()
                            .map_or("an unknown device", |d| d.id.as_str()),
                    );
                }
                Piece::Detail => {
                    out.push_str(cause.detail.as_deref().unwrap_or("(no details given)"));
                }
            }
        }
        out
    }
}
