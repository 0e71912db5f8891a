//! Poll phases: where in its interval each device's polls fall, so that a
//! thousand sensors polled every second are asked one after another across
//! the second instead of all in the same millisecond (Telegraf's
//! `collection_jitter`, made deterministic). A device's phase is one of
//! [`SLOTS`] evenly spaced points of `[0, min(jitter, interval))`, chosen by a
//! hash of its id: the same device keeps the same phase across restarts,
//! distinct devices spread evenly over the slots. Pure.
//!
//! Whole slots rather than any nanosecond: devices in one slot are due at
//! the same instant and served by one wake-up of the runtime. Measured with
//! 1000 Modbus sensors at 1 Hz (docs/performance.md), a phase per device cost
//! the gateway twice the CPU of lock-step polling — a thousand timer
//! wake-ups a second — while twenty slots keep the bursts a twentieth of the
//! fleet for a fraction of that.

use std::time::Duration;

/// The default `jitter` of the polled drivers. Long enough to spread a
/// second's polls over the whole second; short enough that a device's first
/// reading arrives within a second of start (plus its own reply time).
pub const DEFAULT_JITTER: Duration = Duration::from_secs(1);

/// The phase of `device`: an offset in `[0, min(jitter, interval))` from the
/// moment polling starts, stable for a given id.
pub fn phase(device: &str, jitter: Duration, interval: Duration) -> Duration {
    let span = jitter.min(interval);
    let slot = fnv1a(device.as_bytes()) % u64::from(SLOTS);
    // `slot < SLOTS`, so it fits.
    span * u32::try_from(slot).unwrap_or(0) / SLOTS
}

/// How many phases a jitter span holds (50 ms apart at the default 1 s).
pub const SLOTS: u32 = 20;

/// 64-bit FNV-1a (Fowler, Noll, Vo; the offset basis and prime of the
/// published parameters): stable across platforms and Rust releases, unlike
/// `std`'s hasher, so a device's phase does not move on an upgrade.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn phases_are_stable_slots_within_the_jitter_spread_evenly() {
        let ids: Vec<String> = (0..1000).map(|i| format!("sensor-{i}")).collect();
        let step = SECOND / SLOTS;
        let mut per_slot = vec![0usize; SLOTS as usize];
        for id in &ids {
            let p = phase(id, SECOND, SECOND);
            assert!(p < SECOND, "{id}: {p:?}");
            assert_eq!(phase(id, SECOND, SECOND), p, "{id}: not stable");
            assert_eq!(p.as_nanos() % step.as_nanos(), 0, "{id}: {p:?} not a slot");
            per_slot[usize::try_from(p.as_nanos() / step.as_nanos()).unwrap()] += 1;
        }
        // Every slot is used and none holds more than twice its share.
        let share = ids.len() / SLOTS as usize;
        for (k, n) in per_slot.iter().enumerate() {
            assert!(
                (1..=2 * share).contains(n),
                "slot {k} holds {n} of {}",
                ids.len()
            );
        }
    }

    #[test]
    fn the_phase_fits_the_interval_and_zero_turns_it_off() {
        let short = Duration::from_millis(200);
        for i in 0..100 {
            let id = format!("pump-{i}");
            assert!(phase(&id, SECOND, short) < short);
            assert_eq!(phase(&id, Duration::ZERO, SECOND), Duration::ZERO);
        }
    }
}
