use super::*;

const MS: Duration = Duration::from_millis(1);

fn settings() -> PollSettings {
    PollSettings {
        interval: 2000 * MS,
        phase: Duration::ZERO,
        reply_timeout: 100 * MS,
        retries: 1,
        failures_before_lost: 2,
    }
}

/// A reply as a pump would send it, encoded by hand from the fields so the
/// test does not depend on the poller's own encoder.
fn reply(text: &str) -> Vec<u8> {
    Frame::new(text.split('^')).unwrap().encode()
}

fn status(alarms: &str, mode: &str) -> Vec<u8> {
    reply(&format!(
        "INF^8002-51740^{alarms}^{mode}^100.00^ml/h^-^10.000^ml^20^mmHg^0:54^EV^1"
    ))
}

const VTBI: &str = "INF_VTBI^ACTIV^100.000^ml^KVO^90.000^ml";

fn sent(p: &mut Poller) -> Vec<String> {
    std::iter::from_fn(|| p.poll_transmit())
        .map(|b| String::from_utf8(b).unwrap())
        .collect()
}

fn events(p: &mut Poller) -> Vec<PumpEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

/// Connects and answers the handshake; returns the poller at `t0`.
fn identified(t0: Instant) -> Poller {
    identified_with(settings(), t0).0
}

/// Connects at `t0` and answers the handshake once the poller starts it (at
/// its phase); returns the poller and that start.
fn identified_with(settings: PollSettings, t0: Instant) -> (Poller, Instant) {
    let mut p = Poller::new(settings);
    p.handle_connect(t0);
    let start = t0 + settings.phase;
    if start > t0 {
        assert!(sent(&mut p).is_empty(), "asked before its phase");
        assert_eq!(p.poll_timeout(), Some(start));
        p.handle_timeout(start);
    }
    assert_eq!(sent(&mut p), ["!INST_SERIALNO|457D\r"]);
    p.handle_input(start + MS, &reply("INST_SERIALNO^8002-51740"));
    assert_eq!(sent(&mut p), ["!COMMS_PROTOCOL|E8DA\r"]);
    p.handle_input(start + 2 * MS, &reply("COMMS_PROTOCOL^ASENA^1"));
    // DESIGN.md's handshake frame for this serial number, byte for byte.
    assert_eq!(sent(&mut p), ["!REMOTE_CTRL^ENABLED^3CC1|B1F1\r"]);
    p.handle_input(start + 3 * MS, &reply("REMOTE_CTRL^ENABLED"));
    assert_eq!(sent(&mut p), ["!INF|4961\r"]);
    assert_eq!(p.protocol(), Some("ASENA^1"));
    (p, start)
}

#[test]
fn pumps_poll_at_their_own_stable_phase_and_keep_the_interval() {
    let t0 = Instant::now();
    let mut starts = Vec::new();
    for i in 0..20 {
        let id = format!("pump-{i}");
        let phase = crate::jitter::phase(&id, crate::jitter::DEFAULT_JITTER, settings().interval);
        let s = PollSettings {
            phase,
            ..settings()
        };
        let (mut p, start) = identified_with(s, t0);
        assert_eq!(start, t0 + phase, "{id}");
        answer_cycle(&mut p, start + 4 * MS, "NONE");
        for k in 1..3 {
            let due = start + s.interval * k;
            assert_eq!(p.poll_timeout(), Some(due), "{id}, poll {k}");
            p.handle_timeout(due);
            assert_eq!(sent(&mut p), ["!INF|4961\r"], "{id}, poll {k}");
            answer_cycle(&mut p, due + MS, "NONE");
        }
        starts.push(start);
    }
    starts.sort_unstable();
    starts.dedup();
    // Twenty devices over twenty slots: spread, not all in one.
    assert!(
        starts.len() >= 10,
        "pumps share a phase: {} phases",
        starts.len()
    );
}

fn answer_cycle(p: &mut Poller, at: Instant, alarms: &str) -> Vec<PumpEvent> {
    p.handle_input(at, &status(alarms, "INFUSING"));
    assert_eq!(sent(p), ["!INF_VTBI|8456\r"]);
    p.handle_input(at + MS, &reply(VTBI));
    events(p)
}

#[test]
fn identifies_then_polls_status_and_vtbi_every_interval() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    let ev = answer_cycle(&mut p, t0 + 4 * MS, "NONE");
    assert_eq!(
        ev[0],
        PumpEvent::Online {
            serial: "8002-51740".into()
        }
    );
    let PumpEvent::State(state) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (
            state.rate,
            state.vtbi,
            state.vtbi_remaining,
            state.time_remaining
        ),
        (Some(100.0), Some(100.0), Some(90.0), Some(54.0))
    );
    // Next cycle starts one interval after the previous one started (t0).
    assert_eq!(p.poll_timeout(), Some(t0 + 2000 * MS));
    p.handle_timeout(t0 + 1999 * MS);
    assert!(sent(&mut p).is_empty());
    p.handle_timeout(t0 + 2000 * MS);
    assert_eq!(sent(&mut p), ["!INF|4961\r"]);
}

