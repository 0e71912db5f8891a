//! Bounded per-(subject, metric) sample windows for `avg`, `min`, `max`,
//! `count`, `rise` and `fall`. A window keeps at most [`MAX_SAMPLES`] samples
//! and none older than the longest window any rule asks for; when a sensor
//! reports faster than that, the oldest samples are dropped first (the window
//! then covers less time than asked, which the docs state).

use std::collections::VecDeque;

/// Upper bound on samples kept per (subject, metric) window.
pub const MAX_SAMPLES: usize = 2048;

/// The window functions of the rule language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowFn {
    Avg,
    Min,
    Max,
    Count,
    /// latest − min in the window
    Rise,
    /// max − latest in the window
    Fall,
}

impl WindowFn {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "count" => Self::Count,
            "rise" => Self::Rise,
            "fall" => Self::Fall,
            _ => return None,
        })
    }
}

/// Samples of one metric for one subject, oldest first. Times are Unix
/// nanoseconds: chrono arithmetic is too slow for the per-reading path.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    span: i64,
    samples: VecDeque<(i64, f64)>,
}

impl Window {
    pub(crate) fn new(span: i64) -> Self {
        Self {
            span,
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample and forgets what no rule can look at any more.
    pub(crate) fn push(&mut self, at: i64, value: f64) {
        // Out-of-order samples are inserted in place so the window stays sorted.
        let pos = self.samples.partition_point(|s| s.0 <= at);
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        let pos = pos.min(self.samples.len());
        self.samples.insert(pos, (at, value));
        let newest = self.samples.back().map_or(at, |s| s.0);
        while self
            .samples
            .front()
            .is_some_and(|s| s.0 < newest.saturating_sub(self.span))
        {
            self.samples.pop_front();
        }
    }

    /// Evaluates `f` over samples taken in `[now - span, now]`; `None` when no
    /// sample falls in it (except `count`, which is then 0).
    pub(crate) fn eval(&self, f: WindowFn, now: i64, span: i64) -> Option<f64> {
        let from = now.saturating_sub(span);
        let start = self.samples.partition_point(|s| s.0 < from);
        let end = self.samples.partition_point(|s| s.0 <= now);
        let slice = self.samples.range(start..end.max(start));
        let n = end.saturating_sub(start);
        if f == WindowFn::Count {
            return Some(n as f64);
        }
        if n == 0 {
            return None;
        }
        let latest = self.samples[end - 1].1;
        let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
        for &(_, v) in slice {
            lo = lo.min(v);
            hi = hi.max(v);
            sum += v;
        }
        Some(match f {
            WindowFn::Avg => sum / n as f64,
            WindowFn::Min => lo,
            WindowFn::Max => hi,
            WindowFn::Rise => latest - lo,
            WindowFn::Fall => hi - latest,
            WindowFn::Count => n as f64,
        })
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<(i64, f64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn t(s: i64) -> i64 {
        (1_800_000_000 + s) * SEC
    }

    #[test]
    fn functions_over_a_window() {
        let mut w = Window::new(60 * SEC);
        for (s, v) in [(0, 90.0), (10, 86.0), (20, 95.0), (30, 91.0)] {
            w.push(t(s), v);
        }
        let span = 25 * SEC; // covers samples at 10, 20, 30 when now = 35
        assert_eq!(w.eval(WindowFn::Count, t(35), span), Some(3.0));
        assert_eq!(
            w.eval(WindowFn::Avg, t(35), span),
            Some((86.0 + 95.0 + 91.0) / 3.0)
        );
        assert_eq!(w.eval(WindowFn::Min, t(35), span), Some(86.0));
        assert_eq!(w.eval(WindowFn::Max, t(35), span), Some(95.0));
        assert_eq!(w.eval(WindowFn::Rise, t(35), span), Some(91.0 - 86.0));
        assert_eq!(w.eval(WindowFn::Fall, t(35), span), Some(95.0 - 91.0));
        // Long after the last sample: empty.
        assert_eq!(w.eval(WindowFn::Avg, t(1000), span), None);
        assert_eq!(w.eval(WindowFn::Count, t(1000), span), Some(0.0));
    }

    #[test]
    fn bounded_in_time_and_count() {
        let mut w = Window::new(10 * SEC);
        for s in 0..100 {
            w.push(t(s), s as f64);
        }
        // Only samples within 10 s of the newest (89..=99) remain.
        assert_eq!(w.samples.len(), 11);
        let mut w = Window::new(86_400 * SEC);
        for s in 0..(MAX_SAMPLES as i64 + 10) {
            w.push(t(s), 1.0);
        }
        assert_eq!(w.samples.len(), MAX_SAMPLES);
    }

    #[test]
    fn out_of_order_samples_stay_sorted() {
        let mut w = Window::new(100 * SEC);
        w.push(t(10), 1.0);
        w.push(t(5), 2.0);
        w.push(t(20), 3.0);
        assert_eq!(w.eval(WindowFn::Rise, t(20), 100 * SEC), Some(2.0));
        assert!(
            w.samples
                .iter()
                .zip(w.samples.iter().skip(1))
                .all(|(a, b)| a.0 <= b.0)
        );
    }
}
