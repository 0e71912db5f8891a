//! The gateway configuration fragment a simulator writes with
//! `--config-out`: `[[metrics]]` for custom metrics, then one `[[subjects]]`
//! and one `[[devices]]` table per simulated device, with the addresses,
//! ports and register maps the simulator actually serves. Append
//! `[gateway]`, `[spool]` and `[[sinks]]` and `wardgate check-config`
//! accepts it. `wardgate-sim load`, `modbus` and `pump` all write through
//! this one writer, so their fragments read alike.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use wardgate_model::Metric;

use crate::modbus::SimRegister;

/// `"1s"`, `"250ms"`: humantime, as the gateway parses durations.
pub(crate) fn duration(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Why a fragment cannot describe a simulated device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragmentError {
    #[error(
        "{device}: the {table} at address {address} has no `metric`; the gateway needs one for each register (a built-in metric, or a custom one with `unit`)"
    )]
    NoMetric {
        device: String,
        table: &'static str,
        address: u16,
    },
    #[error(
        "{device}: the custom metric `{metric}` (not a built-in one) needs a `unit` (UCUM) to be declared in [[metrics]]"
    )]
    NoUnit { device: String, metric: String },
}

/// How the gateway reaches a Modbus device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ModbusLink<'a> {
    Tcp(SocketAddr),
    /// The bus's serial device (a pseudo-terminal).
    Rtu(&'a str),
}

/// A pump's or Modbus device's poll timing; the gateway's defaults when absent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) poll_interval: Duration,
    /// Pumps: `reply_timeout`; Modbus: `timeout`.
    pub(crate) timeout: Duration,
}

/// A fragment being written.
#[derive(Debug)]
pub(crate) struct Fragment {
    metrics: String,
    declared: BTreeSet<String>,
    body: String,
    header: String,
}

impl Fragment {
    /// `header`: the comment on the first line, e.g. "Written by `wardgate-sim load`".
    pub(crate) fn new(header: &str) -> Self {
        Self {
            metrics: String::new(),
            declared: BTreeSet::new(),
            body: String::new(),
            header: format!("# {header}\n\n"),
        }
    }

    /// A subject with its devices; `kind`: `bed`, `patient` or `room`.
    pub(crate) fn subject(&mut self, id: &str, kind: &str, devices: &[&str]) {
        let devices: Vec<String> = devices.iter().map(|d| toml_str(d)).collect();
        let _ = writeln!(
            self.body,
            "[[subjects]]\nid = {}\nkind = \"{kind}\"\ndevices = [{}]\n",
            toml_str(id),
            devices.join(", ")
        );
    }

    pub(crate) fn ble(&mut self, id: &str, address: &str, simulator: SocketAddr) {
        let _ = writeln!(
            self.body,
            "[[devices]]\nid = {}\ntype = \"ble\"\naddresses = [{}]\nsimulator = \"{simulator}\"\n",
            toml_str(id),
            toml_str(address)
        );
    }

    pub(crate) fn pump(&mut self, id: &str, port: &Path, timing: Option<Timing>) {
        let _ = write!(
            self.body,
            "[[devices]]\nid = {}\ntype = \"pump\"\nport = {}\n",
            toml_str(id),
            toml_str(&port.display().to_string())
        );
        if let Some(t) = timing {
            let _ = write!(
                self.body,
                "poll_interval = \"{}\"\nreply_timeout = \"{}\"\n",
                duration(t.poll_interval),
                duration(t.timeout)
            );
        }
        self.body.push('\n');
    }

