//! One event, one line of JSON: the model's serde shape, tagged by `"type"`.
//! Where the spool stored an event as JSON, those bytes are the line.

use crate::spool::Record;

/// Appends `record`'s event as one JSON line (with its `\n`) to `out`.
pub fn encode_line(record: &Record, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    record.write_json(out)?;
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Lane;
    use wardgate_model::{Event, Metric, Reading, TimeSource};

    #[test]
    fn one_line_per_event_with_type_and_unit() {
        let reading = Reading::new(
            "2026-11-27T08:00:00.5Z".parse().unwrap(),
            TimeSource::Gateway,
            "bed-3".into(),
            None,
            Metric::BodyTemp,
            37.9,
        )
        .unwrap();
        let mut out = Vec::new();
        let record = Record::new(Lane::Telemetry, 1, reading.at, Event::Reading(reading));
        encode_line(&record, &mut out).unwrap();
        encode_line(&record, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"type":"reading","at":"2026-11-27T08:00:00.500Z","time_source":"gateway","subject":"bed-3","metric":"body_temp","value":37.9,"unit":"Cel"}"#
        );
        assert!(text.ends_with('\n'));
    }
}
