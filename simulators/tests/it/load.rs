//! `wardgate_sim::load` over its real transports: a BLE patch on its
//! simulator socket, a pump on its pseudo-terminal, a Modbus TCP sensor.
//! Expected values are derived from the specs by hand (GATT characteristic
//! layouts, IEEE 11073 FLOAT/SFLOAT, the Asena frame format, Modbus
//! registers), never from the simulator's encoders.

use std::io::Read as _;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use wardgate_sim::load::{Endpoint, LoadConfig, LoadKind, LoadSim, Mix};

/// One device of each kind: load-0 BLE, load-1 Modbus, load-2 pump (BLE,
/// Modbus and pumps are numbered in that order).
async fn three(first_index: usize) -> LoadSim {
    LoadSim::start(
        LoadConfig {
            devices: 3,
            mix: Mix {
                ble: 1,
                modbus: 1,
                pump: 1,
            },
            interval: Duration::from_millis(100),
            first_index,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

fn position(sim: &LoadSim, kind: LoadKind) -> usize {
    sim.devices().iter().position(|d| d.kind == kind).unwrap()
}

/// IEEE 11073-20601 SFLOAT: exponent = signed high 4 bits, mantissa = signed low 12 bits.
fn sfloat(raw: u16) -> f64 {
    let exponent = ((raw as i16) >> 12) as i32;
    let mantissa = (((raw << 4) as i16) >> 4) as f64;
    mantissa * 10f64.powi(exponent)
}

/// IEEE 11073-20601 FLOAT: exponent = signed high byte, mantissa = signed low 24 bits.
fn float(raw: u32) -> f64 {
    let exponent = (raw as i32) >> 24;
    let mantissa = (((raw << 8) as i32) >> 8) as f64;
    mantissa * 10f64.powi(exponent)
}

/// `NTF <address> <characteristic> <hex>` → (characteristic, payload).
fn ntf(line: &str, address: &str) -> (String, Vec<u8>) {
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words.len(), 4, "{line:?}");
    assert_eq!((words[0], words[1]), ("NTF", address), "{line:?}");
    (words[2].to_owned(), hex::decode(words[3]).unwrap())
}

/// Temperature Measurement (HTS 0x2A1C) with flags 0: °C, no time stamp,
/// no type; the value is a FLOAT at bytes 1..5, little endian.
fn celsius(payload: &[u8]) -> f64 {
    assert_eq!(payload.len(), 5, "{payload:02x?}");
    assert_eq!(payload[0], 0x00, "flags: Celsius, nothing optional");
    float(u32::from_le_bytes(payload[1..5].try_into().unwrap()))
}

#[tokio::test]
async fn a_ble_patch_streams_vitals_and_sends_the_fever_on_injection() {
    let sim = three(0).await;
    let ble = position(&sim, LoadKind::Ble);
    let Endpoint::Ble { addr, address } = sim.devices()[ble].endpoint.clone() else {
        panic!("not a BLE endpoint");
    };
    // Device index 0 in the last three bytes of a fixed prefix.
    assert_eq!(address, "4C:4F:41:00:00:00");

    let stream = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // Advertisement: HRS 180d, PLXS 1822, HTS 1809; HRM, PLX Continuous, Temperature.
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "DEVICE 4C:4F:41:00:00:00 180d,1822,1809 2a37,2a5f,2a1c"
    );
    write
        .write_all(b"SUB 2a37\nSUB 2a5f\nSUB 2a1c\nREADY\n")
        .await
        .unwrap();

    // One interval's batch, in the order HR, PLX, temperature.
    let (ch, hr) = ntf(&lines.next_line().await.unwrap().unwrap(), &address);
    assert_eq!(ch, "2a37");
    // HRM flags 0x06: u8 rate (bit 0 clear), sensor contact supported and
    // detected (bits 1-2), no energy, no RR; then the rate, 72 /min.
    assert_eq!(hr, [0x06, 72]);
    let (ch, plx) = ntf(&lines.next_line().await.unwrap().unwrap(), &address);
    assert_eq!(ch, "2a5f");
    // PLX Continuous flags 0 (no fast/slow, status or PAI); SpO2PR-Normal:
    // SpO2 and PR as SFLOAT, little endian.
    assert_eq!(plx.len(), 5, "{plx:02x?}");
    assert_eq!(plx[0], 0x00);
    assert_eq!(sfloat(u16::from_le_bytes([plx[1], plx[2]])), 97.0);
    assert_eq!(sfloat(u16::from_le_bytes([plx[3], plx[4]])), 72.0);
    let (ch, temp) = ntf(&lines.next_line().await.unwrap().unwrap(), &address);
    assert_eq!(ch, "2a1c");
    // 36.8 °C: mantissa 3680, exponent -2.
    assert!((celsius(&temp) - 36.8).abs() < 1e-9, "{temp:02x?}");

    // The link is up (a batch arrived): the first event is this patch's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut injector = sim.injector(Some(std::fs::File::create(&path).unwrap()));
    let before = chrono::Utc::now();
    let event = injector.inject_next().await.unwrap().unwrap();
    let mut text = String::new();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let lines_written: Vec<&str> = text.lines().collect();
    assert_eq!(lines_written.len(), 1, "{text:?}");
    let json: serde_json::Value = serde_json::from_str(lines_written[0]).unwrap();
    assert_eq!(json["subject"], "load-0");
    assert_eq!(json["device"], "load-0-ble");
    assert_eq!(json["kind"], "ble");
    assert_eq!(json["rule"], "fever");
    let at = json["injected_at"].as_str().unwrap();
    assert_eq!(at, event.injected_at);
    // RFC 3339 UTC with nine fractional digits: ...T12:34:56.123456789Z
    let fraction = at.rsplit_once('.').unwrap().1;
    assert_eq!(fraction.len(), 10, "{at}");
    assert!(fraction.ends_with('Z'), "{at}");
    let at: chrono::DateTime<chrono::Utc> = at.parse().unwrap();
    assert!(at >= before, "{at} before {before}");

    // The fever reading arrives among the regular batches: 39.0 °C is
    // mantissa 3900 at exponent -2.
    let mut fever = false;
    for _ in 0..12 {
        let (ch, payload) = ntf(&lines.next_line().await.unwrap().unwrap(), &address);
        if ch == "2a1c" && (celsius(&payload) - 39.0).abs() < 1e-9 {
            fever = true;
            break;
        }
    }
    assert!(fever, "no 39.0 °C Temperature Measurement after the event");
    let stats = sim.stats();
    assert_eq!((stats.events, stats.ble_links), (1, 1));
    // Three regular notifications at least, and the fever.
    assert!(stats.notifications >= 4, "{stats:?}");
}

/// An Asena frame: `!` + text + `|` + CRC-16/CCITT-FALSE of the text as 4
/// upper-case hex digits + CR.
fn frame(text: &str) -> Vec<u8> {
    let crc = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740).checksum(text.as_bytes());
    format!("!{text}|{crc:04X}\r").into_bytes()
}

