//! The soak run (docs/performance.md): a simulated ward read by a real
//! gateway for a long while; prints one CSV line per sample of the
//! gateway's resident memory, open file descriptors, threads and spool size.
//!
//! ```console
//! $ cargo run --release -p wardgate-e2e --example soak -- [DEVICES] [SECONDS] [EVERY_SECONDS]
//! ```
//! Defaults: 60 devices (a ward's worth), 3600 s, a sample every 60 s.

use std::time::Duration;

use wardgate_e2e::soak::{Sample, SoakOptions, run};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: DEVICES SECONDS EVERY_SECONDS"))
        .collect();
    let arg = |i: usize, default: u64| args.get(i).copied().unwrap_or(default);
    let opts = SoakOptions {
        devices: usize::try_from(arg(0, 60)).unwrap_or(60),
        duration: Duration::from_secs(arg(1, 3600)),
        every: Duration::from_secs(arg(2, 60)),
    };
    eprintln!("soak: {opts:?}");
    println!("{}", Sample::HEADER);
    let samples = run(&opts, |s| println!("{}", s.csv()));
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        eprintln!(
            "soak: rss {} → {} KiB, fds {} → {}, threads {} → {}, tasks {} → {}, spool {} → {} bytes",
            first.rss_kib,
            last.rss_kib,
            first.fds,
            last.fds,
            first.threads,
            last.threads,
            first.tasks,
            last.tasks,
            first.spool_bytes,
            last.spool_bytes
        );
    }
}
