//! A log budget: at most `burst` messages per `window`, the rest counted and
//! reported with the next message let through. A publisher flooding the
//! bridge with refused lines must not flood its log too. Pure: it is given
//! the time.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Throttle {
    burst: u32,
    window: Duration,
    started: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl Throttle {
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            started: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a message may be logged now, `n` being how many were
    /// held back since the last one logged; `None` when it must be held back.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .started
            .is_none_or(|s| now.duration_since(s) >= self.window)
        {
            self.started = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_the_count_of_what_was_held_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Throttle::new(2, Duration::from_secs(60));
        assert_eq!(t.admit(t0), Some(0));
        assert_eq!(t.admit(t0 + s), Some(0));
        assert_eq!(t.admit(t0 + 2 * s), None);
        assert_eq!(t.admit(t0 + 59 * s), None);
        // A new window: the first message reports the two held back.
        assert_eq!(t.admit(t0 + 60 * s), Some(2));
        assert_eq!(t.admit(t0 + 61 * s), Some(0));
        assert_eq!(t.admit(t0 + 62 * s), None);
    }
}
