//! What a decoder returns: readings in canonical units with their time,
//! metrics the device marked unavailable, status flags and extras; and the
//! typed error for payloads that break the spec.

use smallvec::SmallVec;
use wardgate_model::{Metric, TimeSource, Timestamp};

use super::Characteristic;
pub use super::ieee11073::Unavailability;

/// One value in the metric's canonical unit (DESIGN.md). Its time is the
/// notification's ([`Decoded::at`]): every field of one payload shares it.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub metric: Metric,
    /// Finite, in `metric.unit()`.
    pub value: f64,
}

/// A metric the payload carried but with no number (special value, 0xFFFF,
/// control solution, device-flagged invalid).
#[derive(Clone, Debug, PartialEq)]
pub struct Unavailable {
    pub metric: Metric,
    pub reason: Unavailability,
}

macro_rules! status_flags {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// A status bit a device reported with a measurement.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum StatusFlag { $( $(#[$doc])* $variant, )* }

        impl StatusFlag {
            pub const ALL: &'static [StatusFlag] = &[$(StatusFlag::$variant),*];

            /// snake_case name used in JSON and device alarms.
            pub const fn as_str(self) -> &'static str {
                match self { $( StatusFlag::$variant => $name, )* }
            }
        }
    };
}

status_flags! {
    // Heart rate (HRS)
    /// Sensor contact is supported and not detected.
    SensorContactLost => "sensor_contact_lost",
    // Blood pressure (BLS)
    BodyMovement => "body_movement",
    CuffTooLoose => "cuff_too_loose",
    IrregularPulse => "irregular_pulse",
    PulseRateAboveRange => "pulse_rate_above_range",
    PulseRateBelowRange => "pulse_rate_below_range",
    ImproperPosition => "improper_measurement_position",
    // Glucose sensor status annunciation (GLS)
    BatteryLow => "battery_low",
    SensorMalfunction => "sensor_malfunction",
    SampleSizeInsufficient => "sample_size_insufficient",
    StripInsertionError => "strip_insertion_error",
    StripTypeIncorrect => "strip_type_incorrect",
    ResultAboveRange => "result_above_range",
    ResultBelowRange => "result_below_range",
    TemperatureTooHigh => "temperature_too_high",
    TemperatureTooLow => "temperature_too_low",
    ReadInterrupted => "read_interrupted",
    GeneralDeviceFault => "general_device_fault",
    TimeFault => "time_fault",
    // PLX measurement status
    MeasurementOngoing => "measurement_ongoing",
    EarlyEstimatedData => "early_estimated_data",
    ValidatedData => "validated_data",
    FullyQualifiedData => "fully_qualified_data",
    DataFromStorage => "data_from_measurement_storage",
    DataForDemonstration => "data_for_demonstration",
    DataForTesting => "data_for_testing",
    CalibrationOngoing => "calibration_ongoing",
    MeasurementUnavailable => "measurement_unavailable",
    QuestionableMeasurement => "questionable_measurement",
    InvalidMeasurement => "invalid_measurement",
    // PLX device and sensor status
    ExtendedDisplayUpdateOngoing => "extended_display_update_ongoing",
    EquipmentMalfunction => "equipment_malfunction",
    SignalProcessingIrregularity => "signal_processing_irregularity",
    InadequateSignal => "inadequate_signal",
    PoorSignal => "poor_signal",
    LowPerfusion => "low_perfusion",
    ErraticSignal => "erratic_signal",
    NonpulsatileSignal => "nonpulsatile_signal",
    QuestionablePulse => "questionable_pulse",
    SignalAnalysisOngoing => "signal_analysis_ongoing",
    SensorInterference => "sensor_interference",
    SensorUnconnected => "sensor_unconnected_to_user",
    UnknownSensorConnected => "unknown_sensor_connected",
    SensorDisplaced => "sensor_displaced",
    SensorMalfunctioning => "sensor_malfunctioning",
    SensorDisconnected => "sensor_disconnected",
    /// PLX spot-check: the device clock is not set.
    DeviceClockNotSet => "device_clock_not_set",
}

/// A set of [`StatusFlag`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StatusFlags(u64);

impl StatusFlags {
    pub fn insert(&mut self, flag: StatusFlag) {
        self.0 |= 1 << flag as u8;
    }

