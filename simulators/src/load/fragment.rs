//! The gateway configuration fragment that reads the load: one `bed`
//! subject per device and the device's table, written by the simulators'
//! one fragment writer. No `[rules]`: without it the gateway runs every
//! built-in pack (chronic and infusion included). Modbus and pumps are
//! polled every interval; their timeouts stay below it.

use std::time::Duration;

use super::{Endpoint, LoadDevice, modbus_registers};
use crate::fragment::{Fragment, FragmentError, ModbusLink, Timing};

pub(super) fn fragment(
    devices: &[LoadDevice],
    interval: Duration,
) -> Result<String, FragmentError> {
    // Pumps: the reply timeout must be shorter than the poll interval.
    let pump = Timing {
        poll_interval: interval,
        timeout: Duration::from_millis(500).min(interval / 2),
    };
    let modbus = Timing {
        poll_interval: interval,
        timeout: Duration::from_secs(1).min(interval),
    };
    let registers = modbus_registers();
    let mut f = Fragment::new("Written by `wardgate-sim load`: one subject per simulated device.");
    for d in devices {
        f.subject(&d.subject, "bed", &[&d.device]);
        match &d.endpoint {
            Endpoint::Ble { addr, address } => f.ble(&d.device, address, *addr),
            Endpoint::Modbus(addr) => {
                f.modbus(
                    &d.device,
                    ModbusLink::Tcp(*addr),
                    1,
                    Some(modbus),
                    &registers,
                )?;
            }
            Endpoint::Pump(path) => f.pump(&d.device, path, Some(pump)),
        }
    }
    Ok(f.finish())
}
