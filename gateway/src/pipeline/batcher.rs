//! The commit batcher as a state machine (sans-IO): what the rules stage
//! has produced and when it must be committed. Alert transitions are
//! committed at once, in a batch of their own; telemetry is gathered for at
//! most `flush_interval` after its first event, or until `max` events wait,
//! or until a driver asks for a commit ([`Batcher::handle_commit_request`]),
//! or until the stage closes. The shell (`process`) gives it the time and
//! commits what [`Batcher::poll_commit`] hands out; it never reads the
//! clock itself.

use std::time::Duration;

use tokio::time::Instant;
use wardgate_model::Event;

/// A batch to commit now, in one transaction.
#[derive(Debug, PartialEq)]
pub(super) enum Commit {
    Alerts(Vec<Event>),
    Telemetry(Vec<Event>),
}

#[derive(Debug)]
pub(super) struct Batcher {
    flush_interval: Duration,
    max: usize,
    alerts: Vec<Event>,
    telemetry: Vec<Event>,
    /// When the telemetry waiting must be committed at the latest.
    due: Option<Instant>,
    /// A driver waits for everything so far to be committed.
    forced: bool,
    closed: bool,
}

impl Batcher {
    pub(super) fn new(flush_interval: Duration, max: usize) -> Self {
        Self {
            flush_interval,
            max,
            alerts: Vec::new(),
            telemetry: Vec::with_capacity(max * 2),
            due: None,
            forced: false,
            closed: false,
        }
    }

    /// Takes what the rules stage produced at `now`: alert transitions for
    /// a batch of their own, the rest into the waiting telemetry.
    pub(super) fn handle_events(&mut self, now: Instant, events: &mut Vec<Event>) {
        for e in events.drain(..) {
            if matches!(e, Event::Alert(_)) {
                self.alerts.push(e);
            } else {
                self.telemetry.push(e);
            }
        }
        if !self.telemetry.is_empty() && self.due.is_none() {
            self.due = Some(now + self.flush_interval);
        }
    }

    /// A driver asked for everything taken so far to be committed now.
    pub(super) fn handle_commit_request(&mut self) {
        self.forced = true;
    }

    /// Nothing more will come: commit what waits.
    pub(super) fn handle_closed(&mut self) {
        self.closed = true;
    }

    /// The next batch to commit at `now`, alerts first; `None` when nothing
    /// is due (then every commit request so far is satisfied).
    pub(super) fn poll_commit(&mut self, now: Instant) -> Option<Commit> {
        if !self.alerts.is_empty() {
            return Some(Commit::Alerts(std::mem::take(&mut self.alerts)));
        }
        let due = self.closed
            || self.forced
            || self.telemetry.len() >= self.max
            || self.due.is_some_and(|d| now >= d);
        if due && !self.telemetry.is_empty() {
            self.due = None;
            let full = std::mem::replace(&mut self.telemetry, Vec::with_capacity(self.max * 2));
            return Some(Commit::Telemetry(full));
        }
        self.forced = false;
        None
    }

    /// When telemetry waiting must be committed at the latest.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::tests::{alert, reading};

    const FLUSH: Duration = Duration::from_millis(100);

    fn commits(b: &mut Batcher, now: Instant) -> Vec<Commit> {
        std::iter::from_fn(|| b.poll_commit(now)).collect()
    }

    #[test]
    fn telemetry_waits_for_the_flush_deadline_of_its_first_event() {
        let t0 = Instant::now();
        let mut b = Batcher::new(FLUSH, 10);
        b.handle_events(t0, &mut vec![reading(1.0)]);
        assert_eq!(b.poll_timeout(), Some(t0 + FLUSH));
        b.handle_events(t0 + FLUSH / 2, &mut vec![reading(2.0)]);
        assert_eq!(b.poll_timeout(), Some(t0 + FLUSH), "not pushed back");
        assert_eq!(commits(&mut b, t0 + FLUSH / 2), []);
        assert_eq!(
            commits(&mut b, t0 + FLUSH),
            [Commit::Telemetry(vec![reading(1.0), reading(2.0)])]
        );
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn an_alert_bypasses_the_waiting_telemetry() {
        let t0 = Instant::now();
        let mut b = Batcher::new(FLUSH, 10);
        b.handle_events(t0, &mut vec![reading(1.0), alert(1), reading(2.0)]);
        assert_eq!(commits(&mut b, t0), [Commit::Alerts(vec![alert(1)])]);
        assert_eq!(b.poll_timeout(), Some(t0 + FLUSH));
    }

    #[test]
    fn a_full_batch_is_committed_at_once() {
        let t0 = Instant::now();
        let mut b = Batcher::new(FLUSH, 2);
        b.handle_events(t0, &mut vec![reading(1.0)]);
        assert_eq!(commits(&mut b, t0), []);
        b.handle_events(t0, &mut vec![reading(2.0), reading(3.0)]);
        assert_eq!(
            commits(&mut b, t0),
            [Commit::Telemetry(vec![
                reading(1.0),
                reading(2.0),
                reading(3.0)
            ])]
        );
    }

    #[test]
    fn a_commit_request_forces_a_flush_once() {
        let t0 = Instant::now();
        let mut b = Batcher::new(FLUSH, 10);
        b.handle_events(t0, &mut vec![reading(1.0)]);
        b.handle_commit_request();
        assert_eq!(commits(&mut b, t0), [Commit::Telemetry(vec![reading(1.0)])]);
        // Satisfied: later telemetry waits for its deadline again.
        b.handle_events(t0, &mut vec![reading(2.0)]);
        assert_eq!(commits(&mut b, t0), []);
        // A request with nothing waiting is satisfied at once.
        b.handle_commit_request();
        let mut empty = Batcher::new(FLUSH, 10);
        empty.handle_commit_request();
        assert_eq!(commits(&mut empty, t0), []);
    }

    #[test]
    fn closing_commits_what_waits() {
        let t0 = Instant::now();
        let mut b = Batcher::new(FLUSH, 10);
        b.handle_events(t0, &mut vec![reading(1.0), alert(1)]);
        b.handle_closed();
        assert_eq!(
            commits(&mut b, t0),
            [
                Commit::Alerts(vec![alert(1)]),
                Commit::Telemetry(vec![reading(1.0)])
            ]
        );
    }
}
