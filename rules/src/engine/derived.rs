//! Derived readings: NEWS2 from the latest fresh values of its inputs, a
//! `news2_score` reading whenever it changes, and the rules that read it.

use wardgate_model::{Event, Metric, Reading, TimeSource, Timestamp};

use super::Engine;
use crate::expr::Slot;
use crate::news2::{self, News2Inputs};

#[derive(Clone, Copy, Debug)]
pub(super) struct News2Slots {
    pub(super) rr: Slot,
    pub(super) spo2: Slot,
    pub(super) o2: Slot,
    pub(super) sys: Slot,
    pub(super) hr: Slot,
    pub(super) pr: Slot,
    pub(super) cons: Slot,
    pub(super) temp: Slot,
}

impl Engine {
    pub(super) fn news2_inputs(&self, si: usize, now: i64) -> Option<News2Inputs> {
        let s = &self.subjects[si];
        let freshness = self
            .opts
            .news2_freshness
            .num_nanoseconds()
            .unwrap_or(i64::MAX);
        let fresh = |slot: Slot| -> Option<(i64, f64)> {
            let (t, v) = s.latest[slot as usize]?;
            (now.saturating_sub(t) <= freshness).then_some((t, v))
        };
        let n = &self.n2;
        let pulse = match (fresh(n.hr), fresh(n.pr)) {
            (Some(h), Some(p)) => Some(if p.0 > h.0 { p.1 } else { h.1 }),
            (h, p) => h.or(p).map(|x| x.1),
        };
        Some(News2Inputs {
            resp_rate: fresh(n.rr)?.1,
            spo2: fresh(n.spo2)?.1,
            on_oxygen: fresh(n.o2)?.1 > 0.0,
            bp_systolic: fresh(n.sys)?.1,
            pulse: pulse?,
            consciousness: fresh(n.cons)?.1,
            temperature: fresh(n.temp)?.1,
        })
    }

    /// Pulse: the more recent of heart_rate and pulse_rate.
    pub(super) fn pulse(&self, si: usize) -> Option<f64> {
        let s = &self.subjects[si];
        match (s.latest[self.n2.hr as usize], s.latest[self.n2.pr as usize]) {
            (Some(h), Some(p)) => Some(if p.0 > h.0 { p.1 } else { h.1 }),
            (h, p) => h.or(p).map(|x| x.1),
        }
    }

    pub(super) fn news2_score(&self, si: usize, now: Timestamp) -> Option<news2::News2Score> {
        let now = self.ns(now);
        let cache = &self.subjects[si].news2_cache;
        if let Some((t, score)) = cache.get()
            && t == now
        {
            return score;
        }
        let score = self
            .news2_inputs(si, now)
            .map(|i| news2::score(&i, self.subjects[si].profile.spo2_scale));
        cache.set(Some((now, score)));
        score
    }

    pub(super) fn update_news2(&mut self, now: Timestamp, si: usize, out: &mut Vec<Event>) {
        let Some(inputs) = self.news2_inputs(si, self.ns(now)) else {
            self.subjects[si].news2_last = None;
            return;
        };
        let full = news2::score(&inputs, self.subjects[si].profile.spo2_scale);
        self.subjects[si]
            .news2_cache
            .set(Some((self.ns(now), Some(full))));
        let score = full.aggregate();
        let s = &mut self.subjects[si];
        if s.news2_last == Some((inputs, score)) {
            return;
        }
        s.news2_last = Some((inputs, score));
        let id = s.id.clone();
        if let Ok(r) = Reading::new(
            now,
            TimeSource::Gateway,
            id,
            None,
            Metric::News2Score,
            f64::from(score),
        ) {
            out.push(Event::Reading(r));
        }
        if let Some(slot) = self.news2_score_slot {
            self.store(si, slot, self.ns(now), f64::from(score), None);
            for k in 0..self.by_slot[slot as usize].len() {
                let ri = self.by_slot[slot as usize][k] as usize;
                self.evaluate(now, si, ri, out);
            }
        }
    }
}
