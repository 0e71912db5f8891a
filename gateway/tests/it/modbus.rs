//! A Modbus TCP sensor simulated in-process, read by `wardgate run`: scaled
//! register values reach the JSONL sink bound to the room's subject.

use tokio_util::sync::CancellationToken;
use wardgate_model::{Event, Metric};
use wardgate_sim::modbus::{SimConfig, start};

use crate::Running;

#[test]
fn modbus_tcp_room_sensor_reaches_the_jsonl_sink() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = CancellationToken::new();
    // Room temperature in tenths of a degree (i16): 22.4 °C is register value 224.
    let sim: SimConfig = toml::from_str(
        r#"
[[tcp]]
name = "room"
listen = "127.0.0.1:0"
unit_id = 1
[[tcp.registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.1
script = { kind = "drift", base = 22.4, amplitude = 0.0, period = "10m" }
"#,
    )
    .unwrap();
    let running = rt.block_on(start(sim, shutdown.clone())).unwrap();
    let addr = running.tcp[0].1.addr;

    let mut gw = Running::start(&format!(
        r#"
[[subjects]]
id = "room-1"
kind = "room"
devices = ["room-1-env"]

[[devices]]
id = "room-1-env"
type = "modbus"
address = "{addr}"
unit_id = 1
poll_interval = "100ms"
timeout = "500ms"
[[devices.registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.1
metric = "room_temp"
unit = "Cel"
"#
    ));
    gw.wait_event("room temperature", |e| {
        matches!(e, Event::Reading(r) if r.metric == Metric::RoomTemp && r.subject.as_str() == "room-1")
    });
    let temps: Vec<f64> = gw
        .stop()
        .iter()
        .filter_map(|e| match e {
            Event::Reading(r) if r.metric == Metric::RoomTemp => Some(r.value),
            _ => None,
        })
        .collect();
    assert!(!temps.is_empty());
    for t in temps {
        assert!((t - 22.4).abs() < 1e-9, "{t}");
    }
    shutdown.cancel();
}

/// Two slaves on one RTU bus (a pseudo-terminal): a fridge probe (f32) and a
/// room sensor (i16, tenths) both reach the JSONL sink, each bound to its own
/// subject, polled by the gateway's single bus task.
#[test]
fn modbus_rtu_bus_with_two_slaves_reaches_the_jsonl_sink() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = CancellationToken::new();
    let sim: SimConfig = toml::from_str(
        r#"
[[rtu]]
name = "bus"
[[rtu.slaves]]
name = "fridge"
unit_id = 1
[[rtu.slaves.registers]]
table = "holding_register"
address = 0
type = "f32"
script = { kind = "drift", base = 4.5, amplitude = 0.0, period = "10m" }
[[rtu.slaves]]
name = "room"
unit_id = 2
[[rtu.slaves.registers]]
table = "input_register"
address = 3
type = "i16"
scale = 0.1
script = { kind = "drift", base = 21.0, amplitude = 0.0, period = "10m" }
"#,
    )
    .unwrap();
    let running = rt.block_on(start(sim, shutdown.clone())).unwrap();
    let port = running.rtu[0].1.path.clone();

    let mut gw = Running::start(&format!(
        r#"
[[subjects]]
id = "fridge-1"
kind = "room"
devices = ["fridge-probe"]

[[subjects]]
id = "bay-2"
kind = "room"
devices = ["bay-2-env"]

[[devices]]
id = "fridge-probe"
type = "modbus"
port = "{port}"
unit_id = 1
poll_interval = "200ms"
timeout = "300ms"
[[devices.registers]]
table = "holding_register"
address = 0
type = "f32"
metric = "fridge_temp"
unit = "Cel"

[[devices]]
id = "bay-2-env"
type = "modbus"
port = "{port}"
unit_id = 2
poll_interval = "200ms"
timeout = "300ms"
[[devices.registers]]
table = "input_register"
address = 3
type = "i16"
scale = 0.1
metric = "room_temp"
unit = "Cel"

"#
    ));
    gw.wait_event("fridge temperature", |e| {
        matches!(e, Event::Reading(r) if r.metric == Metric::FridgeTemp && r.subject.as_str() == "fridge-1" && r.value == 4.5)
    });
    gw.wait_event("room temperature", |e| {
        matches!(e, Event::Reading(r) if r.metric == Metric::RoomTemp && r.subject.as_str() == "bay-2" && (r.value - 21.0).abs() < 1e-9)
    });
    gw.stop();
    shutdown.cancel();
}