    /// A Modbus device with its register map; each register needs a
    /// `metric`, and a custom metric a `unit` (declared once in `[[metrics]]`).
    pub(crate) fn modbus(
        &mut self,
        id: &str,
        link: ModbusLink<'_>,
        unit_id: u8,
        timing: Option<Timing>,
        registers: &[SimRegister],
    ) -> Result<(), FragmentError> {
        let mut t = format!("[[devices]]\nid = {}\ntype = \"modbus\"\n", toml_str(id));
        match link {
            ModbusLink::Tcp(addr) => {
                let _ = writeln!(t, "address = \"{addr}\"");
            }
            ModbusLink::Rtu(port) => {
                let _ = writeln!(t, "port = {}", toml_str(port));
            }
        }
        let _ = writeln!(t, "unit_id = {unit_id}");
        if let Some(timing) = timing {
            let _ = write!(
                t,
                "poll_interval = \"{}\"\ntimeout = \"{}\"\n",
                duration(timing.poll_interval),
                duration(timing.timeout)
            );
        }
        for r in registers {
            let metric = r.metric.as_deref().ok_or_else(|| FragmentError::NoMetric {
                device: id.to_owned(),
                table: r.table.as_str(),
                address: r.address,
            })?;
            self.declare(id, metric, r.unit.as_deref())?;
            let _ = write!(
                t,
                "[[devices.registers]]\ntable = \"{}\"\naddress = {}\ntype = \"{}\"\n",
                r.table.as_str(),
                r.address,
                r.data_type.as_str()
            );
            if r.order != "ABCD" {
                let _ = writeln!(t, "order = {}", toml_str(&r.order));
            }
            if r.scale != 1.0 {
                let _ = writeln!(t, "scale = {:?}", r.scale);
            }
            if r.offset != 0.0 {
                let _ = writeln!(t, "offset = {:?}", r.offset);
            }
            if let Some(bit) = r.bit {
                let _ = writeln!(t, "bit = {bit}");
            }
            let _ = writeln!(t, "metric = {}", toml_str(metric));
        }
        self.body.push_str(&t);
        self.body.push('\n');
        Ok(())
    }

    /// Declares a custom metric once; a built-in one needs nothing.
    fn declare(
        &mut self,
        device: &str,
        metric: &str,
        unit: Option<&str>,
    ) -> Result<(), FragmentError> {
        if Metric::builtin(metric).is_some() || self.declared.contains(metric) {
            return Ok(());
        }
        let unit = unit.ok_or_else(|| FragmentError::NoUnit {
            device: device.to_owned(),
            metric: metric.to_owned(),
        })?;
        let _ = writeln!(
            self.metrics,
            "[[metrics]]\nname = {}\nunit = {}\n",
            toml_str(metric),
            toml_str(unit)
        );
        self.declared.insert(metric.to_owned());
        Ok(())
    }

    pub(crate) fn finish(self) -> String {
        self.header + &self.metrics + &self.body
    }
}

/// Writes a fragment to `path` under a temporary name first, so a reader
/// waiting for the file never sees half of it.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::SimConfig;

    fn registers(metric: Option<&str>, unit: Option<&str>) -> Vec<SimRegister> {
        let mut r = SimConfig::ward_scenario().tcp[0].device.registers[0].clone();
        r.metric = metric.map(str::to_owned);
        r.unit = unit.map(str::to_owned);
        vec![r.clone(), r]
    }

    fn modbus(registers: &[SimRegister]) -> Result<String, FragmentError> {
        let mut f = Fragment::new("test");
        let link = ModbusLink::Tcp(SocketAddr::from(([127, 0, 0, 1], 502)));
        f.modbus("d", link, 1, None, registers)?;
        Ok(f.finish())
    }

    #[test]
    fn a_register_needs_a_metric_and_a_custom_metric_a_unit() {
        let err = modbus(&registers(None, None)).unwrap_err();
        assert!(
            matches!(err, FragmentError::NoMetric { address: 0, .. }),
            "{err}"
        );
        let err = modbus(&registers(Some("co2"), None)).unwrap_err();
        assert!(matches!(err, FragmentError::NoUnit { .. }), "{err}");
    }

    #[test]
    fn a_custom_metric_is_declared_once_and_a_builtin_never() {
        let doc: toml::Table = modbus(&registers(Some("co2"), Some("[ppm]")))
            .unwrap()
            .parse()
            .unwrap();
        let metrics = doc["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0]["unit"].as_str(), Some("[ppm]"));
        let doc: toml::Table = modbus(&registers(Some("room_temp"), None))
            .unwrap()
            .parse()
            .unwrap();
        assert!(!doc.contains_key("metrics"));
        assert_eq!(doc["devices"][0]["registers"].as_array().unwrap().len(), 2);
    }
}
