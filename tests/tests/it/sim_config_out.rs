//! `wardgate-sim modbus|pump --config-out`: the fragment a simulator writes
//! is a configuration `wardgate check-config` accepts once `[gateway]`,
//! `[spool]` and a sink are added, and a real gateway run on it reads the
//! simulator: every register of the scenario (TCP and RTU, a built-in and a
//! custom metric) and the pump arrive in the JSONL sink with the values the
//! simulator serves.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use wardgate_e2e::{Gateway, lines, sim_bin, wait_for, wardgate_bin};

/// A Modbus scenario on ports chosen by the system: a TCP room sensor with
/// a built-in and a custom metric (word-swapped f32), and an RTU slave.
const SCENARIO: &str = r#"
[[tcp]]
name = "room-a"
listen = "127.0.0.1:0"
[[tcp.registers]]
table = "input_register"
address = 3
type = "i16"
scale = 0.1
metric = "room_temp"
script = { kind = "constant", value = 21.5 }
[[tcp.registers]]
table = "holding_register"
address = 10
type = "f32"
order = "CDAB"
metric = "co2"
unit = "[ppm]"
script = { kind = "constant", value = 612.0 }

[[rtu]]
name = "bus-a"
[[rtu.slaves]]
name = "fridge-a"
unit_id = 3
[[rtu.slaves.registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.01
metric = "fridge_temp"
script = { kind = "constant", value = 4.5 }
"#;

/// A simulator process, killed when dropped.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wardgate-sim <args> --config-out <dir>/fragment.toml` and
/// returns the fragment once the simulator has written it.
fn simulate(dir: &Path, args: &[&str]) -> (Sim, String) {
    let out = dir.join("fragment.toml");
    let sim = Sim(Command::new(sim_bin())
        .args(args)
        .arg("--config-out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wardgate-sim"));
    // Written under a temporary name and renamed: present means complete.
    let fragment = wait_for("the fragment", || std::fs::read_to_string(&out).ok());
    (sim, fragment)
}

/// The fragment behind a gateway's own sections, checked by `check-config`.
fn config(dir: &Path, fragment: &str) -> String {
    let config = format!(
        "[gateway]\nsite = \"e2e\"\nward = \"ward-1\"\nid = \"gw-sim\"\n\n[spool]\npath = \"{{dir}}/spool.redb\"\n\n[[sinks]]\ntype = \"jsonl\"\npath = \"{{dir}}/events.jsonl\"\n\n{fragment}"
    );
    let path = dir.join("check.toml");
    std::fs::write(&path, config.replace("{dir}", &dir.display().to_string())).unwrap();
    let check = Command::new(wardgate_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check-config refused the fragment:\n{}\n{fragment}",
        String::from_utf8_lossy(&check.stderr)
    );
    config
}

/// Waits until the gateway's JSONL holds a reading of `metric` from
/// `device` and returns its value.
fn reading(gw: &Gateway, device: &str, metric: &str) -> f64 {
    wait_for(&format!("a {metric} reading from {device}"), || {
        lines(&gw.path("events.jsonl")).iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["type"] == "reading" && v["device"]["id"] == device && v["metric"] == metric)
                .then(|| v["value"].as_f64())
                .flatten()
        })
    })
}

#[test]
fn a_modbus_simulators_fragment_is_read_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let scenario_path = dir.path().join("scenario.toml");
    std::fs::write(&scenario_path, SCENARIO).unwrap();
    let (_sim, fragment) = simulate(
        dir.path(),
        &["modbus", "--config", scenario_path.to_str().unwrap()],
    );
    let scenario: toml::Table = SCENARIO.parse().unwrap();
    let mut gw = Gateway::start(&config(dir.path(), &fragment));
    let tcp = &scenario["tcp"][0];
    let slave = &scenario["rtu"][0]["slaves"][0];
    for (device, register) in [
        ("room-a-modbus", &tcp["registers"][0]),
        ("room-a-modbus", &tcp["registers"][1]),
        ("fridge-a-modbus", &slave["registers"][0]),
    ] {
        let metric = register["metric"].as_str().unwrap();
        let served = register["script"]["value"].as_float().unwrap();
        let read = reading(&gw, device, metric);
        assert!(
            (read - served).abs() < 1e-9,
            "{device} {metric}: read {read}, the simulator serves {served}\n{}",
            gw.log()
        );
    }
    gw.stop();
}

#[test]
fn a_pump_simulators_fragment_is_read_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 42.5;
    let (_sim, fragment) = simulate(
        dir.path(),
        &[
            "pump",
            "--serial",
            "8002-60000",
            "--rate",
            &rate.to_string(),
        ],
    );
    let mut gw = Gateway::start(&config(dir.path(), &fragment));
    let read = reading(&gw, "pump-8002-60000", "infusion_rate");
    assert!((read - rate).abs() < 1e-9, "read {read}, set {rate}");
    gw.stop();
}
