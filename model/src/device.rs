//! Devices and what they report about themselves (connection state, alarms).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{AlertKind, DeviceId, SubjectId, Timestamp};

/// Which driver family a device belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Bluetooth LE health device (wearable, oximeter, cuff, thermometer, glucometer, scale).
    Ble,
    /// Infusion pump on a serial line.
    Pump,
    /// Modbus TCP or RTU sensor.
    Modbus,
    /// Configured synthetic source (demo and testing without hardware).
    Synthetic,
    /// A part of the gateway itself (its spool): the subject of the
    /// technical alarms an alarm system raises about its own failures.
    Gateway,
}

crate::wire::wire_names!(DeviceKind {
    Ble => "ble",
    Pump => "pump",
    Modbus => "modbus",
    Synthetic => "synthetic",
    Gateway => "gateway",
});

/// A device as events name it: its configured id and its kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceRef {
    pub id: DeviceId,
    pub kind: DeviceKind,
}

impl DeviceRef {
    pub fn new(id: DeviceId, kind: DeviceKind) -> Self {
        Self { id, kind }
    }
}

/// Whether the gateway can currently talk to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Online,
    Offline,
}

crate::wire::wire_names!(DeviceState {
    Online => "online",
    Offline => "offline",
});

/// A change in a device's connection state (connected, lost, unreachable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub at: Timestamp,
    pub subject: SubjectId,
    pub device: DeviceRef,
    pub state: DeviceState,
    /// Why, in words an engineer can act on ("no reply to 3 status polls").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Arc<str>>,
}

/// Start or end of a condition a device reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmPhase {
    Start,
    End,
}

crate::wire::wire_names!(AlarmPhase {
    Start => "start",
    End => "end",
});

/// A condition a device itself reports: a pump's occlusion, an oximeter's lost
/// sensor contact, a low battery. Drivers emit `Start` when it appears and `End`
/// when it goes; the rules engine decides what nurses see.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceAlarm {
    pub at: Timestamp,
    pub subject: SubjectId,
    pub device: DeviceRef,
    /// snake_case alarm code (`occlusion_downstream`, `sensor_contact_lost`,
    /// `unknown`); see the device docs for each family's vocabulary.
    pub alarm: Arc<str>,
    pub phase: AlarmPhase,
    pub kind: AlertKind,
    /// The device's own words, kept verbatim (always set for `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Arc<str>>,
}
