//! The Modbus driver against the wardgate-sim Modbus simulator over real TCP
//! sockets on 127.0.0.1 and real pseudo-terminals. Expected values are the
//! simulator's scripted engineering values, chosen by hand; the simulator
//! encodes them with its own code, the driver decodes them with its own.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::modbus::{self, BusDevice, ModbusConfig, ModbusStats};
use wardgate_drivers::{DriverContext, DriverMetrics, EventReceiver};
use wardgate_model::config::Validate as _;
use wardgate_model::{DeviceKind, DeviceRef, DeviceState, Event, Metric, MetricRegistry};
use wardgate_sim::modbus::{SimDevice, start_rtu, start_tcp};

/// How long any single expected event may take; generous for a loaded 2-core box.
const PATIENCE: Duration = Duration::from_secs(10);

fn registry() -> MetricRegistry {
    let mut m = MetricRegistry::default();
    for (name, unit) in [
        ("bed_load", "kg"),
        ("door_open", "1"),
        ("energy", "J"),
        ("alarm", "1"),
    ] {
        m.declare(Metric::custom(name, unit, None)).unwrap();
    }
    m
}

fn context(
    device: &str,
    subject: &str,
    shutdown: &CancellationToken,
) -> (DriverContext, EventReceiver) {
    let (tx, rx) = mpsc::channel(256);
    let ctx = DriverContext::new(
        DeviceRef::new(device.into(), DeviceKind::Modbus),
        subject.into(),
        tx,
        shutdown.clone(),
    );
    (ctx, EventReceiver::new(rx))
}

fn config(text: &str) -> ModbusConfig {
    let c: ModbusConfig = toml::from_str(text).unwrap();
    let issues = c.validate(&registry());
    assert!(issues.is_empty(), "{issues:?}");
    c
}

fn sim_device(text: &str) -> SimDevice {
    toml::from_str(text).unwrap()
}

/// The next event that `pick` accepts, failing the test after [`PATIENCE`].
async fn next<T>(
    rx: &mut EventReceiver,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => {
                if let Some(t) = pick(e) {
                    return t;
                }
            }
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(elapsed) => panic!("no {what} within {PATIENCE:?}: {elapsed}"),
        }
    }
}

fn status(e: &Event) -> Option<(DeviceState, String, String)> {
    match e {
        Event::DeviceStatus(s) => Some((
            s.state,
            s.subject.to_string(),
            s.reason.as_deref().unwrap_or_default().to_owned(),
        )),
        _ => None,
    }
}

/// One full set of readings (one per metric in `names`), by metric name.
async fn readings(
    rx: &mut EventReceiver,
    names: &[&str],
) -> BTreeMap<String, (f64, String, String)> {
    let mut got = BTreeMap::new();
    while !names.iter().all(|n| got.contains_key(*n)) {
        let (name, v) = next(rx, "a reading", |e| match e {
            Event::Reading(r) => Some((
                r.metric.name().to_owned(),
                (
                    r.value,
                    r.subject.to_string(),
                    r.device.map(|d| d.id.to_string()).unwrap_or_default(),
                ),
            )),
            _ => None,
        })
        .await;
        got.insert(name, v);
    }
    got
}

const TCP_SIM: &str = r#"
unit_id = 1
[[registers]]   # 21.5 Cel in tenths (i16): stored 215
table = "input_register"
address = 0
type = "i16"
scale = 0.1
script = { kind = "constant", value = 21.5 }
[[registers]]   # 48 % (u16, bytes swapped)
table = "input_register"
address = 1
type = "u16"
order = "BADC"
script = { kind = "constant", value = 48.0 }
[[registers]]   # -12.5 Pa (f32, words swapped)
table = "input_register"
address = 4
type = "f32"
order = "CDAB"
script = { kind = "constant", value = -12.5 }
[[registers]]   # 78.4 kg as grams (u32 little endian): stored 78400
table = "holding_register"
address = 10
type = "u32"
order = "DCBA"
scale = 0.001
script = { kind = "constant", value = 78.4 }
[[registers]]   # -3000 J (i64, bytes swapped in words)
table = "holding_register"
address = 12
type = "i64"
order = "BADC"
script = { kind = "constant", value = -3000.0 }
[[registers]]   # 3.5 L/min (f64 big endian)
table = "holding_register"
address = 20
type = "f64"
script = { kind = "constant", value = 3.5 }
[[registers]]   # door open: bit 2 of holding register 30
table = "holding_register"
address = 30
type = "bool"
bit = 2
script = { kind = "constant", value = 1.0 }
[[registers]]   # alarm coil 5
table = "coil"
address = 5
type = "bool"
script = { kind = "constant", value = 1.0 }
[[registers]]   # door switch discrete input 0 (off)
table = "discrete_input"
address = 0
type = "bool"
script = { kind = "constant", value = 0.0 }
"#;

