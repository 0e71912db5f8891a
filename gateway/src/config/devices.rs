//! `[[devices]]` and the `[[subjects]]` they are bound to: each device table
//! deserialised by its `type`'s driver config and checked by its `Validate`;
//! Modbus RTU buses checked across their devices; every device bound to
//! exactly one subject.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use toml::de::DeValue;
use wardgate_drivers::ble::BleConfig;
use wardgate_drivers::modbus::{ModbusConfig, validate_bus};
use wardgate_drivers::pump::PumpConfig;
use wardgate_drivers::synthetic::SyntheticConfig;
use wardgate_model::config::PathSeg;
use wardgate_model::{
    DeviceId, DeviceKind, DeviceRef, MetricRegistry, Subject, SubjectId, SubjectKind,
    SubjectProfile,
};

use super::loader::{Loader, Spanned, child, id_problem};

/// One `[[devices]]` table.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub device: DeviceRef,
    /// The subject whose `devices` list names this device.
    pub subject: SubjectId,
    pub driver: DriverConfig,
}

/// The driver-specific part of a device table, chosen by its `type`.
#[derive(Debug, Clone)]
pub enum DriverConfig {
    Synthetic(SyntheticConfig),
    Pump(PumpConfig),
    Modbus(Box<ModbusConfig>),
    Ble(Box<BleConfig>),
}

impl DriverConfig {
    const TYPES: &'static [&'static str] = &["synthetic", "pump", "modbus", "ble"];

    pub(super) fn kind(&self) -> DeviceKind {
        match self {
            DriverConfig::Synthetic(_) => DeviceKind::Synthetic,
            DriverConfig::Pump(_) => DeviceKind::Pump,
            DriverConfig::Modbus(_) => DeviceKind::Modbus,
            DriverConfig::Ble(_) => DeviceKind::Ble,
        }
    }
}

#[derive(Debug, Deserialize)]
struct SubjectDecl {
    id: String,
    kind: SubjectKind,
    name: Option<String>,
    #[serde(default)]
    profile: SubjectProfile,
    #[serde(default)]
    devices: Vec<String>,
}

impl<'i> Loader<'i> {
    /// Every `[[devices]]` table, checked, and bound to the one subject that
    /// lists it; the `[[subjects]]` (`None` for one that did not parse).
    pub(super) fn devices_and_subjects(
        &mut self,
        metrics: &MetricRegistry,
    ) -> (Vec<DeviceConfig>, Vec<Option<Subject>>) {
        let device_tables = self.array_section("devices");
        // Ids of every device table, even one that fails to parse, so that a
        // broken device is reported once and not again as "unknown" in subjects.
        let device_ids: Vec<String> = device_tables
            .iter()
            .filter_map(|v| {
                v.get_ref()
                    .as_table()?
                    .get("id")?
                    .get_ref()
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        let devices: Vec<Option<(Spanned<String>, DriverConfig)>> = device_tables
            .into_iter()
            .enumerate()
            .map(|(i, v)| self.device(i, v, metrics))
            .collect();
        self.rtu_buses(&devices);
        let subjects = self.subjects(&devices, &device_ids);
        let all_subjects_parsed = subjects.iter().all(Option::is_some);

        // Bind each device to the one subject that lists it.
        let mut owner: HashMap<&str, &SubjectId> = HashMap::new();
        for s in subjects.iter().flatten() {
            for d in &s.devices {
                owner.entry(d.as_str()).or_insert(&s.id);
            }
        }
        let mut bound = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            let Some((id, driver)) = d else { continue };
            match owner.get(id.get_ref().as_str()) {
                Some(subject) => bound.push(DeviceConfig {
                    device: DeviceRef::new(DeviceId::from(id.get_ref().as_str()), driver.kind()),
                    subject: (*subject).clone(),
                    driver: driver.clone(),
                }),
                None if !all_subjects_parsed => {}
                None => self.error_at(
                    &[PathSeg::from("devices"), PathSeg::from(i), PathSeg::from("id")],
                    format!(
                        "device `{}` is not bound to any subject; list it in one subject's `devices`",
                        id.get_ref()
                    ),
                ),
            }
        }
        (bound, subjects)
    }

    fn device(
        &mut self,
        i: usize,
        value: Spanned<DeValue<'i>>,
        metrics: &MetricRegistry,
    ) -> Option<(Spanned<String>, DriverConfig)> {
        let path = [PathSeg::from("devices"), PathSeg::from(i)];
        let span = value.span();
        let DeValue::Table(mut table) = value.into_inner() else {
            self.error(span, "each [[devices]] entry must be a table".into());
            return None;
        };
        let id = self.take_string(&mut table, &path, "id", "[[devices]]");
        let kind = self.take_string(&mut table, &path, "type", "[[devices]]");
        let (id, kind) = (id?, kind?);
        if let Some(problem) = id_problem(id.get_ref()) {
            self.error(id.span(), format!("device id {problem}"));
        }
        let rest = Spanned::new(span, DeValue::Table(table));
        let what = format!("device `{}` (type {})", id.get_ref(), kind.get_ref());
        let driver = match kind.get_ref().as_str() {
            "synthetic" => {
                let c: SyntheticConfig = self.checked(rest, &path, &what, metrics)?;
                DriverConfig::Synthetic(c)
            }
            "pump" => {
                let c: PumpConfig = self.checked(rest, &path, &what, metrics)?;
                DriverConfig::Pump(c)
            }
            "modbus" => {
                let c: ModbusConfig = self.checked(rest, &path, &what, metrics)?;
                DriverConfig::Modbus(Box::new(c))
            }
            "ble" => {
                let c: BleConfig = self.checked(rest, &path, &what, metrics)?;
                DriverConfig::Ble(Box::new(c))
            }
            other => {
                self.error(
                    kind.span(),
                    format!(
                        "unknown device type `{other}`; allowed types: {}",
                        DriverConfig::TYPES.join(", ")
                    ),
                );
                return None;
            }
        };
        Some((id, driver))
    }

    /// Modbus RTU devices on one serial port share a bus: same line settings,
    /// distinct slave addresses. Problems are reported at the bus's first device.
    fn rtu_buses(&mut self, devices: &[Option<(Spanned<String>, DriverConfig)>]) {
        let mut buses: std::collections::BTreeMap<&str, Vec<(usize, &str, &ModbusConfig)>> =
            std::collections::BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            if let Some((id, DriverConfig::Modbus(c))) = d
                && let Some(port) = c.bus_key()
            {
                buses.entry(port).or_default().push((i, id.get_ref(), c));
            }
        }
        for members in buses.values() {
            let problems = validate_bus(members.iter().map(|(_, id, c)| (*id, *c)));
            let first = members[0].0;
            for p in problems {
                self.error_at(
                    &[
                        PathSeg::from("devices"),
                        PathSeg::from(first),
                        PathSeg::from("port"),
                    ],
                    p,
                );
            }
        }
    }

