//! Which GATT characteristic a payload came from, and how users name one
//! (`2a35`, `0x2A35`, or the full 128-bit SIG UUID).

use std::fmt;
use std::str::FromStr;

/// The Bluetooth SIG base UUID suffix: `0000xxxx-0000-1000-8000-00805f9b34fb`.
const SIG_BASE_SUFFIX: &str = "-0000-1000-8000-00805f9b34fb";

/// A characteristic this module understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Characteristic {
    /// 0x2A37, Heart Rate Service (HRS).
    HeartRateMeasurement,
    /// 0x2A35, Blood Pressure Service (BLS).
    BloodPressureMeasurement,
    /// 0x2A36, Blood Pressure Service (BLS).
    IntermediateCuffPressure,
    /// 0x2A1C, Health Thermometer Service (HTS).
    TemperatureMeasurement,
    /// 0x2A18, Glucose Service (GLS).
    GlucoseMeasurement,
    /// 0x2A52, Glucose Service: fetches stored records.
    RecordAccessControlPoint,
    /// 0x2A5E, Pulse Oximeter Service (PLXS).
    PlxSpotCheck,
    /// 0x2A5F, Pulse Oximeter Service (PLXS).
    PlxContinuous,
    /// 0x2A9D, Weight Scale Service (WSS).
    WeightMeasurement,
    /// 0x2A9C, Body Composition Service (BCS).
    BodyComposition,
    /// 0x2A19, Battery Service (BAS).
    BatteryLevel,
}

/// The characteristic text named no characteristic this module decodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown characteristic {0:?}: expected a 16-bit UUID such as 2a35 or 0x2A35, or a 128-bit SIG UUID such as 00002a35-0000-1000-8000-00805f9b34fb, of one of: {list}",
    list = Characteristic::ALL.iter().map(|c| c.short()).collect::<Vec<_>>().join(", ")
)]
pub struct UnknownCharacteristic(pub String);

impl Characteristic {
    /// Every characteristic, measurement ones first.
    pub const ALL: [Characteristic; 11] = [
        Characteristic::HeartRateMeasurement,
        Characteristic::BloodPressureMeasurement,
        Characteristic::IntermediateCuffPressure,
        Characteristic::TemperatureMeasurement,
        Characteristic::GlucoseMeasurement,
        Characteristic::PlxSpotCheck,
        Characteristic::PlxContinuous,
        Characteristic::WeightMeasurement,
        Characteristic::BodyComposition,
        Characteristic::BatteryLevel,
        Characteristic::RecordAccessControlPoint,
    ];

    /// The assigned 16-bit UUID.
    pub const fn uuid16(self) -> u16 {
        match self {
            Characteristic::HeartRateMeasurement => 0x2A37,
            Characteristic::BloodPressureMeasurement => 0x2A35,
            Characteristic::IntermediateCuffPressure => 0x2A36,
            Characteristic::TemperatureMeasurement => 0x2A1C,
            Characteristic::GlucoseMeasurement => 0x2A18,
            Characteristic::RecordAccessControlPoint => 0x2A52,
            Characteristic::PlxSpotCheck => 0x2A5E,
            Characteristic::PlxContinuous => 0x2A5F,
            Characteristic::WeightMeasurement => 0x2A9D,
            Characteristic::BodyComposition => 0x2A9C,
            Characteristic::BatteryLevel => 0x2A19,
        }
    }

    /// The 16-bit UUID of the service that carries this characteristic.
    pub const fn service16(self) -> u16 {
        match self {
            Characteristic::HeartRateMeasurement => 0x180D,
            Characteristic::BloodPressureMeasurement | Characteristic::IntermediateCuffPressure => {
                0x1810
            }
            Characteristic::TemperatureMeasurement => 0x1809,
            Characteristic::GlucoseMeasurement | Characteristic::RecordAccessControlPoint => 0x1808,
            Characteristic::PlxSpotCheck | Characteristic::PlxContinuous => 0x1822,
            Characteristic::WeightMeasurement => 0x181D,
            Characteristic::BodyComposition => 0x181B,
            Characteristic::BatteryLevel => 0x180F,
        }
    }

