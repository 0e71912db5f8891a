//! Writing a batch whose items the server may refuse one by one, shared by
//! the InfluxDB and FHIR sinks and `wardgate bridge` (an item is a line of
//! line protocol, or a FHIR resource of a transaction bundle).
//!
//! A refused request (any 4xx but 401, 403, 404 and 429: 400 for a bad line,
//! 413 for a body too large, 422 for a schema conflict) says nothing about
//! *which* of its lines are at fault, and one bad line must not cost the
//! others — in the bridge they may come from other gateways. So a refused
//! batch of more than one line is split in halves and each half written on
//! its own, in order, down to single lines; only a single line still refused
//! is given back to the caller, with the server's status and answer, for the
//! quarantine. Rewriting a half that the server partly stored is harmless:
//! same series, same timestamps.
//!
//! Cost: a batch with one bad line in `n` takes about `2·log2(n)` extra
//! requests; a batch whose every line is refused takes `2n - 1`.
//!
//! Invariant: every line ends up stored or returned as refused, or — when
//! stopping while the server fails — the caller is told nothing is settled
//! and keeps the whole batch (what was stored meanwhile is written again
//! later, which is harmless for the same reason).

use std::future::Future;
use std::ops::Range;

use super::retry::Delivery;

/// A line the server refused on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its index in the batch.
    pub index: usize,
    pub status: u16,
    /// The server's answer (cut to 1000 bytes).
    pub reason: String,
}

/// How a batch ended.
#[derive(Debug)]
pub enum Settled {
    /// Every line is stored except `refused`, in batch order.
    Done {
        refused: Vec<Refusal>,
        /// Requests refused as a whole and split.
        splits: u64,
    },
    /// Stopping while the server was failing: nothing is settled.
    Cancelled,
}

/// Writes `n` items by ranges through `write` (which retries as
/// [`super::Peer::until_done`] does), splitting refused requests until only
/// the refused items are left. `name` and `server` label the log.
pub async fn write_splitting<F, Fut>(name: &str, server: &str, n: usize, mut write: F) -> Settled
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Delivery>,
{
    let mut refused = Vec::new();
    let mut splits = 0u64;
    // Ranges still to write, the next one last.
    let mut todo: Vec<Range<usize>> = Vec::new();
    todo.push(0..n);
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match write(range.clone()).await {
            Delivery::Stored => {}
            Delivery::Cancelled => return Settled::Cancelled,
            Delivery::Rejected { status, body } if range.len() == 1 => refused.push(Refusal {
                index: range.start,
                status,
                reason: body,
            }),
            Delivery::Rejected { status, body } => {
                splits += 1;
                if splits == 1 {
                    tracing::info!(
                        sink = %name,
                        status,
                        response = %body,
                        items = range.len(),
                        "{server} refused a batch; writing it in halves to find the items at fault"
                    );
                }
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
        }
    }
    Settled::Done { refused, splits }
}