#[test]
fn alarm_start_and_end_are_diffed_between_states() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    answer_cycle(&mut p, t0, "NONE");
    p.handle_timeout(t0 + 2000 * MS);
    sent(&mut p);
    let ev = answer_cycle(&mut p, t0 + 2001 * MS, "OCCL_DOWN,LOW_BATT");
    assert_eq!(
        ev[..2],
        [
            PumpEvent::AlarmStart(PumpAlarm::OcclusionDownstream),
            PumpEvent::AlarmStart(PumpAlarm::LowBattery)
        ]
    );
    p.handle_timeout(t0 + 4000 * MS);
    sent(&mut p);
    let ev = answer_cycle(&mut p, t0 + 4001 * MS, "LOW_BATT,WEIRD");
    assert_eq!(
        ev[..2],
        [
            PumpEvent::AlarmEnd(PumpAlarm::OcclusionDownstream),
            PumpEvent::AlarmStart(PumpAlarm::Unknown("WEIRD".into()))
        ]
    );
    assert!(matches!(ev[2], PumpEvent::State(_)));
}

#[test]
fn timeout_retries_then_counts_a_failed_poll_then_goes_offline_and_recovers() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    answer_cycle(&mut p, t0, "NONE");
    // Cycle at 2000: no reply. Resent once at 2100, failed at 2200.
    p.handle_timeout(t0 + 2000 * MS);
    assert_eq!(sent(&mut p), ["!INF|4961\r"]);
    assert_eq!(p.poll_timeout(), Some(t0 + 2100 * MS));
    p.handle_timeout(t0 + 2100 * MS);
    assert_eq!(sent(&mut p), ["!INF|4961\r"]);
    p.handle_timeout(t0 + 2200 * MS);
    assert!(sent(&mut p).is_empty());
    assert!(events(&mut p).is_empty(), "one failed poll is not yet lost");
    // Next cycle at 4000 fails as well: second failure = lost.
    assert_eq!(p.poll_timeout(), Some(t0 + 4000 * MS));
    p.handle_timeout(t0 + 4000 * MS);
    p.handle_timeout(t0 + 4100 * MS);
    p.handle_timeout(t0 + 4200 * MS);
    assert_eq!(
        events(&mut p),
        [
            PumpEvent::Offline {
                reason: "no reply to 2 polls in a row".into()
            },
            PumpEvent::AlarmStart(PumpAlarm::CommunicationLost)
        ]
    );
    assert_eq!(p.stats().failed_polls, 2);
    assert_eq!(p.stats().timeouts, 4);
    sent(&mut p);
    // After loss it re-identifies at the next cycle.
    p.handle_timeout(t0 + 6000 * MS);
    assert_eq!(sent(&mut p), ["!INST_SERIALNO|457D\r"]);
    p.handle_input(t0 + 6001 * MS, &reply("INST_SERIALNO^8002-51740"));
    p.handle_input(t0 + 6002 * MS, &reply("COMMS_PROTOCOL^ASENA^1"));
    p.handle_input(t0 + 6003 * MS, &reply("REMOTE_CTRL^ENABLED"));
    sent(&mut p);
    let ev = answer_cycle(&mut p, t0 + 6004 * MS, "NONE");
    assert_eq!(
        ev[..2],
        [
            PumpEvent::Online {
                serial: "8002-51740".into()
            },
            PumpEvent::AlarmEnd(PumpAlarm::CommunicationLost)
        ]
    );
}

#[test]
fn bad_crc_reply_is_never_acted_on() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    answer_cycle(&mut p, t0, "NONE");
    p.handle_timeout(t0 + 2000 * MS);
    sent(&mut p);
    // An occlusion status with its CRC's last digit changed.
    let mut corrupt = status("OCCL_DOWN", "ALARM");
    let n = corrupt.len();
    corrupt[n - 2] = if corrupt[n - 2] == b'0' { b'1' } else { b'0' };
    p.handle_input(t0 + 2001 * MS, &corrupt);
    assert!(events(&mut p).is_empty());
    assert_eq!(p.stats().decoder.crc_errors, 1);
    // The retry gets a good answer without the alarm.
    p.handle_timeout(t0 + 2100 * MS);
    assert_eq!(sent(&mut p), ["!INF|4961\r"]);
    let ev = answer_cycle(&mut p, t0 + 2101 * MS, "NONE");
    assert!(matches!(ev[..], [PumpEvent::State(_)]), "{ev:?}");
}

