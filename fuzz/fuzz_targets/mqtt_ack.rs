#![no_main]
//! Any bytes as an MQTT acknowledgement command payload
//! (`{base}/commands/ack`), the gateway's untrusted input from the broker.
//!
//! Asserts, beyond "no panic":
//! - an accepted command's fields are 1 to 128 characters without control
//!   characters;
//! - an accepted command, written back as JSON, is accepted as the same command.

use libfuzzer_sys::fuzz_target;
use wardgate::sinks::mqtt::parse_ack;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = parse_ack(data) else {
        return;
    };
    for v in [&cmd.alert_id, &cmd.by] {
        let n = v.chars().count();
        assert!((1..=128).contains(&n), "{v:?}");
        assert!(!v.chars().any(char::is_control), "{v:?}");
    }
    let again = serde_json::to_vec(&serde_json::json!({
        "alert_id": cmd.alert_id,
        "by": cmd.by,
    }))
    .unwrap();
    assert_eq!(parse_ack(&again), Ok(cmd));
});