/// Sends `request` and reads one reply frame, checking its CRC; returns its fields.
async fn exchange(port: &mut BufReader<tokio_serial::SerialStream>, request: &[u8]) -> Vec<String> {
    port.get_mut().write_all(request).await.unwrap();
    let mut reply = Vec::new();
    port.read_until(b'\r', &mut reply).await.unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let body = reply
        .strip_prefix('!')
        .and_then(|r| r.strip_suffix('\r'))
        .unwrap_or_else(|| panic!("not a frame: {reply:?}"));
    let (text, crc) = body.rsplit_once('|').unwrap();
    assert_eq!(frame(text), reply.as_bytes(), "CRC of {reply:?}");
    assert_eq!(crc.len(), 4);
    text.split('^').map(str::to_owned).collect()
}

#[tokio::test]
async fn a_pump_answers_polls_and_reports_the_injected_occlusion() {
    let sim = three(0).await;
    let pump = position(&sim, LoadKind::Pump);
    assert_eq!(sim.devices()[pump].device, "load-2-pump");
    let Endpoint::Pump(path) = sim.devices()[pump].endpoint.clone() else {
        panic!("not a pump endpoint");
    };
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path.to_string_lossy(), 38_400))
        .unwrap();
    let mut port = BufReader::new(port);

    let serial = exchange(&mut port, b"!INST_SERIALNO|457D\r").await;
    assert_eq!(serial[0], "INST_SERIALNO");
    // Handshake key: CRC-16/CCITT-FALSE of the serial, 4 upper-case hex digits.
    let key = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740).checksum(serial[1].as_bytes());
    let enabled = exchange(&mut port, &frame(&format!("REMOTE_CTRL^ENABLED^{key:04X}"))).await;
    assert_eq!(enabled, ["REMOTE_CTRL", "ENABLED"]);

    // Status poll, exact bytes from docs/devices/asena.md. Fields: [1] serial,
    // [2] alarms, [3] mode, [4] rate, [5] its unit.
    let status = exchange(&mut port, b"!INF|4961\r").await;
    assert_eq!(status[0], "INF");
    assert_eq!(status[1], serial[1]);
    assert_eq!(status[2], "NONE");
    assert_eq!(status[3], "INFUSING");
    assert_eq!(status[4].parse::<f64>().unwrap(), 100.0);
    assert_eq!(status[5], "ml/h");

    let event = sim.inject(pump).await.unwrap();
    assert_eq!(
        (event.subject.as_str(), event.kind, event.rule),
        ("load-2", "pump", "pump_occlusion")
    );
    let status = exchange(&mut port, b"!INF|4961\r").await;
    // A downstream occlusion stops the infusion.
    assert!(status[2].split(',').any(|a| a == "OCCL_DOWN"), "{status:?}");
    assert_eq!(status[3], "ALARM");
    assert_eq!(sim.stats().pump_replies, 4);
}