/// The TCP simulator of `TCP_SIM` on a free loopback port.
async fn tcp_sim(shutdown: &CancellationToken) -> wardgate_sim::modbus::TcpSim {
    start_tcp(
        "127.0.0.1:0".parse().unwrap(),
        sim_device(TCP_SIM),
        shutdown.clone(),
    )
    .await
    .unwrap()
}

fn tcp_driver_config(addr: impl std::fmt::Display, extra: &str) -> ModbusConfig {
    config(&format!(
        r#"
address = "{addr}"
poll_interval = "50ms"
timeout = "200ms"
retries = 0
failures_before_unreachable = 2
backoff_min = "20ms"
backoff_max = "100ms"
{extra}
[[registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.1
metric = "room_temp"
unit = "Cel"
[[registers]]
table = "input_register"
address = 1
type = "u16"
order = "BADC"
metric = "humidity"
[[registers]]
table = "input_register"
address = 4
type = "f32"
order = "CDAB"
metric = "diff_pressure"
[[registers]]
table = "holding_register"
address = 10
type = "u32"
order = "DCBA"
scale = 0.001
metric = "bed_load"
[[registers]]
table = "holding_register"
address = 12
type = "i64"
order = "BADC"
metric = "energy"
[[registers]]
table = "holding_register"
address = 20
type = "f64"
metric = "o2_flow"
[[registers]]
table = "holding_register"
address = 30
type = "bool"
bit = 2
metric = "door_open"
[[registers]]
table = "coil"
address = 5
type = "bool"
metric = "alarm"
[[registers]]
table = "discrete_input"
address = 0
type = "bool"
metric = "consciousness"
"#
    ))
}

const TCP_METRICS: [&str; 9] = [
    "room_temp",
    "humidity",
    "diff_pressure",
    "bed_load",
    "energy",
    "o2_flow",
    "door_open",
    "alarm",
    "consciousness",
];

#[tokio::test]
async fn tcp_values_of_every_type_and_order_reach_the_pipeline_bound_to_the_subject() {
    let shutdown = CancellationToken::new();
    let sim = tcp_sim(&shutdown).await;
    let (ctx, mut rx) = context("room-7-sensor", "room-7", &shutdown);
    let cfg = tcp_driver_config(sim.addr, "");
    let stats = ModbusStats::default();
    let driver = tokio::spawn({
        let stats = stats.clone();
        async move { modbus::run_with_stats(cfg, &registry(), ctx, stats).await }
    });

    let online = next(&mut rx, "online status", |e| status(&e)).await;
    assert_eq!(
        online,
        (DeviceState::Online, "room-7".into(), String::new())
    );
    let got = readings(&mut rx, &TCP_METRICS).await;
    let value = |m: &str| got[m].0;
    assert!((value("room_temp") - 21.5).abs() < 1e-9);
    assert_eq!(value("humidity"), 48.0);
    assert_eq!(value("diff_pressure"), -12.5);
    assert!((value("bed_load") - 78.4).abs() < 1e-9);
    assert_eq!(value("energy"), -3000.0);
    assert_eq!(value("o2_flow"), 3.5);
    assert_eq!(value("door_open"), 1.0);
    assert_eq!(value("alarm"), 1.0);
    assert_eq!(value("consciousness"), 0.0);
    for (subject, device) in got.values().map(|(_, s, d)| (s, d)) {
        assert_eq!(
            (subject.as_str(), device.as_str()),
            ("room-7", "room-7-sensor")
        );
    }
    // 9 entries in 4 requests: coil 5, discrete input 0, input 0..=5, holding 10..=30
    // (gaps 16..=19 and 24..=29 are within max_gap 8).
    let s = stats.snapshot();
    assert!(s.requests >= 4 && s.replies >= 4, "{s:?}");

    shutdown.cancel();
    driver.await.unwrap().unwrap();
}

/// A device given by host name (`localhost`: loopback only) is looked up
/// and read like one given by address.
#[tokio::test]
async fn a_device_named_by_host_name_is_looked_up_and_read() {
    let shutdown = CancellationToken::new();
    let sim = tcp_sim(&shutdown).await;
    let (ctx, mut rx) = context("room-7-sensor", "room-7", &shutdown);
    let cfg = tcp_driver_config(format!("localhost:{}", sim.addr.port()), "");
    let driver = tokio::spawn(async move { modbus::run(cfg, &registry(), ctx).await });
    let online = next(&mut rx, "online status", |e| status(&e)).await;
    assert_eq!(online.0, DeviceState::Online);
    let got = readings(&mut rx, &TCP_METRICS).await;
    assert_eq!(got["humidity"].0, 48.0);
    shutdown.cancel();
    driver.await.unwrap().unwrap();
}

#[tokio::test]
async fn exceptions_are_counted_values_and_do_not_take_the_device_offline() {
    let shutdown = CancellationToken::new();
    let sim = tcp_sim(&shutdown).await;
    sim.faults.set_exception(Some(0x02)); // illegal data address on every read
    let (ctx, mut rx) = context("room-7-sensor", "room-7", &shutdown);
    let stats = ModbusStats::default();
    let cfg = tcp_driver_config(sim.addr, "");
    let driver = tokio::spawn({
        let stats = stats.clone();
        async move { modbus::run_with_stats(cfg, &registry(), ctx, stats).await }
    });
    // The device answers (with exceptions): it is online, not unreachable.
    let online = next(&mut rx, "online status", |e| status(&e)).await;
    assert_eq!(online.0, DeviceState::Online);
    // Two full cycles of 4 requests, all answered with exception 2.
    let deadline = Instant::now() + PATIENCE;
    while stats.snapshot().exceptions.get(&0x02).copied().unwrap_or(0) < 8 {
        assert!(
            Instant::now() < deadline,
            "exceptions not counted: {:?}",
            stats.snapshot()
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Gateway target failed to respond (0x0B) is a failure: offline after 2 cycles.
    sim.faults.set_exception(Some(0x0B));
    let offline = next(&mut rx, "offline status", |e| {
        status(&e).filter(|s| s.0 == DeviceState::Offline)
    })
    .await;
    assert!(
        offline
            .2
            .starts_with("sensor unreachable: 2 failed polls in a row"),
        "{offline:?}"
    );
    assert!(offline.2.contains("0x0B"), "{offline:?}");
    // Cleared: online again and values flow.
    sim.faults.set_exception(None);
    let back = next(&mut rx, "online again", |e| status(&e)).await;
    assert_eq!(back.0, DeviceState::Online);
    let got = readings(&mut rx, &["room_temp"]).await;
    assert!((got["room_temp"].0 - 21.5).abs() < 1e-9);

    shutdown.cancel();
    driver.await.unwrap().unwrap();
}

#[tokio::test]
async fn tcp_outage_raises_unreachable_and_recovery_clears_it() {
    let shutdown = CancellationToken::new();
    let sim = tcp_sim(&shutdown).await;
    let (ctx, mut rx) = context("iso-1-pressure", "iso-room-1", &shutdown);
    let mut metrics = prometheus_client::registry::Registry::with_prefix("wardgate");
    let ctx = ctx.with_metrics(DriverMetrics::register(&mut metrics).device("iso-1-pressure"));
    let stats = ModbusStats::default();
    let cfg = tcp_driver_config(sim.addr, "");
    let driver = tokio::spawn({
        let stats = stats.clone();
        async move { modbus::run_with_stats(cfg, &registry(), ctx, stats).await }
    });
    assert_eq!(
        next(&mut rx, "online", |e| status(&e)).await.0,
        DeviceState::Online
    );

    // A dropped connection costs one failed request; the driver reconnects.
    sim.drop_connections();
    let deadline = Instant::now() + PATIENCE;
    while stats.snapshot().transport_errors == 0 {
        assert!(Instant::now() < deadline, "{:?}", stats.snapshot());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    readings(&mut rx, &TCP_METRICS).await;

    // Silent: every request times out; after 2 failed polls, offline, bound to the room.
    sim.faults.set_silent(true);
    let offline = next(&mut rx, "offline", |e| {
        status(&e).filter(|s| s.0 == DeviceState::Offline)
    })
    .await;
    assert_eq!(offline.1, "iso-room-1");
    assert!(
        offline.2.contains("no reply within the timeout"),
        "{offline:?}"
    );
    // Back: online once, then readings again.
    sim.faults.set_silent(false);
    let online = next(&mut rx, "online again", |e| status(&e)).await;
    assert_eq!(online.0, DeviceState::Online);
    let got = readings(&mut rx, &["diff_pressure"]).await;
    assert_eq!(got["diff_pressure"].0, -12.5);
    assert!(stats.snapshot().timeouts >= 2);

    shutdown.cancel();
    driver.await.unwrap().unwrap();
    // The device's /metrics counters say the same as its own.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics).unwrap();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{series}{{device=\"iso-1-pressure\"}} ")))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    let s = stats.snapshot();
    assert_eq!(value("wardgate_device_frames_total"), s.replies);
    assert_eq!(value("wardgate_device_timeouts_total"), s.timeouts);
    // Reconnected after the dropped connection and after the silence.
    assert!(value("wardgate_device_reconnects_total") >= 2, "{text}");
}

#[tokio::test]
async fn a_late_reply_is_never_taken_for_a_later_request() {
    // Two values in two tables, so two different requests per cycle: a reply
    // to one, if misassigned, would show up as the other's value.
    let shutdown = CancellationToken::new();
    let sim = start_tcp(
        "127.0.0.1:0".parse().unwrap(),
        sim_device(
            r#"
[[registers]]
table = "input_register"
address = 0
type = "u16"
script = { kind = "constant", value = 111.0 }
[[registers]]
table = "holding_register"
address = 0
type = "u16"
script = { kind = "constant", value = 222.0 }
"#,
        ),
        shutdown.clone(),
    )
    .await
    .unwrap();
    // Replies take 150 ms, the driver waits 100 ms: every reply is late.
    sim.faults.set_delay(Duration::from_millis(150));
    let cfg = config(&format!(
        r#"
address = "{}"
poll_interval = "20ms"
timeout = "100ms"
retries = 1
failures_before_unreachable = 100
[[registers]]
table = "input_register"
address = 0
type = "u16"
metric = "humidity"
[[registers]]
table = "holding_register"
address = 0
type = "u16"
metric = "bed_load"
"#,
        sim.addr
    ));
    let (ctx, mut rx) = context("d", "s", &shutdown);
    let stats = ModbusStats::default();
    let driver = tokio::spawn({
        let stats = stats.clone();
        async move { modbus::run_with_stats(cfg, &registry(), ctx, stats).await }
    });
    let deadline = Instant::now() + PATIENCE;
    while stats.snapshot().timeouts < 4 {
        assert!(Instant::now() < deadline, "{:?}", stats.snapshot());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.faults.set_delay(Duration::ZERO);
    // Every reading from now on carries its own register's value.
    for _ in 0..6 {
        let (metric, value) = next(&mut rx, "a reading", |e| match e {
            Event::Reading(r) => Some((r.metric.name().to_owned(), r.value)),
            _ => None,
        })
        .await;
        let expected = if metric == "humidity" { 111.0 } else { 222.0 };
        assert_eq!(value, expected, "{metric}");
    }
    shutdown.cancel();
    driver.await.unwrap().unwrap();
}

/// A Modbus TCP "device" written byte by byte: on its first connection it
/// answers with the wrong transaction id; on later ones, correctly.
async fn mismatching_server(listener: tokio::net::TcpListener) {
    let mut connection = 0;
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        connection += 1;
        let first = connection == 1;
        tokio::spawn(async move {
            let mut req = [0u8; 12];
            while sock.read_exact(&mut req).await.is_ok() {
                // Request: tid(2) protocol 0(2) length 6(2) unit(1) fc 0x03 addr(2) qty 1(2).
                let tid = u16::from_be_bytes([req[0], req[1]]);
                let (reply_tid, value): (u16, u16) = if first {
                    (tid.wrapping_add(7), 0xBEEF) // someone else's reply
                } else {
                    (tid, 0x00D7) // 215
                };
                let [t0, t1] = reply_tid.to_be_bytes();
                let [v0, v1] = value.to_be_bytes();
                let reply = [
                    t0, t1, // transaction id
                    0x00, 0x00, // protocol id
                    0x00, 0x05,   // length: unit + fc + byte count + 2 data bytes
                    req[6], // unit id
                    0x03,   // function code: read holding registers
                    0x02,   // byte count
                    v0, v1, // register value
                ];
                if sock.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test]
async fn a_reply_with_another_transaction_id_is_discarded_and_the_link_resynchronised() {
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(mismatching_server(listener));
    let cfg = config(&format!(
        r#"
address = "{addr}"
poll_interval = "20ms"
timeout = "500ms"
retries = 0
[[registers]]
table = "holding_register"
address = 0
type = "i16"
scale = 0.1
metric = "room_temp"
"#
    ));
    let (ctx, mut rx) = context("d", "s", &shutdown);
    let stats = ModbusStats::default();
    let driver = tokio::spawn({
        let stats = stats.clone();
        async move { modbus::run_with_stats(cfg, &registry(), ctx, stats).await }
    });
    // The first reading is the correct one (215 -> 21.5), never 0xBEEF.
    let v = next(&mut rx, "a reading", |e| match e {
        Event::Reading(r) => Some(r.value),
        _ => None,
    })
    .await;
    assert!((v - 21.5).abs() < 1e-9, "{v}");
    assert_eq!(stats.snapshot().out_of_sync, 1);
    shutdown.cancel();
    driver.await.unwrap().unwrap();
    server.abort();
}

#[tokio::test]
async fn rtu_bus_with_a_silent_slave_keeps_the_other_on_schedule() {
    let shutdown = CancellationToken::new();
    let fridge = sim_device(
        r#"
unit_id = 1
[[registers]]   # 5.25 Cel in hundredths: stored 525
table = "input_register"
address = 0
type = "i16"
scale = 0.01
script = { kind = "constant", value = 5.25 }
"#,
    );
    let room = sim_device(
        r#"
unit_id = 2
[[registers]]   # 48 % humidity, u32 word-swapped
table = "holding_register"
address = 3
type = "u32"
order = "CDAB"
script = { kind = "constant", value = 48.0 }
"#,
    );
    let bus = start_rtu(vec![fridge, room], shutdown.clone())
        .await
        .unwrap();
    let room_faults = bus.faults[1].1.clone();
    room_faults.set_silent(true);

    let fridge_interval = Duration::from_millis(100);
    let room_timeout = Duration::from_millis(300);
    let fridge_cfg = config(&format!(
        r#"
port = "{}"
baud_rate = 115200
unit_id = 1
poll_interval = "100ms"
timeout = "300ms"
[[registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.01
metric = "fridge_temp"
"#,
        bus.path
    ));
    // The silent slave: 300 ms timeout, 2 retries: a bus that served it whole
    // would stall 900 ms per cycle.
    let room_cfg = config(&format!(
        r#"
port = "{}"
baud_rate = 115200
unit_id = 2
poll_interval = "100ms"
timeout = "300ms"
retries = 2
failures_before_unreachable = 2
backoff_min = "50ms"
backoff_max = "200ms"
[[registers]]
table = "holding_register"
address = 3
type = "u32"
order = "CDAB"
metric = "humidity"
"#,
        bus.path
    ));
    assert!(modbus::validate_bus([("fridge-7", &fridge_cfg), ("room-7-2", &room_cfg)]).is_empty());
    let (fridge_ctx, mut fridge_rx) = context("fridge-7", "fridge-room-7", &shutdown);
    let (room_ctx, mut room_rx) = context("room-7-2", "room-7", &shutdown);
    let devices = vec![
        BusDevice {
            config: fridge_cfg,
            ctx: fridge_ctx,
            stats: ModbusStats::default(),
        },
        BusDevice {
            config: room_cfg,
            ctx: room_ctx,
            stats: ModbusStats::default(),
        },
    ];
    let driver = tokio::spawn(async move { modbus::run_bus(devices, &registry()).await });

    let online = next(&mut fridge_rx, "fridge online", |e| status(&e)).await;
    assert_eq!(online.0, DeviceState::Online, "{online:?}");
    // While the room slave is silent the fridge's readings come at most one
    // interval plus one of the silent slave's timeouts apart (plus slack for
    // a loaded machine), never a whole retried cycle of the silent slave.
    let bound = fridge_interval + room_timeout + Duration::from_millis(350);
    let mut last = Instant::now();
    let mut gaps = Vec::new();
    for _ in 0..12 {
        let v = next(&mut fridge_rx, "a fridge reading", |e| match e {
            Event::Reading(r) => {
                assert_eq!(
                    (r.subject.as_str(), r.metric.name()),
                    ("fridge-room-7", "fridge_temp")
                );
                Some(r.value)
            }
            _ => None,
        })
        .await;
        assert!((v - 5.25).abs() < 1e-9, "{v}");
        let now = Instant::now();
        gaps.push(now - last);
        last = now;
    }
    let worst = gaps.iter().skip(1).max().copied().unwrap_or_default();
    assert!(worst <= bound, "fridge gaps {gaps:?} exceed {bound:?}");

    // The silent slave is reported unreachable, bound to its own subject.
    let offline = next(&mut room_rx, "room offline", |e| status(&e)).await;
    assert_eq!(offline.0, DeviceState::Offline);
    assert_eq!(offline.1, "room-7");
    assert!(offline.2.starts_with("sensor unreachable"), "{offline:?}");

    // It answers again: online, and its value decodes (48 % from CDAB words).
    room_faults.set_silent(false);
    assert_eq!(
        next(&mut room_rx, "room online", |e| status(&e)).await.0,
        DeviceState::Online
    );
    let got = readings(&mut room_rx, &["humidity"]).await;
    assert_eq!(got["humidity"], (48.0, "room-7".into(), "room-7-2".into()));

    shutdown.cancel();
    driver.await.unwrap().unwrap();
}

#[test]
fn the_ward_example_config_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/ward.toml");
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut metrics = MetricRegistry::default();
    for m in doc["metrics"].as_array().unwrap() {
        let (name, unit) = (m["name"].as_str().unwrap(), m["unit"].as_str().unwrap());
        metrics.declare(Metric::custom(name, unit, None)).unwrap();
    }
    let subject_devices: Vec<&str> = doc["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["devices"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(toml::Value::as_str)
        })
        .collect();
    let mut buses: BTreeMap<String, Vec<(String, ModbusConfig)>> = BTreeMap::new();
    let mut count = 0;
    for d in doc["devices"].as_array().unwrap() {
        let mut table = d.as_table().unwrap().clone();
        let id = table.remove("id").unwrap().as_str().unwrap().to_owned();
        if table.remove("type").unwrap().as_str() != Some("modbus") {
            continue;
        }
        count += 1;
        assert!(
            subject_devices.contains(&id.as_str()),
            "{id} is bound to no subject"
        );
        let c: ModbusConfig = table.try_into().unwrap();
        let issues = c.validate(&metrics);
        assert!(issues.is_empty(), "{id}: {issues:?}");
        if let Some(bus) = c.bus_key() {
            buses.entry(bus.to_owned()).or_default().push((id, c));
        }
    }
    // Room sensors x2, O2 flow, bed load, isolation room, fridge.
    assert_eq!(count, 6);
    assert_eq!(buses["/dev/ttyUSB0"].len(), 2);
    for devices in buses.values() {
        let problems = modbus::validate_bus(devices.iter().map(|(id, c)| (id.as_str(), c)));
        assert!(problems.is_empty(), "{problems:?}");
    }
}
