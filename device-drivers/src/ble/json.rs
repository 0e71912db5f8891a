//! The `wardgate decode ble <characteristic> <hex>` contract (DESIGN.md): one
//! JSON object per payload, or one line naming the characteristic and the
//! reason. Pure: the caller passes the gateway's `now`.

use serde_json::{Map, Value, json};
use wardgate_model::Timestamp;

use super::{Characteristic, DecodeError, Decoded, ExtraValue, UnknownCharacteristic, decode};

/// Why `wardgate decode ble` could not decode its arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeCliError {
    #[error(transparent)]
    UnknownCharacteristic(#[from] UnknownCharacteristic),
    #[error("{characteristic}: payload is not hex: {reason}")]
    BadHex {
        characteristic: Characteristic,
        reason: String,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Parses hex bytes, allowing an `0x` prefix and space, `:` or `-` separators
/// (`1648 5401`, `16:48:54:01`).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: String = t
        .chars()
        .filter(|c| !matches!(c, ' ' | ':' | '-' | '_'))
        .collect();
    hex::decode(&digits).map_err(|e| e.to_string())
}

/// Decodes `hex` as `characteristic` (`2a35`, `0x2A35` or a 128-bit SIG
/// UUID) and renders the result as the contract's JSON object, on one line.
pub fn decode_to_json(
    characteristic: &str,
    hex: &str,
    now: Timestamp,
) -> Result<String, DecodeCliError> {
    let ch: Characteristic = characteristic.parse()?;
    let bytes = parse_hex(hex).map_err(|reason| DecodeCliError::BadHex {
        characteristic: ch,
        reason,
    })?;
    let decoded = decode(ch, &bytes, now)?;
    Ok(to_json(&decoded).to_string())
}

/// `{"characteristic": "2a35", "name", "readings": [{"metric", "value",
/// "unit", "at", "time_source"}], "unavailable": [{"metric", "unit",
/// "reason"}], "flags": [..], "extras": {..}, "time_fallback"?}`.
pub fn to_json(d: &Decoded) -> Value {
    let readings: Vec<Value> = d
        .measurements
        .iter()
        .map(|m| {
            json!({
                "metric": m.metric.name(),
                "value": m.value,
                "unit": m.metric.unit(),
                "at": d.at,
                "time_source": d.time_source,
            })
        })
        .collect();
    let unavailable: Vec<Value> = d
        .unavailable
        .iter()
        .map(|u| json!({"metric": u.metric.name(), "unit": u.metric.unit(), "reason": u.reason.as_str()}))
        .collect();
    let flags: Vec<&str> = d.flags.iter().map(super::StatusFlag::as_str).collect();
    let extras: Map<String, Value> = d
        .extras
        .iter()
        .map(|e| {
            let v = match &e.value {
                ExtraValue::Int(i) => json!(i),
                ExtraValue::Number(n) => json!(n),
                ExtraValue::Text(t) => json!(t),
                ExtraValue::Unavailable(u) => json!({"unavailable": u.as_str()}),
            };
            (e.key.to_owned(), v)
        })
        .collect();
    let mut out = json!({
        "characteristic": format!("{:04x}", d.characteristic.uuid16()),
        "name": d.characteristic.name(),
        "readings": readings,
        "unavailable": unavailable,
        "flags": flags,
        "extras": extras,
    });
    if let (Some(fallback), Value::Object(map)) = (d.time_fallback, &mut out) {
        map.insert("time_fallback".into(), json!(fallback.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-27T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn blood_pressure_json_follows_the_contract() {
        // flags 0x1A: mmHg, time stamp, user id, status; 120/80/93;
        // 2026-11-27 09:30:15; user 3; status bit2 irregular pulse.
        let out =
            decode_to_json("0x2A35", "1a 7800 5000 5d00 ea070b1b091e0f 03 0400", now()).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "characteristic": "2a35",
                "name": "Blood Pressure Measurement",
                "readings": [
                    {"metric": "bp_systolic", "value": 120.0, "unit": "mm[Hg]", "at": "2026-11-27T09:30:15Z", "time_source": "device"},
                    {"metric": "bp_diastolic", "value": 80.0, "unit": "mm[Hg]", "at": "2026-11-27T09:30:15Z", "time_source": "device"},
                    {"metric": "bp_mean", "value": 93.0, "unit": "mm[Hg]", "at": "2026-11-27T09:30:15Z", "time_source": "device"},
                ],
                "unavailable": [],
                "flags": ["irregular_pulse"],
                "extras": {"user_id": 3},
            })
        );
        assert!(!out.contains('\n'));
    }

    #[test]
    fn unavailable_and_fallback_are_reported() {
        // HTS flags 0x00 (°C), FLOAT 0x007FFFFF = NaN.
        let v: Value = serde_json::from_str(
            &decode_to_json("00002a1c-0000-1000-8000-00805f9b34fb", "00ffff7f00", now()).unwrap(),
        )
        .unwrap();
        assert_eq!(v["readings"], json!([]));
        assert_eq!(
            v["unavailable"],
            json!([{"metric": "body_temp", "unit": "Cel", "reason": "nan"}])
        );
        assert_eq!(v["time_fallback"], "absent");
    }

    #[test]
    fn errors_are_one_line_naming_characteristic_and_reason() {
        let e = decode_to_json("2a37", "10 48 00", now())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "2a37 Heart Rate Measurement: RR intervals take 2 bytes each, 1 bytes remain"
        );
        let e = decode_to_json("2a19", "zz", now()).unwrap_err().to_string();
        assert!(
            e.starts_with("2a19 Battery Level: payload is not hex"),
            "{e}"
        );
        let e = decode_to_json("2a00", "00", now()).unwrap_err().to_string();
        assert!(e.starts_with("unknown characteristic \"2a00\""), "{e}");
        assert!(!e.contains('\n'));
    }
}
