//! `wardgate check-config`: every shipped config is valid; every broken file
//! is rejected with exit code 2 and each problem at its file:line:column.

use crate::{wardgate, workspace};

#[test]
fn every_shipped_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = wardgate().arg("check-config").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{} should be valid:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains(": valid ("), "{stdout}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the shipped configs in config/, found {checked}"
    );
}

/// Runs check-config on a broken file and returns its error lines
/// (`file:line:col: error: ...`), asserting exit code 2.
fn errors(name: &str) -> Vec<String> {
    let path = format!("gateway/tests/it/broken/{name}.toml");
    let out = wardgate()
        .current_dir(workspace())
        .args(["check-config", &path])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name} must be rejected with exit code 2"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .map(str::to_owned)
        .collect();
    let summary = format!("{path}: {} error", lines.len());
    assert!(
        stderr.contains(&summary),
        "summary line missing in:\n{stderr}"
    );
    lines
}

/// Asserts that exactly these (line, column, message fragment) errors were reported.
fn check(name: &str, expected: &[(usize, usize, &str)]) {
    let got = errors(name);
    assert_eq!(got.len(), expected.len(), "{name}: got\n{}", got.join("\n"));
    for (line, (l, c, fragment)) in got.iter().zip(expected) {
        let prefix = format!("gateway/tests/it/broken/{name}.toml:{l}:{c}: error: ");
        assert!(
            line.starts_with(&prefix),
            "expected {prefix}..., got {line}"
        );
        assert!(line.contains(fragment), "expected {fragment:?} in {line}");
    }
}

#[test]
fn syntax_error() {
    // Line 2: `site = "st-example` — the string is never closed.
    check("syntax", &[(2, 19, "invalid basic string")]);
}

#[test]
fn unknown_keys_and_sections_name_what_is_allowed() {
    check(
        "unknown",
        &[
            (
                5,
                1,
                "unknown key `colour` in [gateway]; allowed keys: site, ward, id",
            ),
            (
                7,
                2,
                "unknown section `alerting`; allowed sections: gateway, metrics, subjects, devices, sinks",
            ),
            (
                18,
                1,
                "unknown key `intervall` in device `hr-1` (type synthetic); allowed keys: interval, signals",
            ),
        ],
    );
}

#[test]
fn wrong_types_in_several_tables_are_all_reported() {
    check(
        "types",
        &[
            (
                8,
                8,
                "unknown variant `cot`, expected one of `bed`, `patient`, `room`",
            ),
            (14, 26, "expected SpO2 scale 1 or 2"),
            (19, 12, "invalid type: integer `5`, expected a duration"),
        ],
    );
}

#[test]
fn bindings_between_subjects_and_devices() {
    check(
        "binding",
        &[
            (
                9,
                20,
                "subject `bed-1` is bound to unknown device `ox-9`; configured devices: hr-1, spare",
            ),
            (14, 12, "device `hr-1` is already bound to subject `bed-1`"),
            (22, 1, "device `spare` is not bound to any subject"),
        ],
    );
}

#[test]
fn duplicate_ids() {
    check(
        "duplicates",
        &[
            (12, 1, "duplicate subject id `bed-1` (first used on line 7)"),
            (21, 1, "duplicate device id `hr-1` (first used on line 16)"),
        ],
    );
}

#[test]
fn out_of_range_values() {
    check(
        "ranges",
        &[
            (4, 1, "gateway.id `gw 1` may only contain"),
            (
                10,
                26,
                "invalid value: integer `3`, expected SpO2 scale 1 or 2",
            ),
            (15, 1, "interval must be between 10ms and 1h, got 1ms"),
            (17, 39, "decimals must be between 0 and 6, got 9"),
            (18, 5, "unknown metric \"heart_rat\""),
        ],
    );
}

#[test]
fn missing_sections_keys_and_unknown_types() {
    check(
        "missing",
        &[
            (1, 1, "missing section [gateway]"),
            (6, 1, "[[devices]] is missing the required key `type`"),
            (
                12,
                8,
                "unknown device type `bluetooth`; allowed types: synthetic, pump, modbus, ble",
            ),
        ],
    );
}

#[test]
fn a_bridge_file_is_reported_like_the_gateways() {
    // A bad value stops [mqtt] there (its own checks need the value);
    // the other sections are still checked.
    check(
        "bridge",
        &[
            (
                3,
                39,
                "invalid type: string \"1883\", expected u16 (in [mqtt])",
            ),
            (
                10,
                1,
                "unknown key `batch_size` in [influxdb]; allowed keys: url, org, bucket",
            ),
            (13, 1, "stalled_after must be between 1s and 1day, got 0s"),
        ],
    );
}

#[test]
fn patients_are_checked_against_the_subjects_and_the_emr_sinks() {
    check(
        "patients",
        &[
            (
                30,
                13,
                "unknown metric `heart_rat`; known metrics: heart_rate,",
            ),
            (33, 1, "a urn:oid: system is dot-separated numbers"),
            (34, 1, "authority is 1 to 20 letters, digits or - . _"),
            (
                35,
                27,
                "patients.mrn.bed-9: no [[subjects]] entry has id `bed-9`",
            ),
            (
                35,
                45,
                "`fridge` is a room; only beds and patients have an MRN",
            ),
            (
                35,
                61,
                "the MRN of `bed-2` is 1 to 64 letters, digits or - . _",
            ),
            (
                35,
                61,
                "patients.mrn.bed-2: no [[subjects]] entry has id `bed-2`",
            ),
        ],
    );
    check(
        "no-patients",
        &[(
            18,
            1,
            "sink `emr` charts into a patient record and needs a [patients] section",
        )],
    );
}