#[tokio::test]
async fn a_modbus_sensor_serves_its_registers() {
    use tokio_modbus::client::{Reader as _, tcp};

    let sim = three(0).await;
    let m = position(&sim, LoadKind::Modbus);
    let Endpoint::Modbus(addr) = sim.devices()[m].endpoint.clone() else {
        panic!("not a Modbus endpoint");
    };
    let mut client = tcp::connect(addr).await.unwrap();
    // Input registers 0-1: room temperature 21.5 °C as i16 tenths = 215
    // (0x00D7), humidity 45.0 % as u16 tenths = 450 (0x01C2).
    let words = client.read_input_registers(0, 2).await.unwrap().unwrap();
    assert_eq!(words, [0x00D7, 0x01C2]);
    assert_eq!(sim.stats().modbus_polls, 1);
    // Modbus devices have no scripted event.
    assert!(sim.inject(m).await.is_none());
}

#[tokio::test]
async fn the_config_fragment_has_one_subject_per_device() {
    let sim = three(40).await;
    let text = sim.config_fragment().unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut keys: Vec<&str> = doc.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["devices", "subjects"]);
    let subjects = doc["subjects"].as_array().unwrap();
    let devices = doc["devices"].as_array().unwrap();
    assert_eq!((subjects.len(), devices.len()), (3, 3));
    for (i, (s, d)) in subjects.iter().zip(devices).enumerate() {
        let id = format!("load-{}", 40 + i);
        assert_eq!(s["id"].as_str(), Some(id.as_str()));
        assert_eq!(s["kind"].as_str(), Some("bed"));
        let dev_id = d["id"].as_str().unwrap();
        assert_eq!(s["devices"].as_array().unwrap()[0].as_str(), Some(dev_id));
        assert_eq!(dev_id, format!("{id}-{}", d["type"].as_str().unwrap()));
        match &sim.devices()[i].endpoint {
            Endpoint::Ble { addr, address } => {
                assert_eq!(d["type"].as_str(), Some("ble"));
                assert_eq!(d["simulator"].as_str(), Some(addr.to_string().as_str()));
                assert_eq!(d["addresses"][0].as_str(), Some(address.as_str()));
            }
            Endpoint::Modbus(addr) => {
                assert_eq!(d["type"].as_str(), Some("modbus"));
                assert_eq!(d["address"].as_str(), Some(addr.to_string().as_str()));
                assert_eq!(d["poll_interval"].as_str(), Some("100ms"));
                let metrics: Vec<&str> = d["registers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["metric"].as_str().unwrap())
                    .collect();
                assert_eq!(metrics, ["room_temp", "humidity"]);
            }
            Endpoint::Pump(path) => {
                assert_eq!(d["type"].as_str(), Some("pump"));
                assert_eq!(d["port"].as_str(), path.to_str());
                assert_eq!(d["poll_interval"].as_str(), Some("100ms"));
                // Shorter than the poll interval, as the pump driver requires.
                assert_eq!(d["reply_timeout"].as_str(), Some("50ms"));
            }
        }
    }
}

/// The CLI contract the benchmark relies on: the fragment is written before
/// `READY <N>` (the only stdout line), SIGTERM and `--duration` both end the
/// run with exit 0 and a final summary on stderr.
#[tokio::test]
async fn the_cli_writes_the_fragment_then_says_ready_and_stops_cleanly() {
    use std::process::Stdio;
    use tokio::io::AsyncReadExt as _;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fragment.toml");
    let run = |duration: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_wardgate-sim"))
            .args([
                "load",
                "--devices",
                "2",
                "--mix",
                "ble=1",
                "--duration",
                duration,
            ])
            .arg("--config-out")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    let mut child = run("0s");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert_eq!(line, "READY 2\n");
    let fragment: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(fragment["devices"].as_array().unwrap().len(), 2);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success(), "{stderr}");
    assert!(stderr.contains("load finished"), "{stderr}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "", "stdout holds only the READY line");

    let output = run("100ms").wait_with_output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"READY 2\n");
}