#[test]
fn unexpected_and_invalid_replies_are_not_acted_on() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    // A VTBI reply while waiting for status: ignored, counted.
    p.handle_input(t0, &reply(VTBI));
    assert_eq!(p.stats().unexpected_frames, 1);
    assert!(sent(&mut p).is_empty());
    // A status with an impossible unit: invalid, a failed poll, no state.
    p.handle_input(
        t0,
        &reply("INF^8002-51740^NONE^INFUSING^1^gal/h^-^0^ml^0^mmHg^--"),
    );
    assert_eq!(p.stats().invalid_replies, 1);
    assert_eq!(p.stats().failed_polls, 1);
    assert!(events(&mut p).is_empty());
}

#[test]
fn a_malformed_vtbi_reply_keeps_the_status_of_the_same_poll() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    p.handle_input(t0 + 4 * MS, &status("OCCL_DOWN", "INFUSING"));
    assert_eq!(sent(&mut p), ["!INF_VTBI|8456\r"]);
    // Fewer fields than an INF_VTBI reply has.
    p.handle_input(t0 + 5 * MS, &reply("INF_VTBI^ACTIV^100.000"));
    let ev = events(&mut p);
    // The occlusion and the rate of the status reply still count ...
    assert!(
        ev.contains(&PumpEvent::AlarmStart(PumpAlarm::OcclusionDownstream)),
        "{ev:?}"
    );
    let Some(PumpEvent::State(state)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(state.rate, Some(100.0));
    assert_eq!(state.volume_infused, Some(10.0));
    // ... the VTBI fields are reported missing, with the reason ...
    assert_eq!((state.vtbi, state.vtbi_remaining), (None, None));
    assert!(
        matches!(
            state.vtbi_invalid.as_deref(),
            Some(ReplyError::TooFewFields { .. })
        ),
        "{:?}",
        state.vtbi_invalid
    );
    // ... and the poll is counted as incomplete, not failed.
    let stats = p.stats();
    assert_eq!(
        (
            stats.incomplete_polls,
            stats.invalid_replies,
            stats.failed_polls
        ),
        (1, 1, 0)
    );
    assert_eq!(p.poll_timeout(), Some(t0 + 2000 * MS));
}

#[test]
fn disconnect_reports_offline_once_and_reconnect_identifies() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    answer_cycle(&mut p, t0, "NONE");
    p.handle_disconnect(t0 + 10 * MS, "port gone");
    p.handle_disconnect(t0 + 20 * MS, "port gone");
    assert_eq!(
        events(&mut p),
        [
            PumpEvent::Offline {
                reason: "port gone".into()
            },
            PumpEvent::AlarmStart(PumpAlarm::CommunicationLost)
        ]
    );
    assert_eq!(p.poll_timeout(), None);
    p.handle_connect(t0 + 30 * MS);
    assert_eq!(sent(&mut p), ["!INST_SERIALNO|457D\r"]);
}

#[test]
fn a_different_serial_in_the_status_means_identify_again() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    answer_cycle(&mut p, t0, "NONE");
    p.handle_timeout(t0 + 2000 * MS);
    sent(&mut p);
    p.handle_input(
        t0 + 2001 * MS,
        &reply("INF^9999-00001^OCCL_DOWN^ALARM^0^ml/h^-^0^ml^0^mmHg^--"),
    );
    assert!(
        events(&mut p).is_empty(),
        "another pump's values are not used"
    );
    assert_eq!(p.stats().failed_polls, 1);
    p.handle_timeout(t0 + 4000 * MS);
    assert_eq!(sent(&mut p), ["!INST_SERIALNO|457D\r"]);
}

#[test]
fn refused_handshake_is_a_failed_poll() {
    let t0 = Instant::now();
    let mut p = Poller::new(settings());
    p.handle_connect(t0);
    sent(&mut p);
    p.handle_input(t0, &reply("NAK^INST_SERIALNO^BUSY"));
    assert_eq!(p.stats().failed_polls, 1);
    assert_eq!(p.poll_timeout(), Some(t0 + 2000 * MS));
}

#[test]
fn never_sends_commands_that_change_an_infusion() {
    let t0 = Instant::now();
    let mut p = identified(t0);
    let mut all = Vec::new();
    for i in 0..20u32 {
        let at = t0 + i * 2000 * MS;
        p.handle_timeout(at);
        all.extend(sent(&mut p));
        if i % 3 != 0 {
            p.handle_input(at, &status("NONE", "INFUSING"));
            all.extend(sent(&mut p));
            p.handle_input(at, &reply(VTBI));
        }
        p.handle_timeout(at + 150 * MS);
        all.extend(sent(&mut p));
    }
    let allowed = [
        "!INF|4961\r",
        "!INF_VTBI|8456\r",
        "!INST_SERIALNO|457D\r",
        "!COMMS_PROTOCOL|E8DA\r",
        "!REMOTE_CTRL^ENABLED^3CC1|B1F1\r",
    ];
    assert!(all.len() > 20);
    for frame in &all {
        assert!(allowed.contains(&frame.as_str()), "sent {frame:?}");
    }
}
