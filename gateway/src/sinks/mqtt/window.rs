//! The MQTT sink's in-flight window as a state machine (sans-IO): which
//! publishes await their PUBACK, whether there is room for more, and which
//! spool batches are confirmed. The async shell in `mod.rs` feeds it the
//! connection's events and applies what it asks for; no I/O, no clock.
//!
//! rumqttc reports the packet id it gave each publish (`Outgoing::Publish`)
//! in the order the publishes were queued, so the window keeps that order
//! (`awaiting`) and maps packet ids to batches (`inflight`). A packet id it
//! already holds is a retransmission after a reconnect, not a new publish.
//! A batch is confirmed when every one of its messages was acknowledged, and
//! handed out ([`Window::poll_ack`]) only when every earlier batch of its
//! lane is confirmed too: the cursor moves over a contiguous prefix only.
//! Lanes do not wait for each other (an alert is never held up behind
//! telemetry).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::spool::Lane;

/// What a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Part of batch `n`.
    Part(u64),
    /// Gateway status and other messages outside the spool.
    Control,
}

/// A spool batch whose messages are out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub lane: Lane,
    pub after: u64,
    pub last: u64,
    pub records: u64,
}

#[derive(Debug)]
struct Pending {
    batch: Confirmed,
    remaining: usize,
}

/// What the shell must do after the broker's CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The session survived: rumqttc sends again what it held.
    Continue,
    /// The broker lost the session: everything unconfirmed must be read
    /// from the spool again (rewind the reader to its cursor).
    Rewind,
}

