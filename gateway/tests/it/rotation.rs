//! The JSONL sink rotating in a running gateway: by size, into gzip files,
//! keeping `keep` of them, with every line whole and none written twice
//! across the rotations (the exact line accounting is in the unit tests of
//! `sinks/jsonl/rotate.rs`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wardgate_model::Event;

use crate::{Guarded, run, wardgate};

const KEEP: usize = 2;

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn a_running_gateway_rotates_its_jsonl_file_by_size_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let mut config = format!(
        "[gateway]\nsite = \"t\"\nward = \"w\"\nid = \"gw\"\n\n[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nrotate_max_bytes = 1048576\nkeep = {KEEP}\n",
        out.display()
    );
    // Enough readings to pass 1 MiB several times in a few seconds.
    for i in 0..8 {
        let _ = write!(
            config,
            "\n[[subjects]]\nid = \"bed-{i}\"\nkind = \"bed\"\ndevices = [\"hr-{i}\"]\n\n[[devices]]\nid = \"hr-{i}\"\ntype = \"synthetic\"\ninterval = \"10ms\"\nsignals = [{{ metric = \"heart_rate\", base = 72 }}, {{ metric = \"spo2\", base = 97 }}]\n"
        );
    }
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Guarded(
        wardgate()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::fs::File::create(dir.path().join("gw.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // One more rotation than are kept: the oldest must have been deleted.
    let last = dir.path().join(format!("events.jsonl.{}.gz", KEEP + 1));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !last.exists() {
        assert!(child.try_wait().unwrap().is_none(), "wardgate exited early");
        assert!(
            Instant::now() < deadline,
            "no rotation {} within 120 s",
            KEEP + 1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert!(run::wait_exit(&mut child).success());

    let mut rotated: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("events.jsonl.")?
                .strip_suffix(".gz")?
                .parse()
                .ok()
        })
        .collect();
    rotated.sort_unstable();
    assert_eq!(rotated.len(), KEEP, "{rotated:?}");
    let mut text = String::new();
    for n in &rotated {
        let part = gunzip(&dir.path().join(format!("events.jsonl.{n}.gz")));
        assert!(
            part.len() >= 1 << 20,
            "file {n} rotated early: {}",
            part.len()
        );
        assert!(part.ends_with('\n'), "file {n} ends mid-line");
        text.push_str(&part);
    }
    text.push_str(&std::fs::read_to_string(&out).unwrap());
    let mut seen = HashSet::new();
    for line in text.lines() {
        let _: Event = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(seen.insert(line), "written twice: {line}");
    }
}
