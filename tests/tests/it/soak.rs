//! The short soak (the hour-long one is `bench/soak.rs`): a simulated ward
//! read by a real gateway for two minutes. After a 40 s warm-up nothing may
//! keep growing: not memory (beyond a stated bound), not file descriptors,
//! not the runtime's tasks, not the spool (its sink delivers); threads stay
//! within the runtime's bound.

use std::time::Duration;

use wardgate_e2e::soak::{SoakOptions, run};

/// Resident memory may move this much after warm-up (allocator noise,
/// buffers sized by the load); a leak of one allocation per reading would
/// exceed it many times over in the run.
const RSS_BOUND_KIB: u64 = 16 * 1024;

#[test]
fn two_minutes_of_a_ward_grow_nothing_after_warm_up() {
    let samples = run(
        &SoakOptions {
            devices: 30,
            duration: Duration::from_secs(120),
            every: Duration::from_secs(10),
        },
        |_| {},
    );
    let warm: Vec<_> = samples.iter().filter(|s| s.seconds >= 40).collect();
    assert!(warm.len() >= 6, "{samples:?}");
    let first = warm[0];
    let peak_rss = warm.iter().map(|s| s.rss_kib).max().unwrap();
    assert!(
        peak_rss <= first.rss_kib + RSS_BOUND_KIB,
        "memory grew from {} to {} KiB: {samples:?}",
        first.rss_kib,
        peak_rss
    );
    // Blocking-pool threads come and go with the load (a busy machine
    // makes more of them): bounded, not constant.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let max_threads = (cores + wardgate::service::MAX_BLOCKING_THREADS + 4) as u64;
    for s in &warm {
        assert!(
            s.fds.abs_diff(first.fds) <= 2,
            "file descriptors: {samples:?}"
        );
        assert!(s.threads <= max_threads, "threads: {samples:?}");
        assert!(s.tasks.abs_diff(first.tasks) <= 4, "tasks: {samples:?}");
    }
    let last = warm[warm.len() - 1];
    assert!(
        last.spool_bytes <= first.spool_bytes.max(1 << 20) * 2,
        "spool: {samples:?}"
    );
}