    /// The name of a service this module reads (`wardgate devices scan`
    /// prints it beside the UUID), by its 16-bit UUID.
    pub const fn service_name(service16: u16) -> Option<&'static str> {
        Some(match service16 {
            0x180D => "heart rate",
            0x1810 => "blood pressure",
            0x1809 => "health thermometer",
            0x1808 => "glucose",
            0x1822 => "pulse oximeter",
            0x181D => "weight scale",
            0x181B => "body composition",
            0x180F => "battery",
            _ => return None,
        })
    }

    pub fn from_uuid16(uuid: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.uuid16() == uuid)
    }

    /// The full 128-bit UUID as a `u128` (SIG base UUID).
    pub const fn uuid128(self) -> u128 {
        sig_uuid128(self.uuid16())
    }

    /// The characteristic with this 128-bit UUID, if it is a SIG one we know.
    pub fn from_uuid128(uuid: u128) -> Option<Self> {
        let low = uuid & ((1 << 96) - 1);
        let high = uuid >> 96;
        if low != sig_uuid128(0) || high > 0xFFFF {
            return None;
        }
        Self::from_uuid16(high as u16)
    }

    /// Lower-case 4-digit form used in JSON and frames: `2a35`.
    pub fn short(self) -> String {
        format!("{:04x}", self.uuid16())
    }

    pub const fn name(self) -> &'static str {
        match self {
            Characteristic::HeartRateMeasurement => "Heart Rate Measurement",
            Characteristic::BloodPressureMeasurement => "Blood Pressure Measurement",
            Characteristic::IntermediateCuffPressure => "Intermediate Cuff Pressure",
            Characteristic::TemperatureMeasurement => "Temperature Measurement",
            Characteristic::GlucoseMeasurement => "Glucose Measurement",
            Characteristic::RecordAccessControlPoint => "Record Access Control Point",
            Characteristic::PlxSpotCheck => "PLX Spot-Check Measurement",
            Characteristic::PlxContinuous => "PLX Continuous Measurement",
            Characteristic::WeightMeasurement => "Weight Measurement",
            Characteristic::BodyComposition => "Body Composition Measurement",
            Characteristic::BatteryLevel => "Battery Level",
        }
    }
}

/// A 16-bit SIG UUID placed in the Bluetooth base UUID.
pub const fn sig_uuid128(uuid16: u16) -> u128 {
    ((uuid16 as u128) << 96) | 0x0000_0000_0000_1000_8000_0080_5f9b_34fb
}

impl fmt::Display for Characteristic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x} {}", self.uuid16(), self.name())
    }
}

impl FromStr for Characteristic {
    type Err = UnknownCharacteristic;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownCharacteristic(text.to_owned());
        let t = text.trim().to_ascii_lowercase();
        let t = t.strip_prefix("0x").unwrap_or(&t);
        let short = if let Some(head) = t.strip_suffix(SIG_BASE_SUFFIX) {
            // 0000xxxx-...
            head.strip_prefix("0000").filter(|h| h.len() == 4)
        } else if t.len() == 4 {
            Some(t)
        } else {
            None
        };
        let short = short.ok_or_else(unknown)?;
        if !short.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let uuid = u16::from_str_radix(short, 16).map_err(|_| unknown())?;
        Characteristic::from_uuid16(uuid).ok_or_else(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_blood_pressure_parses() {
        for text in [
            "2a35",
            "2A35",
            "0x2A35",
            "0x2a35",
            " 00002a35-0000-1000-8000-00805f9b34fb ",
            "00002A35-0000-1000-8000-00805F9B34FB",
        ] {
            assert_eq!(
                text.parse::<Characteristic>(),
                Ok(Characteristic::BloodPressureMeasurement),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        for text in [
            "",
            "2a3",
            "2a99",
            "+a35",
            "00002a35-0000-1000-8000-00805f9b34fc",
            "12342a35-0000-1000-8000-00805f9b34fb",
        ] {
            let err = text.parse::<Characteristic>().unwrap_err();
            assert!(err.to_string().contains("2a37"), "{err}");
        }
    }

    #[test]
    fn uuid128_round_trips() {
        for c in Characteristic::ALL {
            assert_eq!(Characteristic::from_uuid128(c.uuid128()), Some(c));
        }
        // 0x2A37 in the base UUID, written out by hand.
        assert_eq!(
            Characteristic::HeartRateMeasurement.uuid128(),
            0x0000_2a37_0000_1000_8000_0080_5f9b_34fb
        );
    }
}
