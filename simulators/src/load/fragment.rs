//! The gateway configuration fragment that reads the load: one `bed`
//! subject per device and the device's table. No `[rules]`: without it the
//! gateway runs every built-in pack (chronic and infusion included).
//! Modbus and pumps are polled every interval; their timeouts stay below it.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Endpoint, LoadDevice};

/// `"1s"`, `"250ms"`: humantime, as the gateway parses durations.
fn duration(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

pub(super) fn fragment(devices: &[LoadDevice], interval: Duration) -> String {
    let poll = duration(interval);
    // Pumps: the reply timeout must be shorter than the poll interval.
    let pump_timeout = duration(Duration::from_millis(500).min(interval / 2));
    let modbus_timeout = duration(Duration::from_secs(1).min(interval));
    let mut t =
        String::from("# Written by `wardgate-sim load`: one subject per simulated device.\n\n");
    for d in devices {
        let _ = writeln!(
            t,
            "[[subjects]]\nid = \"{}\"\nkind = \"bed\"\ndevices = [\"{}\"]\n",
            d.subject, d.device
        );
        let _ = write!(t, "[[devices]]\nid = \"{}\"\n", d.device);
        match &d.endpoint {
            Endpoint::Ble { addr, address } => {
                let _ = writeln!(
                    t,
                    "type = \"ble\"\naddresses = [\"{address}\"]\nsimulator = \"{addr}\"\n"
                );
            }
            Endpoint::Modbus(addr) => {
                let _ = writeln!(
                    t,
                    "type = \"modbus\"\naddress = \"{addr}\"\nunit_id = 1\npoll_interval = \"{poll}\"\ntimeout = \"{modbus_timeout}\"\n\
                     [[devices.registers]]\ntable = \"input_register\"\naddress = 0\ntype = \"i16\"\nscale = 0.1\nmetric = \"room_temp\"\n\
                     [[devices.registers]]\ntable = \"input_register\"\naddress = 1\ntype = \"u16\"\nscale = 0.1\nmetric = \"humidity\"\n"
                );
            }
            Endpoint::Pump(path) => {
                let _ = writeln!(
                    t,
                    "type = \"pump\"\nport = {}\npoll_interval = \"{poll}\"\nreply_timeout = \"{pump_timeout}\"\n",
                    toml_str(&path.display().to_string())
                );
            }
        }
    }
    t
}
