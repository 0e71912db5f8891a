//! What every GATT decoder shares: a bounds-checked cursor that names the
//! field it failed on, the device's date and time and whether to trust it,
//! the collector that stamps one decode's readings alike, and field
//! resolutions. Pure, like the decoders.

use chrono::{NaiveDate, TimeDelta};
use wardgate_model::{Metric, TimeSource, Timestamp};

use super::Characteristic;
use super::decoded::{
    DecodeError, DecodeReason, Decoded, Extra, ExtraValue, Measurement, StatusFlag, TimeFallback,
    Unavailable,
};
use super::ieee11073::{self, Decimal, Unavailability};

/// A bounds-checked little-endian cursor that names the field it failed on.
pub(super) struct Reader<'a> {
    pub(super) ch: Characteristic,
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(ch: Characteristic, buf: &'a [u8]) -> Result<Self, DecodeError> {
        if buf.is_empty() {
            return Err(DecodeError {
                characteristic: ch,
                reason: DecodeReason::Empty,
            });
        }
        Ok(Self { ch, buf, pos: 0 })
    }

    pub(super) fn err(&self, reason: DecodeReason) -> DecodeError {
        DecodeError {
            characteristic: self.ch,
            reason,
        }
    }

    #[inline]
    pub(super) fn take<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let end = self.pos + N;
        match self.buf.get(self.pos..end) {
            Some(bytes) => {
                self.pos = end;
                let mut out = [0; N];
                out.copy_from_slice(bytes);
                Ok(out)
            }
            None => Err(self.err(DecodeReason::Truncated {
                field,
                start: self.pos,
                end,
                len: self.buf.len(),
            })),
        }
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(field)?[0])
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(field)?))
    }

    pub(super) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_le_bytes(self.take(field)?))
    }

    pub(super) fn u24(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let [a, b, c] = self.take(field)?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub(super) fn sfloat(
        &mut self,
        field: &'static str,
    ) -> Result<Result<Decimal, Unavailability>, DecodeError> {
        Ok(ieee11073::sfloat_decimal(self.u16(field)?))
    }

    pub(super) fn float(
        &mut self,
        field: &'static str,
    ) -> Result<Result<Decimal, Unavailability>, DecodeError> {
        Ok(ieee11073::float_decimal(u32::from_le_bytes(
            self.take(field)?,
        )))
    }

    /// Date Time (0x2A08): year u16, month, day, hours, minutes, seconds.
    pub(super) fn date_time(&mut self, field: &'static str) -> Result<DeviceDateTime, DecodeError> {
        let [y0, y1, month, day, hour, minute, second] = self.take(field)?;
        Ok(DeviceDateTime {
            year: u16::from_le_bytes([y0, y1]),
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    pub(super) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

/// A device's Date Time, as sent (local wall-clock time; taken as UTC).
#[derive(Clone, Copy, Debug)]
pub(super) struct DeviceDateTime {
    pub(super) year: u16,
    pub(super) month: u8,
    pub(super) day: u8,
    pub(super) hour: u8,
    pub(super) minute: u8,
    pub(super) second: u8,
}

/// Earliest device time taken as plausible.
pub(super) const PLAUSIBLE_FROM_YEAR: i32 = 2000;
/// How far ahead of the gateway a device clock may run (time zones, drift).
pub(super) const MAX_DEVICE_LEAD: TimeDelta = TimeDelta::hours(24);

/// The reading time: the device's if set and plausible, else `now`.
pub(super) fn resolve_time(
    device: Option<DeviceDateTime>,
    offset_minutes: i64,
    now: Timestamp,
) -> (Timestamp, TimeSource, Option<TimeFallback>) {
    let gateway = |why| (now, TimeSource::Gateway, Some(why));
    let Some(dt) = device else {
        return gateway(TimeFallback::Absent);
    };
    if dt.year == 0 || dt.month == 0 || dt.day == 0 {
        return gateway(TimeFallback::Unset);
    }
    let at = NaiveDate::from_ymd_opt(i32::from(dt.year), u32::from(dt.month), u32::from(dt.day))
        .and_then(|d| {
            d.and_hms_opt(
                u32::from(dt.hour),
                u32::from(dt.minute),
                u32::from(dt.second),
            )
        })
        .map(|t| t.and_utc())
        .and_then(|t| t.checked_add_signed(TimeDelta::minutes(offset_minutes)));
    match at {
        Some(at)
            if chrono::Datelike::year(&at) >= PLAUSIBLE_FROM_YEAR
                && at <= now + MAX_DEVICE_LEAD =>
        {
            (at, TimeSource::Device, None)
        }
        _ => gateway(TimeFallback::Implausible),
    }
}

/// Collects the output of one decode, stamping every reading alike.
pub(super) struct Out {
    pub(super) d: Decoded,
}

impl Out {
    pub(super) fn new(
        ch: Characteristic,
        time: (Timestamp, TimeSource, Option<TimeFallback>),
    ) -> Self {
        Self {
            d: Decoded::new(ch, time),
        }
    }

    #[inline]
    pub(super) fn push(&mut self, metric: Metric, value: f64) {
        self.d.measurements.push(Measurement { metric, value });
    }

    pub(super) fn value(&mut self, metric: Metric, value: Result<f64, Unavailability>) {
        match value {
            Ok(v) => self.push(metric, v),
            Err(reason) => self.d.unavailable.push(Unavailable { metric, reason }),
        }
    }

    pub(super) fn decimal(
        &mut self,
        metric: Metric,
        value: Result<Decimal, Unavailability>,
        convert: impl Fn(Decimal) -> f64,
    ) {
        self.value(metric, value.map(convert));
    }

    pub(super) fn extra(&mut self, key: &'static str, value: ExtraValue) {
        self.d.extras.push(Extra { key, value });
    }

    pub(super) fn flags(&mut self, bits: u32, table: &[(u32, StatusFlag)]) {
        for &(bit, flag) in table {
            self.d.flags.set_if(bits, bit, flag);
        }
    }
}

/// A field's resolution as `raw / divisor × factor` (dividing by the exact
/// divisor rounds once: 13920 / 200 is 69.6, 13920 × 0.005 is not).
#[derive(Clone, Copy, Debug)]
pub(super) struct Resolution {
    pub(super) divisor: f64,
    pub(super) factor: f64,
}

pub(super) const fn per(divisor: f64) -> Resolution {
    Resolution {
        divisor,
        factor: 1.0,
    }
}

/// A u16 field with a 0xFFFF "measurement unsuccessful" value (WSS, BCS).
pub(super) fn unsigned_or_unsuccessful(raw: u16, r: Resolution) -> Result<f64, Unavailability> {
    if raw == 0xFFFF {
        Err(Unavailability::Unsuccessful)
    } else {
        Ok(f64::from(raw) / r.divisor * r.factor)
    }
}

pub(super) fn user_id(out: &mut Out, id: u8) {
    // 0xFF is "unknown user" in BLS, WSS and BCS.
    let value = if id == 0xFF {
        ExtraValue::Text("unknown")
    } else {
        ExtraValue::Int(i64::from(id))
    };
    out.extra("user_id", value);
}