    /// Inserts `flag` when `bit` of `bits` is set.
    pub(crate) fn set_if(&mut self, bits: u32, bit: u32, flag: StatusFlag) {
        if bits & (1 << bit) != 0 {
            self.insert(flag);
        }
    }

    pub fn contains(self, flag: StatusFlag) -> bool {
        self.0 & (1 << flag as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = StatusFlag> {
        StatusFlag::ALL
            .iter()
            .copied()
            .filter(move |f| self.contains(*f))
    }
}

impl FromIterator<StatusFlag> for StatusFlags {
    fn from_iter<I: IntoIterator<Item = StatusFlag>>(iter: I) -> Self {
        let mut s = StatusFlags::default();
        for f in iter {
            s.insert(f);
        }
        s
    }
}

/// A field that is not a reading: sequence number, user id, type codes.
#[derive(Clone, Debug, PartialEq)]
pub struct Extra {
    /// snake_case key (`sequence_number`, `user_id`, `temperature_type` ...).
    pub key: &'static str,
    pub value: ExtraValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExtraValue {
    Int(i64),
    Number(f64),
    Text(&'static str),
    Unavailable(Unavailability),
}

/// Why a decoded timestamp is the gateway's and not the device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeFallback {
    /// The payload carried no timestamp.
    Absent,
    /// Year, month or day 0: the device clock is not set.
    Unset,
    /// Not a calendar date-time, before 2000, or more than a day ahead of the gateway.
    Implausible,
    /// The device said its clock is not set (PLX).
    ClockNotSet,
}

impl TimeFallback {
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeFallback::Absent => "absent",
            TimeFallback::Unset => "unset",
            TimeFallback::Implausible => "implausible",
            TimeFallback::ClockNotSet => "clock_not_set",
        }
    }
}

/// Inline capacity for readings: every characteristic but Body Composition,
/// and heart-rate notifications with up to 6 RR intervals (typical straps send
/// 1–3 a second), decode without touching the heap; longer ones spill.
pub const INLINE_MEASUREMENTS: usize = 8;

/// Everything one notification said.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub characteristic: Characteristic,
    /// When the values were measured: the device's timestamp if usable, else
    /// the gateway's `now`.
    pub at: Timestamp,
    pub time_source: TimeSource,
    pub measurements: SmallVec<[Measurement; INLINE_MEASUREMENTS]>,
    pub unavailable: SmallVec<[Unavailable; 2]>,
    pub flags: StatusFlags,
    pub extras: SmallVec<[Extra; 4]>,
    /// `None` when the device's own timestamp was used.
    pub time_fallback: Option<TimeFallback>,
}

impl Decoded {
    pub(crate) fn new(
        characteristic: Characteristic,
        (at, time_source, time_fallback): (Timestamp, TimeSource, Option<TimeFallback>),
    ) -> Self {
        Self {
            characteristic,
            at,
            time_source,
            measurements: SmallVec::new(),
            unavailable: SmallVec::new(),
            flags: StatusFlags::default(),
            extras: SmallVec::new(),
            time_fallback,
        }
    }

    /// The value of the first measurement of `metric`.
    pub fn value(&self, metric: &Metric) -> Option<f64> {
        self.measurements
            .iter()
            .find(|m| &m.metric == metric)
            .map(|m| m.value)
    }

    /// The extra named `key`.
    pub fn extra(&self, key: &str) -> Option<&ExtraValue> {
        self.extras.iter().find(|e| e.key == key).map(|e| &e.value)
    }
}

/// A payload that breaks its characteristic's spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{characteristic}: {reason}")]
pub struct DecodeError {
    pub characteristic: Characteristic,
    pub reason: DecodeReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeReason {
    #[error("empty payload")]
    Empty,
    #[error("payload is {len} bytes but the flags announce {field} at bytes {start}..{end}")]
    Truncated {
        field: &'static str,
        start: usize,
        end: usize,
        len: usize,
    },
    #[error("{field} has the reserved value {value}")]
    Reserved { field: &'static str, value: u32 },
    #[error("{field} is {value}, allowed {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("RR intervals take 2 bytes each, {0} bytes remain")]
    OddRrBytes(usize),
    #[error("{0} is not a measurement characteristic")]
    NotAMeasurement(&'static str),
}
