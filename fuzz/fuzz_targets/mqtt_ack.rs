#![no_main]
//! Any bytes as an MQTT acknowledgement command: the first line is the
//! topic's last level (the publishing broker account,
//! `{base}/commands/ack/{account}`), the rest the payload — the gateway's
//! untrusted input from the broker.
//!
//! Asserts, beyond "no panic":
//! - an accepted command's alert id is 1 to 128 characters without control
//!   characters;
//! - it is attributed to the account: `name@account`, via `mqtt:account`,
//!   the name 1 to 64 letters, digits, spaces or `.-_'`;
//! - an accepted command, written back as JSON, is accepted as the same command.

use libfuzzer_sys::fuzz_target;
use wardgate::sinks::mqtt::parse_ack;

fuzz_target!(|data: &[u8]| {
    let (account, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let Ok(account) = std::str::from_utf8(account) else {
        return;
    };
    let Ok(cmd) = parse_ack(account, payload) else {
        return;
    };
    let id = &cmd.alert.0;
    let n = id.chars().count();
    assert!((1..=128).contains(&n), "{id:?}");
    assert!(!id.chars().any(char::is_control), "{id:?}");
    assert_eq!(
        cmd.who.via.as_deref(),
        Some(format!("mqtt:{account}").as_str())
    );
    let name = cmd
        .who
        .by
        .strip_suffix(account)
        .and_then(|b| b.strip_suffix('@'))
        .unwrap_or_else(|| panic!("{:?} does not end in @{account}", cmd.who.by));
    assert!((1..=64).contains(&name.chars().count()), "{name:?}");
    assert!(
        name.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\'')),
        "{name:?}"
    );
    let again = serde_json::to_vec(&serde_json::json!({
        "alert_id": id.as_ref(),
        "by": name,
    }))
    .unwrap();
    assert_eq!(parse_ack(account, &again), Ok(cmd));
});
