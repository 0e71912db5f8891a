//! The shared vocabulary of wardgate.
//!
//! Every other crate speaks these types: drivers produce [`Event`]s, the rules
//! engine turns them into [`Alert`]s, sinks serialise both. This crate owns the
//! metric table of `DESIGN.md` (UCUM unit, MDC and LOINC codes) and must never do
//! I/O or read the clock: time is always a value handed in.
//!
//! All types are cheap to clone (identifiers are reference-counted strings) and
//! serialise to the JSON that the JSONL sink, `wardgate replay` and the MQTT
//! payloads show to users.

mod alert;
pub mod config;
mod device;
mod event;
mod ids;
mod metric;
mod reading;
mod silence;
mod subject;
mod wire;

pub use alert::{
    Acknowledgement, Actor, Alert, AlertId, AlertKind, AlertState, Priority, Recipient,
    RecipientGroup, StaffRef, Transition,
};
pub use device::{AlarmPhase, DeviceAlarm, DeviceKind, DeviceRef, DeviceState, DeviceStatus};
pub use event::Event;
pub use ids::{DeviceId, RuleId, SubjectId};
pub use metric::{CustomMetric, MdcCode, Metric, MetricInfo, MetricRegistry};
pub use reading::{Reading, ReadingError, TimeSource};
pub use silence::{Silence, SilenceState, SilenceTarget};
pub use subject::{Condition, Spo2Scale, Subject, SubjectKind, SubjectProfile};
pub use wire::UnknownName;

/// A point in time: UTC with nanosecond precision.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