/// Publishes awaiting PUBACK, bounded.
#[derive(Debug)]
pub struct Window {
    capacity: usize,
    connected: bool,
    awaiting: VecDeque<Slot>,
    inflight: HashMap<u16, Slot>,
    batches: BTreeMap<u64, Pending>,
    next: u64,
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            connected: false,
            awaiting: VecDeque::new(),
            inflight: HashMap::new(),
            batches: BTreeMap::new(),
            next: 0,
        }
    }

    /// The broker accepted the connection.
    pub fn handle_connected(&mut self, session_present: bool) -> Resume {
        self.connected = true;
        if session_present {
            return Resume::Continue;
        }
        self.awaiting.clear();
        self.inflight.clear();
        self.batches.clear();
        Resume::Rewind
    }

    /// The connection is lost (rumqttc keeps what it held for the next one).
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
    }

    /// The messages of one spool batch were queued, in order.
    pub fn handle_batch(&mut self, batch: Confirmed, messages: usize) {
        let id = self.next;
        self.next += 1;
        self.awaiting
            .extend(std::iter::repeat_n(Slot::Part(id), messages));
        self.batches.insert(
            id,
            Pending {
                batch,
                remaining: messages,
            },
        );
    }

    /// A message outside the spool was queued (the `online` status).
    pub fn handle_control(&mut self) {
        self.awaiting.push_back(Slot::Control);
    }

    /// rumqttc wrote a publish with this packet id.
    pub fn handle_published(&mut self, pkid: u16) {
        if !self.inflight.contains_key(&pkid)
            && let Some(slot) = self.awaiting.pop_front()
        {
            self.inflight.insert(pkid, slot);
        }
    }

    /// The broker acknowledged this packet id (a duplicate is ignored).
    pub fn handle_puback(&mut self, pkid: u16) {
        if let Some(Slot::Part(id)) = self.inflight.remove(&pkid)
            && let Some(p) = self.batches.get_mut(&id)
        {
            p.remaining = p.remaining.saturating_sub(1);
        }
    }

    /// The next batch to acknowledge in the spool: fully confirmed, and
    /// every earlier batch of its lane too.
    pub fn poll_ack(&mut self) -> Option<Confirmed> {
        let mut blocked = [false; 2];
        let mut ready = None;
        for (id, p) in &self.batches {
            let lane = usize::from(p.batch.lane == Lane::Telemetry);
            if blocked[lane] {
                continue;
            }
            if p.remaining == 0 {
                ready = Some(*id);
                break;
            }
            blocked[lane] = true;
        }
        self.batches.remove(&ready?).map(|p| p.batch)
    }

    /// Whether more may be published now.
    pub fn has_room(&self) -> bool {
        self.connected && self.awaiting.len() + self.inflight.len() < self.capacity
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether no spool batch awaits confirmation.
    pub fn is_settled(&self) -> bool {
        self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lane: Lane, after: u64, last: u64) -> Confirmed {
        Confirmed {
            lane,
            after,
            last,
            records: last - after,
        }
    }

    /// A connected window with batches of one message each, published as
    /// packet ids 1, 2, ...
    fn window(batches: &[Confirmed]) -> Window {
        let mut w = Window::new(8);
        assert_eq!(w.handle_connected(false), Resume::Rewind);
        for (i, b) in batches.iter().enumerate() {
            w.handle_batch(*b, 1);
            w.handle_published(u16::try_from(i + 1).unwrap());
        }
        w
    }

    fn acks(w: &mut Window) -> Vec<Confirmed> {
        std::iter::from_fn(|| w.poll_ack()).collect()
    }

    #[test]
    fn out_of_order_pubacks_move_the_cursor_over_the_contiguous_prefix_only() {
        let (b1, b2, b3) = (
            batch(Lane::Telemetry, 0, 5),
            batch(Lane::Telemetry, 5, 9),
            batch(Lane::Telemetry, 9, 12),
        );
        let mut w = window(&[b1, b2, b3]);
        w.handle_puback(3);
        w.handle_puback(2);
        assert_eq!(acks(&mut w), []);
        w.handle_puback(1);
        assert_eq!(acks(&mut w), [b1, b2, b3]);
        assert!(w.is_settled());
    }

    #[test]
    fn an_alert_is_not_held_up_behind_telemetry() {
        let (t, a) = (batch(Lane::Telemetry, 0, 5), batch(Lane::Alert, 0, 1));
        let mut w = window(&[t, a]);
        w.handle_puback(2);
        assert_eq!(acks(&mut w), [a]);
        w.handle_puback(1);
        assert_eq!(acks(&mut w), [t]);
    }

    #[test]
    fn a_batch_waits_for_every_one_of_its_messages_and_duplicates_are_ignored() {
        let b = batch(Lane::Alert, 0, 2);
        let mut w = Window::new(8);
        w.handle_connected(false);
        w.handle_batch(b, 2);
        w.handle_published(7);
        w.handle_published(8);
        w.handle_puback(7);
        w.handle_puback(7);
        assert_eq!(acks(&mut w), []);
        w.handle_puback(8);
        assert_eq!(acks(&mut w), [b]);
        w.handle_puback(8);
        assert_eq!(acks(&mut w), []);
    }

    #[test]
    fn a_reconnect_with_the_session_retransmits_without_new_slots() {
        let b = batch(Lane::Telemetry, 0, 3);
        let mut w = window(&[b]);
        w.handle_disconnected();
        assert!(!w.has_room());
        assert_eq!(w.handle_connected(true), Resume::Continue);
        w.handle_control();
        // rumqttc sends packet 1 again, then the status as packet 2.
        w.handle_published(1);
        w.handle_published(2);
        w.handle_puback(2);
        assert_eq!(acks(&mut w), []);
        w.handle_puback(1);
        assert_eq!(acks(&mut w), [b]);
    }

    #[test]
    fn a_lost_session_forgets_the_window_and_asks_for_a_rewind() {
        let mut w = window(&[batch(Lane::Telemetry, 0, 3), batch(Lane::Alert, 0, 1)]);
        w.handle_disconnected();
        assert_eq!(w.handle_connected(false), Resume::Rewind);
        assert!(w.is_settled());
        // A late PUBACK of the old session confirms nothing.
        w.handle_puback(1);
        assert_eq!(acks(&mut w), []);
    }

    #[test]
    fn a_full_window_has_no_room_until_a_puback() {
        let mut w = Window::new(2);
        assert!(!w.has_room(), "not before the connection");
        w.handle_connected(false);
        w.handle_batch(batch(Lane::Telemetry, 0, 1), 1);
        assert!(w.has_room());
        w.handle_control();
        assert!(!w.has_room());
        w.handle_published(1);
        w.handle_published(2);
        assert!(!w.has_room());
        w.handle_puback(2);
        assert!(w.has_room());
    }
}
