//! Escalation to people through the real pipeline: an alert goes first to
//! the nurse assigned to its bed, when unacknowledged after its
//! `escalate_after` to the charge nurse, then to everyone; each snapshot
//! says who has it, so the record (here the JSONL sink; MQTT and the page
//! carry the same snapshots) shows every hand-over.

use std::time::{Duration, Instant};

use wardgate_model::{Event, RecipientGroup, Transition};

use crate::wardgate;

const RULES: &str = r#"
[[rules]]
id = "tachycardia_fast"
description = "Heart rate above 100 (test timing: escalates every 2 s)"
when = "heart_rate > 100"
priority = "high"
kind = "physiological"
message = "Heart rate {heart_rate}/min"
escalate_after = "2s"
"#;

#[test]
fn an_unanswered_alert_passes_from_the_assigned_nurse_to_the_charge_nurse_then_everyone() {
    // ... and no further: a third escalation would reach no one new.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    std::fs::write(dir.path().join("fast.rules.toml"), RULES).unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[gateway]
site = "s"
ward = "w"
id = "gw"

[rules]
packs = []
files = ["fast.rules.toml"]

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["hr-1"]

[[devices]]
id = "hr-1"
type = "synthetic"
interval = "100ms"
signals = [{{ metric = "heart_rate", base = 130 }}]

[[staff]]
id = "ada"
name = "Nurse Ada"
role = "nurse"
subjects = ["bed-1"]

[[staff]]
id = "ben"
name = "Nurse Ben"
role = "nurse"
subjects = ["bed-2"]

[[staff]]
id = "grace"
name = "Charge nurse Grace"
role = "charge_nurse"

[[subjects]]
id = "bed-2"
kind = "bed"

[[sinks]]
type = "jsonl"
path = "{}"
"#,
            out.display()
        ),
    )
    .unwrap();
    let child = crate::Guarded(
        wardgate()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // (transition, escalation level, group, staff ids) of every snapshot.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since: Option<Instant> = None;
    let seen = loop {
        let seen: Vec<_> = crate::events(&out)
            .into_iter()
            .filter_map(|e| match e {
                Event::Alert(a) if a.rule.as_str() == "tachycardia_fast" => {
                    let to = a.recipient.expect("every snapshot names who has it");
                    Some((
                        a.transition,
                        a.escalation_level,
                        to.to,
                        to.staff
                            .iter()
                            .map(|s| s.id.to_string())
                            .collect::<Vec<_>>(),
                    ))
                }
                _ => None,
            })
            .collect();
        // Two escalations, then three more escalation times (6 s) in which
        // nothing may follow: the chain of people ends at everyone.
        let escalated = seen.iter().filter(|s| s.0 == Transition::Escalated).count();
        if escalated >= 2
            && quiet_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(6)
        {
            break seen;
        }
        assert!(Instant::now() < deadline, "no second escalation: {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(child);
    assert_eq!(
        seen,
        [
            (
                Transition::Raised,
                0,
                RecipientGroup::Assigned,
                vec!["ada".to_owned()]
            ),
            (
                Transition::Escalated,
                1,
                RecipientGroup::Charge,
                vec!["grace".to_owned()]
            ),
            (Transition::Escalated, 2, RecipientGroup::Everyone, vec![]),
        ]
    );
}
