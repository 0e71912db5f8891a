//! The parameter scores behind a `news2_score` reading, recovered from the
//! stream: the rules engine commits a subject's vital signs before the score
//! they produce, so the latest values seen are the ones it scored. The
//! recovered scores are used only when they add up to the reading's value;
//! otherwise (after a restart, before every input was seen again) the
//! Observation carries the total alone.

use std::collections::HashMap;

use wardgate_model::{Metric, Reading, Spo2Scale, SubjectId, Timestamp};
use wardgate_rules::news2::{self, News2Inputs, News2Score};

#[derive(Debug, Default, Clone, Copy)]
struct Latest {
    resp_rate: Option<f64>,
    spo2: Option<f64>,
    o2_flow: Option<f64>,
    bp_systolic: Option<f64>,
    /// Pulse: the more recent of heart rate and pulse rate.
    pulse: Option<(Timestamp, f64)>,
    consciousness: Option<f64>,
    temperature: Option<f64>,
}

/// The latest NEWS2 inputs per subject.
#[derive(Debug, Default)]
pub(super) struct News2Tracker {
    latest: HashMap<SubjectId, Latest>,
}

impl News2Tracker {
    /// Any reading of the stream, in order.
    pub(super) fn handle_reading(&mut self, r: &Reading) {
        use Metric::{
            BodyTemp, BpSystolic, Consciousness, HeartRate, O2Flow, PulseRate, RespRate, Spo2,
        };
        if !matches!(
            r.metric,
            RespRate
                | Spo2
                | O2Flow
                | BpSystolic
                | HeartRate
                | PulseRate
                | Consciousness
                | BodyTemp
        ) {
            return;
        }
        let l = self.latest.entry(r.subject.clone()).or_default();
        let v = Some(r.value);
        match r.metric {
            RespRate => l.resp_rate = v,
            Spo2 => l.spo2 = v,
            O2Flow => l.o2_flow = v,
            BpSystolic => l.bp_systolic = v,
            Consciousness => l.consciousness = v,
            BodyTemp => l.temperature = v,
            _ if l.pulse.is_none_or(|(t, _)| r.at >= t) => l.pulse = Some((r.at, r.value)),
            _ => {}
        }
    }

    /// The parameter scores of `score` (a `news2_score` reading), when the
    /// inputs seen add up to it.
    pub(super) fn parameters(&self, score: &Reading, scale: Spo2Scale) -> Option<News2Score> {
        let l = self.latest.get(&score.subject)?;
        let inputs = News2Inputs {
            resp_rate: l.resp_rate?,
            spo2: l.spo2?,
            on_oxygen: l.o2_flow? > 0.0,
            bp_systolic: l.bp_systolic?,
            pulse: l.pulse?.1,
            consciousness: l.consciousness?,
            temperature: l.temperature?,
        };
        let p = news2::score(&inputs, scale);
        (f64::from(p.aggregate()) == score.value).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wardgate_model::TimeSource;

    fn r(metric: Metric, s: i64, value: f64) -> Reading {
        let at = chrono::Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
        Reading::new(at, TimeSource::Gateway, "bed-1".into(), None, metric, value).unwrap()
    }

    #[test]
    fn scores_add_up_to_the_reading_or_are_left_out() {
        let mut t = News2Tracker::default();
        let score = r(Metric::News2Score, 9, 0.0);
        assert_eq!(t.parameters(&score, Spo2Scale::Scale1), None);
        // All normal: aggregate 0.
        for (m, v) in [
            (Metric::RespRate, 16.0),
            (Metric::Spo2, 97.0),
            (Metric::O2Flow, 0.0),
            (Metric::BpSystolic, 120.0),
            (Metric::PulseRate, 120.0),
            (Metric::Consciousness, 0.0),
            (Metric::BodyTemp, 37.0),
        ] {
            t.handle_reading(&r(m, 1, v));
        }
        // The heart rate is more recent than the pulse rate of 120 (score 2).
        t.handle_reading(&r(Metric::HeartRate, 2, 70.0));
        let p = t.parameters(&score, Spo2Scale::Scale1).unwrap();
        assert_eq!((p.aggregate(), p.pulse), (0, 0));
        // A score the inputs seen do not explain carries no parameters.
        assert_eq!(
            t.parameters(&r(Metric::News2Score, 9, 3.0), Spo2Scale::Scale1),
            None
        );
    }
}
