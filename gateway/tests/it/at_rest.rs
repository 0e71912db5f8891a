//! Data at rest: files holding patient data are private to the gateway's
//! user, and a secret file others can read is refused at start.

use std::os::unix::fs::PermissionsExt as _;

use crate::wardgate;

const DEVICES: &str = r#"
[spool]
path = "DIR/spool.redb"

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["hr-1"]

[[devices]]
id = "hr-1"
type = "synthetic"
interval = "50ms"
signals = [{ metric = "heart_rate", base = 72 }]
"#;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_spool_and_the_jsonl_file_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = crate::Running::start(&DEVICES.replace("DIR", &dir.path().display().to_string()));
    gw.wait_event("a reading", |e| {
        matches!(e, wardgate_model::Event::Reading(_))
    });
    gw.stop();
    assert_eq!(mode(&dir.path().join("spool.redb")), 0o600);
    assert_eq!(mode(&gw.dir.path().join("events.jsonl")), 0o600);
}

#[test]
fn a_secret_file_others_can_read_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "a-station-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nsite = \"t\"\nward = \"w\"\nid = \"gw\"\n\n[http]\nlisten = \"127.0.0.1:0\"\ntokens = [{{ name = \"station-1\", token = {{ file = \"{}\" }} }}]\n\n[[sinks]]\ntype = \"jsonl\"\npath = \"-\"\n",
            token.display()
        ),
    )
    .unwrap();
    let out = wardgate()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "secret file {} can be read by its group or others (mode 644); make it private: chmod 600 {}",
            token.display(),
            token.display()
        )),
        "{stderr}"
    );
}
