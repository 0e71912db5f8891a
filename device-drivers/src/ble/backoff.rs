//! Reconnect backoff: capped exponential with jitter, as a sans-IO state
//! machine. The driver hands in the time and a random sample; this module
//! never reads a clock or a random source, so tests are exact.

use std::time::Duration;

use tokio::time::Instant;

/// Delay before reconnect attempt `n` (0-based) is `min(max, initial × 2ⁿ)`,
/// scaled by a jitter factor in `[0.5, 1.0]` ("equal jitter"): never above
/// the cap, never below half the step, and devices dropped together do not
/// reconnect together. A link that stayed up for at least `max` counts as
/// healthy and resets the sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    connected_at: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            connected_at: None,
        }
    }

    /// The link came up at `now`.
    pub fn handle_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The link went down (or never came up) at `now`.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if let Some(since) = self.connected_at.take()
            && now.saturating_duration_since(since) >= self.max
        {
            self.attempt = 0;
        }
    }

    /// The delay before the next attempt; `jitter` is a uniform sample in `[0, 1)`.
    pub fn poll_delay(&mut self, jitter: f64) -> Duration {
        let step = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(31))
            .min(self.max);
        if step < self.max {
            self.attempt += 1;
        }
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_up_to_the_cap_and_jitter_stays_within_half() {
        let mut b = Backoff::new(S, 10 * S);
        // jitter 1.0 → the full step: 1, 2, 4, 8, then capped at 10
        let full: Vec<_> = (0..6).map(|_| b.poll_delay(1.0)).collect();
        assert_eq!(full, [S, 2 * S, 4 * S, 8 * S, 10 * S, 10 * S]);
        // jitter 0 → half the (capped) step
        assert_eq!(b.poll_delay(0.0), 5 * S);
    }

    #[test]
    fn a_long_healthy_link_resets_a_short_one_does_not() {
        let t0 = Instant::now();
        let mut b = Backoff::new(S, 8 * S);
        for _ in 0..3 {
            b.poll_delay(1.0);
        }
        b.handle_connected(t0);
        b.handle_disconnected(t0 + 2 * S);
        assert_eq!(b.poll_delay(1.0), 8 * S);
        b.handle_connected(t0 + 20 * S);
        b.handle_disconnected(t0 + 28 * S);
        assert_eq!(b.poll_delay(1.0), S);
    }
}
