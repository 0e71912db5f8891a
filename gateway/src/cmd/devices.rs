//! `wardgate devices scan`: what a field engineer pastes into the
//! configuration — serial ports by path, Bluetooth LE devices by address
//! with the services they advertise. It only lists: it never opens a serial
//! port and never connects to a radio device (a simulator's advertisement
//! is the first line of its connection, so that one is opened and closed).
//!
//! Exit codes: 0 both lists were made; 1 one of them could not be (no
//! Bluetooth adapter, no D-Bus system bus, no sysfs), the other is still
//! printed and the reason is one line on standard error.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use wardgate_drivers::ble::transport::{BtleplugTransport, Seen, SimTransport};
use wardgate_drivers::ble::{Characteristic, sig_uuid128};

/// What to scan and how to print it.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// How long to listen for Bluetooth LE advertisements.
    pub timeout: Duration,
    /// One JSON object instead of tables.
    pub json: bool,
    /// `wardgate-sim ble` devices to ask instead of the radio.
    pub simulators: Vec<SocketAddr>,
}

/// The whole answer; `--json` prints it as is.
#[derive(Debug, Serialize)]
struct Report {
    serial: SerialReport,
    bluetooth: BluetoothReport,
}

#[derive(Debug, Serialize)]
struct SerialReport {
    ports: Vec<SerialPort>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SerialPort {
    path: String,
    /// `usb`, `pci`, `bluetooth` (rfcomm) or `other` (on-board UARTs).
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usb: Option<UsbDetails>,
}

#[derive(Debug, Serialize)]
struct UsbDetails {
    /// `vid:pid` in hex, as `lsusb` prints it.
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial_number: Option<String>,
}

#[derive(Debug, Serialize)]
struct BluetoothReport {
    /// Where the devices were heard: `radio` or `simulator`.
    source: &'static str,
    listened_s: f64,
    devices: Vec<BleDevice>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct BleDevice {
    address: String,
    name: Option<String>,
    rssi_dbm: Option<i16>,
    services: Vec<Service>,
}

#[derive(Debug, Serialize)]
struct Service {
    /// `180d` for a SIG service, the full UUID otherwise.
    uuid: String,
    /// The health service it is, when wardgate reads it.
    name: Option<&'static str>,
}

impl From<Seen> for BleDevice {
    fn from(seen: Seen) -> Self {
        BleDevice {
            address: seen.address.to_string(),
            name: seen.name,
            rssi_dbm: seen.rssi,
            services: seen.services.into_iter().map(Service::from).collect(),
        }
    }
}

impl From<u128> for Service {
    fn from(uuid: u128) -> Self {
        let short = (uuid >> 96) as u16;
        if uuid == sig_uuid128(short) {
            Service {
                uuid: format!("{short:04x}"),
                name: Characteristic::service_name(short),
            }
        } else {
            Service {
                uuid: uuid::Uuid::from_u128(uuid).to_string(),
                name: None,
            }
        }
    }
}

/// `wardgate devices scan`.
pub fn scan(options: &ScanOptions) -> ExitCode {
    let serial = serial_ports();
    let bluetooth = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(bluetooth(options)),
        Err(e) => BluetoothReport {
            source: "radio",
            listened_s: 0.0,
            devices: Vec::new(),
            errors: vec![format!("cannot start the async runtime: {e}")],
        },
    };
    let report = Report { serial, bluetooth };
    if options.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("cannot encode the scan as JSON: {e}"),
        }
    } else {
        print!("{}", table(&report));
    }
    let errors: Vec<&String> = report
        .serial
        .errors
        .iter()
        .chain(&report.bluetooth.errors)
        .collect();
    for e in &errors {
        eprintln!("{e}");
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The host's serial ports, from sysfs (serialport without libudev).
fn serial_ports() -> SerialReport {
    // serialport's sysfs enumeration panics when /sys/class/tty is missing
    // (a container without sysfs): say so instead.
    if !std::path::Path::new("/sys/class/tty").is_dir() {
        return SerialReport {
            ports: Vec::new(),
            errors: vec![
                "serial ports: cannot list them: /sys/class/tty is missing (is sysfs mounted?)"
                    .to_owned(),
            ],
        };
    }
    match serialport::available_ports() {
        Ok(found) => {
            let mut ports: Vec<SerialPort> = found.into_iter().map(SerialPort::from).collect();
            ports.sort_by(|a, b| a.path.cmp(&b.path));
            SerialReport {
                ports,
                errors: Vec::new(),
            }
        }
        Err(e) => SerialReport {
            ports: Vec::new(),
            errors: vec![format!("serial ports: cannot list them: {e}")],
        },
    }
}

impl From<serialport::SerialPortInfo> for SerialPort {
    fn from(info: serialport::SerialPortInfo) -> Self {
        let (kind, usb) = match info.port_type {
            serialport::SerialPortType::UsbPort(usb) => (
                "usb",
                Some(UsbDetails {
                    id: format!("{:04x}:{:04x}", usb.vid, usb.pid),
                    manufacturer: usb.manufacturer,
                    product: usb.product,
                    serial_number: usb.serial_number,
                }),
            ),
            serialport::SerialPortType::PciPort => ("pci", None),
            serialport::SerialPortType::BluetoothPort => ("bluetooth", None),
            serialport::SerialPortType::Unknown => ("other", None),
        };
        SerialPort {
            path: info.port_name,
            kind,
            usb,
        }
    }
}

/// The Bluetooth LE half: the radio for `timeout`, or each simulator.
async fn bluetooth(options: &ScanOptions) -> BluetoothReport {
    let mut report = BluetoothReport {
        source: if options.simulators.is_empty() {
            "radio"
        } else {
            "simulator"
        },
        listened_s: options.timeout.as_secs_f64(),
        devices: Vec::new(),
        errors: Vec::new(),
    };
    if options.simulators.is_empty() {
        match BtleplugTransport::new().await {
            Ok(radio) => match radio.scan(options.timeout).await {
                Ok(seen) => report.devices = seen.into_iter().map(BleDevice::from).collect(),
                Err(e) => report.errors.push(format!("bluetooth: {e}")),
            },
            Err(e) => report.errors.push(format!("bluetooth: {e}")),
        }
        return report;
    }
    let mut seen = Vec::new();
    for &addr in &options.simulators {
        match SimTransport::new(addr).advertisement(options.timeout).await {
            Ok(ad) => seen.push(Seen {
                address: ad.address,
                name: None,
                rssi: None,
                services: ad.services,
            }),
            Err(e) => report
                .errors
                .push(format!("bluetooth: simulator {addr}: {e}")),
        }
    }
    seen.sort_by_key(|s| s.address);
    report.devices = seen.into_iter().map(BleDevice::from).collect();
    report
}

/// The report for people: two aligned tables and how to use an address.
fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let serial: Vec<[String; 3]> = report
        .serial
        .ports
        .iter()
        .map(|p| {
            let details = p.usb.as_ref().map_or_else(String::new, |u| {
                [
                    Some(u.id.clone()),
                    u.manufacturer.clone(),
                    u.product.clone(),
                    u.serial_number.as_ref().map(|s| format!("serial {s}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("  ")
            });
            [p.path.clone(), p.kind.to_owned(), details]
        })
        .collect();
    let _ = writeln!(out, "Serial ports ({}):", serial.len());
    out.push_str(&aligned(&["PORT", "TYPE", "DETAILS"], &serial));

    let ble = &report.bluetooth;
    let devices: Vec<[String; 4]> = ble
        .devices
        .iter()
        .map(|d| {
            let services = d
                .services
                .iter()
                .map(|s| match s.name {
                    Some(name) => format!("{} {name}", s.uuid),
                    None => s.uuid.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            [
                d.address.clone(),
                d.rssi_dbm.map_or_else(String::new, |r| format!("{r} dBm")),
                d.name.clone().unwrap_or_default(),
                services,
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "\nBluetooth LE devices ({}, {} for {}):",
        devices.len(),
        ble.source,
        humantime::format_duration(Duration::from_secs_f64(ble.listened_s))
    );
    if devices.is_empty() && !ble.errors.is_empty() {
        out.push_str("  (none: the scan failed, see the error)\n");
    } else {
        out.push_str(&aligned(
            &["ADDRESS", "SIGNAL", "NAME", "SERVICES"],
            &devices,
        ));
    }
    if let Some(first) = ble.devices.first() {
        let _ = writeln!(
            out,
            "\nBind a device to its subject by address, in its [[devices]] entry:\n  type = \"ble\"\n  addresses = [\"{}\"]",
            first.address
        );
    }
    out
}

/// Rows under a header, columns padded to their widest cell; `(none)`
/// for no rows.
fn aligned<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    if rows.is_empty() {
        return "  (none)\n".to_owned();
    }
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells.zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  {}\n", text.join("  ").trim_end())
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Checks a `--timeout`: a duration from 1 s to 5 min.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if (Duration::from_secs(1)..=Duration::from_secs(300)).contains(&d) {
        Ok(d)
    } else {
        Err("a scan listens from 1s to 5m".to_owned())
    }
}