    fn subjects(
        &mut self,
        devices: &[Option<(Spanned<String>, DriverConfig)>],
        device_ids: &[String],
    ) -> Vec<Option<Subject>> {
        let known: HashSet<&str> = device_ids.iter().map(String::as_str).collect();
        let mut device_ids: Vec<&str> = known.iter().copied().collect();
        device_ids.sort_unstable();
        let mut bound_to: HashMap<String, String> = HashMap::new();
        let mut out = Vec::new();
        for (i, v) in self.array_section("subjects").into_iter().enumerate() {
            let path = [PathSeg::from("subjects"), PathSeg::from(i)];
            let Some(decl) = self.de::<SubjectDecl>(v, &path, "[[subjects]]") else {
                out.push(None);
                continue;
            };
            if let Some(problem) = id_problem(&decl.id) {
                self.error_at(&child(&path, "id"), format!("subject id {problem}"));
            }
            for (j, d) in decl.devices.iter().enumerate() {
                let at = [
                    path[0].clone(),
                    path[1].clone(),
                    PathSeg::from("devices"),
                    PathSeg::from(j),
                ];
                if !known.contains(d.as_str()) {
                    let listed = if device_ids.is_empty() {
                        "none are configured".to_owned()
                    } else {
                        format!("configured devices: {}", device_ids.join(", "))
                    };
                    self.error_at(
                        &at,
                        format!(
                            "subject `{}` is bound to unknown device `{d}`; {listed}",
                            decl.id
                        ),
                    );
                } else if let Some(other) = bound_to.get(d) {
                    self.error_at(
                        &at,
                        format!(
                            "device `{d}` is already bound to subject `{other}`; a device belongs to one subject"
                        ),
                    );
                } else {
                    bound_to.insert(d.clone(), decl.id.clone());
                }
            }
            out.push(Some(Subject {
                id: decl.id.into(),
                kind: decl.kind,
                name: decl.name,
                profile: decl.profile,
                devices: decl.devices.into_iter().map(DeviceId::from).collect(),
            }));
        }
        self.duplicates(
            "subjects",
            out.iter().map(|s| s.as_ref().map(|s| s.id.to_string())),
            "subject id",
        );
        self.duplicates(
            "devices",
            devices
                .iter()
                .map(|d| d.as_ref().map(|(id, _)| id.get_ref().clone())),
            "device id",
        );
        out
    }
}
