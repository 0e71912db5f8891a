//! Poll phases: where in its interval each device's polls fall, so that a
//! thousand sensors polled every second are asked one after another across
//! the second instead of all in the same millisecond (Telegraf's
//! `collection_jitter`, made deterministic). A device's phase is a hash of its
//! id reduced to `[0, min(jitter, interval))`: the same device keeps the same
//! phase across restarts, distinct devices spread evenly. Pure.

use std::time::Duration;

/// The default `jitter` of the polled drivers. Long enough to spread a
/// second's polls over the whole second; short enough that a device's first
/// reading arrives within a second of start (plus its own reply time).
pub const DEFAULT_JITTER: Duration = Duration::from_secs(1);

/// The phase of `device`: an offset in `[0, min(jitter, interval))` from the
/// moment polling starts, stable for a given id.
pub fn phase(device: &str, jitter: Duration, interval: Duration) -> Duration {
    let span = u64::try_from(jitter.min(interval).as_nanos()).unwrap_or(u64::MAX);
    if span == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(fnv1a(device.as_bytes()) % span)
}

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
    fn phases_are_stable_distinct_and_within_the_jitter() {
        let ids: Vec<String> = (0..1000).map(|i| format!("sensor-{i}")).collect();
        let phases: Vec<Duration> = ids.iter().map(|id| phase(id, SECOND, SECOND)).collect();
        for (id, p) in ids.iter().zip(&phases) {
            assert!(*p < SECOND, "{id}: {p:?}");
            assert_eq!(phase(id, SECOND, SECOND), *p, "{id}: not stable");
        }
        let mut distinct = phases.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len(), "two devices share a phase");
        // Spread over the whole second: every tenth of it holds some.
        for tenth in 0..10u32 {
            let (lo, hi) = (SECOND * tenth / 10, SECOND * (tenth + 1) / 10);
            assert!(
                phases.iter().any(|p| (lo..hi).contains(p)),
                "nothing in {lo:?}..{hi:?}"
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
