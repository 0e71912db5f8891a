//! The driver's memory of one device, sans-IO: which technical alarms are
//! active, which glucose records were delivered. Given the time and the
//! bytes; the driver feeds it every notification.

use wardgate_model::{AlarmPhase, AlertKind, Event, Timestamp};

use super::transport::Notification;
use super::{Characteristic, DecodeError, ExtraValue, StatusFlag, decode};
use crate::DriverContext;

/// The driver's memory of one device across notifications and connections:
/// which technical alarms are active, the last glucose record seen. Pure: it
/// is given the time and the bytes.
#[derive(Debug, Clone)]
pub struct Tracker {
    battery_low_below: f64,
    battery_low: bool,
    contact_lost: bool,
    /// The sequence number of the last glucose record delivered.
    pub last_glucose_seq: Option<u16>,
    /// When the latest glucose record delivered was measured.
    pub last_glucose_at: Option<Timestamp>,
    /// Times the meter's sequence numbers started over (a reset, a wrap
    /// past 65535).
    pub glucose_seq_restarts: u64,
    /// Payloads that did not decode.
    pub decode_errors: u64,
}

impl Tracker {
    pub fn new(battery_low_below: f64) -> Self {
        Self {
            battery_low_below,
            battery_low: false,
            contact_lost: false,
            last_glucose_seq: None,
            last_glucose_at: None,
            glucose_seq_restarts: 0,
            decode_errors: 0,
        }
    }

    /// Decodes one notification into the events to emit: readings (glucose
    /// records already delivered are dropped) and alarm starts/ends.
    pub fn handle_notification(
        &mut self,
        ctx: &DriverContext,
        now: Timestamp,
        n: &Notification,
    ) -> Result<Vec<Event>, DecodeError> {
        let d = decode(n.characteristic, &n.bytes, now)?;
        let mut events = Vec::with_capacity(d.measurements.len() + 1);
        if n.characteristic == Characteristic::GlucoseMeasurement
            && let Some(ExtraValue::Int(seq)) = d.extra("sequence_number")
        {
            let seq = *seq as u16;
            if let Some(last) = self.last_glucose_seq
                && seq <= last
            {
                // Not above the last one: a record already delivered, unless
                // the meter's numbering started over — it wrapped past 65535,
                // or it was reset and numbers from 0 again (its records are
                // then newer than the last one delivered). Dropping those
                // would lose every later record of this meter for good.
                let wrapped = last >= 0xFF00 && seq < 0x0100;
                let newer = self.last_glucose_at.is_some_and(|t| d.at > t);
                if !wrapped && !newer {
                    return Ok(events);
                }
                self.glucose_seq_restarts += 1;
                tracing::warn!(
                    device = %ctx.device().id,
                    last,
                    seq,
                    reason = if wrapped { "wrapped past 65535" } else { "restarted with newer records (meter reset or replaced)" },
                    count = self.glucose_seq_restarts,
                    "glucose meter sequence numbers started over: its records are accepted"
                );
            }
            self.last_glucose_seq = Some(seq);
            if self.last_glucose_at.is_none_or(|t| d.at > t) {
                self.last_glucose_at = Some(d.at);
            }
        }
        let contact_lost_now = d.flags.contains(StatusFlag::SensorContactLost)
            || d.flags.contains(StatusFlag::SensorUnconnected)
            || d.flags.contains(StatusFlag::SensorDisconnected);
        // Values measured without skin contact (a strap's 0 /min, an oximeter's
        // last guess) are not the patient's: the alarm is reported, not them.
        if !contact_lost_now {
            for m in &d.measurements {
                // Decoders only produce finite values; Reading::new re-checks.
                if let Ok(e) = ctx.reading(d.at, d.time_source, m.metric.clone(), m.value) {
                    events.push(e);
                }
            }
        }
        let battery_low = match n.characteristic {
            Characteristic::BatteryLevel => d
                .value(&wardgate_model::Metric::BatteryLevel)
                .map(|v| v < self.battery_low_below),
            _ if d.flags.contains(StatusFlag::BatteryLow) => Some(true),
            _ => None,
        };
        let contact_lost = match n.characteristic {
            Characteristic::HeartRateMeasurement
            | Characteristic::PlxSpotCheck
            | Characteristic::PlxContinuous => Some(contact_lost_now),
            _ => None,
        };
        let mut change = |active: &mut bool, now_active: Option<bool>, alarm: &str| {
            if let Some(a) = now_active
                && a != *active
            {
                *active = a;
                let phase = if a {
                    AlarmPhase::Start
                } else {
                    AlarmPhase::End
                };
                events.push(ctx.alarm(d.at, alarm, phase, AlertKind::Technical, None));
            }
        };
        change(&mut self.battery_low, battery_low, "battery_low");
        change(&mut self.contact_lost, contact_lost, "sensor_contact_lost");
        Ok(events)
    }
}
