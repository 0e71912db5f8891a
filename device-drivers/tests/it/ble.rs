//! `wardgate-sim ble` (in-process, real TCP on 127.0.0.1) → BLE driver over the
//! simulator transport → events on the DriverContext channel. The simulator
//! encodes from the specs on its own; the values expected here are the
//! scenario's inputs (mg/dL, %), not anything the driver computed.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::ble::BleConfig;
use wardgate_drivers::ble::driver::run;
use wardgate_drivers::{DriverContext, EventReceiver};
use wardgate_model::{AlarmPhase, DeviceKind, DeviceRef, DeviceState, Event, Metric, TimeSource};
use wardgate_sim::ble::scenario::{DAILY_WEIGHTS, GLUCOSE_RECORDS};
use wardgate_sim::ble::{BleSimConfig, Scenario, serve};

const ADDRESS: [u8; 6] = [0xAA, 0xBB, 0xCC, 0x00, 0x00, 0x07];

struct Rig {
    events: EventReceiver,
    shutdown: CancellationToken,
    driver: tokio::task::JoinHandle<Result<(), wardgate_drivers::ble::driver::BleError>>,
    sim: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Rig {
    async fn start(
        scenario: Scenario,
        speed: f64,
        start: NaiveDateTime,
        tweak: impl FnOnce(&mut BleConfig),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sim = tokio::spawn(serve(
            listener,
            BleSimConfig {
                scenario,
                address: ADDRESS,
                speed: Some(speed),
                start,
                repeat: false,
            },
        ));
        let mut config = BleConfig::for_addresses(&["AA:BB:CC:00:00:07"]);
        config.simulator = Some(addr);
        config.backoff_initial = Duration::from_millis(20);
        config.backoff_max = Duration::from_millis(100);
        tweak(&mut config);
        let (tx, events) = mpsc::channel(256);
        let shutdown = CancellationToken::new();
        let ctx = DriverContext::new(
            DeviceRef::new("ble-7".into(), DeviceKind::Ble),
            "bed-3".into(),
            tx,
            shutdown.clone(),
        );
        let driver = tokio::spawn(run(config, ctx));
        Self {
            events: EventReceiver::new(events),
            shutdown,
            driver,
            sim,
        }
    }

    /// Events until `done` says enough (bounded: a hang fails, not blocks).
    async fn collect_until(&mut self, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while !done(&seen) {
                seen.push(self.events.recv().await.expect("driver ended early"));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out; saw {seen:#?}"));
        seen
    }

    /// Stops the driver and returns whatever it emitted after `collect_until`.
    async fn stop(mut self) -> Vec<Event> {
        self.shutdown.cancel();
        self.driver.await.unwrap().unwrap();
        self.sim.abort();
        let mut rest = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            rest.push(e);
        }
        rest
    }
}

fn readings(
    events: &[Event],
    metric: &Metric,
) -> Vec<(f64, TimeSource, chrono::DateTime<chrono::Utc>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reading(r) if &r.metric == metric => Some((r.value, r.time_source, r.at)),
            _ => None,
        })
        .collect()
}

fn start() -> NaiveDateTime {
    // A fixed, plausible device clock.
    "2026-11-27T08:00:00".parse().unwrap()
}

#[tokio::test]
async fn glucose_records_arrive_once_across_a_disconnect_with_device_time() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_owned();
    let mut rig = Rig::start(Scenario::Hypoglycaemia, 1000.0, start(), |c| {
        c.state_dir = Some(dir);
    })
    .await;
    let seen = rig
        .collect_until(|s| readings(s, &Metric::Glucose).len() == GLUCOSE_RECORDS.len())
        .await;
    let rest = rig.stop().await;
    assert!(
        readings(&rest, &Metric::Glucose).is_empty(),
        "duplicates: {rest:?}"
    );

    let got = readings(&seen, &Metric::Glucose);
    for ((value, source, at), (seq, mg_dl, _, minute)) in got.iter().zip(GLUCOSE_RECORDS) {
        assert!(
            (value - mg_dl).abs() < 1e-9,
            "record {seq}: {value} vs {mg_dl}"
        );
        assert_eq!(*source, TimeSource::Device, "record {seq}");
        assert_eq!(
            *at,
            (start() + TimeDelta::minutes(minute)).and_utc(),
            "record {seq}"
        );
    }
    for e in &seen {
        assert_eq!(e.subject().as_str(), "bed-3");
    }
    // The link dropped once and came back: online, offline, online.
    let states: Vec<DeviceState> = seen
        .iter()
        .filter_map(|e| match e {
            Event::DeviceStatus(s) => Some(s.state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states[..3],
        [
            DeviceState::Online,
            DeviceState::Offline,
            DeviceState::Online
        ]
    );
    assert_eq!(readings(&seen, &Metric::BatteryLevel)[0].0, 55.0);
    let persisted = std::fs::read_to_string(state.path().join("ble-7.glucose-seq")).unwrap();
    // The last record's number and when it was measured (to tell a meter
    // whose numbering starts over from one that repeats itself).
    let (seq, _, _, minute) = GLUCOSE_RECORDS[GLUCOSE_RECORDS.len() - 1];
    let at = (start() + TimeDelta::minutes(minute)).and_utc();
    assert_eq!(persisted.trim(), format!("{seq} {}", at.to_rfc3339()));
}

#[tokio::test]
async fn desaturation_reaches_the_subject() {
    let mut rig = Rig::start(Scenario::Desaturation, 200.0, start(), |_| {}).await;
    let seen = rig
        .collect_until(|s| {
            readings(s, &Metric::Spo2)
                .iter()
                .any(|r| r.1 == TimeSource::Device)
        })
        .await;
    rig.stop().await;
    let spo2: Vec<f64> = readings(&seen, &Metric::Spo2).iter().map(|r| r.0).collect();
    // 97 % at first, down to 85 % (continuous), then the spot-check of 85 % with the device's time.
    assert_eq!(spo2[0], 97.0);
    assert!(spo2.windows(2).all(|w| w[1] <= w[0]), "{spo2:?}");
    assert_eq!(*spo2.last().unwrap(), 85.0);
    let spot = readings(&seen, &Metric::Spo2).pop().unwrap();
    assert_eq!(spot.2, (start() + TimeDelta::seconds(100)).and_utc());
    assert!(seen.iter().all(|e| e.subject().as_str() == "bed-3"));
}

#[tokio::test]
async fn contact_loss_is_a_technical_alarm_that_starts_and_ends() {
    let mut rig = Rig::start(Scenario::ContactLoss, 200.0, start(), |_| {}).await;
    let alarms = |s: &[Event]| -> Vec<(String, AlarmPhase)> {
        s.iter()
            .filter_map(|e| match e {
                Event::DeviceAlarm(a) => Some((a.alarm.to_string(), a.phase)),
                _ => None,
            })
            .collect()
    };
    let seen = rig.collect_until(|s| alarms(s).len() == 2).await;
    rig.stop().await;
    assert_eq!(
        alarms(&seen),
        [
            ("sensor_contact_lost".to_owned(), AlarmPhase::Start),
            ("sensor_contact_lost".to_owned(), AlarmPhase::End)
        ]
    );
    // No heart rate was forwarded while contact was lost (the strap sends 0 /min then).
    assert!(
        readings(&seen, &Metric::HeartRate)
            .iter()
            .all(|r| r.0 == 70.0)
    );
}

#[tokio::test]
async fn battery_drain_raises_battery_low_below_the_threshold() {
    let mut rig = Rig::start(Scenario::BatteryDrain, 400.0, start(), |c| {
        c.battery_low_percent = 20;
    })
    .await;
    let seen = rig
        .collect_until(|s| {
            s.iter()
                .any(|e| matches!(e, Event::DeviceAlarm(a) if &*a.alarm == "battery_low"))
        })
        .await;
    rig.stop().await;
    let levels: Vec<f64> = readings(&seen, &Metric::BatteryLevel)
        .iter()
        .map(|r| r.0)
        .collect();
    // 30 % down by 1 % a step; the alarm comes with the first level below 20 %.
    let expected: Vec<f64> = (19..=30).rev().map(f64::from).collect();
    assert_eq!(levels, expected);
    match seen.last() {
        Some(Event::DeviceAlarm(a)) => assert_eq!(a.phase, AlarmPhase::Start),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn weight_gain_over_a_compressed_week_keeps_the_scale_s_dates() {
    // Half a day every 10 ms: the week takes about 0.15 s.
    let mut rig = Rig::start(Scenario::WeightGain, 4_320_000.0, start(), |_| {}).await;
    let seen = rig
        .collect_until(|s| readings(s, &Metric::BodyWeight).len() == DAILY_WEIGHTS.len())
        .await;
    rig.stop().await;
    let weights = readings(&seen, &Metric::BodyWeight);
    for (day, ((kg, source, at), expected)) in weights.iter().zip(DAILY_WEIGHTS).enumerate() {
        assert!(
            (kg - expected).abs() < 1e-9,
            "day {day}: {kg} vs {expected}"
        );
        assert_eq!(*source, TimeSource::Device);
        // One weighing a day, the last one at the scale's "now".
        let days_before = (DAILY_WEIGHTS.len() - 1 - day) as i64;
        assert_eq!(*at, (start() - TimeDelta::days(days_before)).and_utc());
    }
}

#[tokio::test]
async fn hypertensive_cuff_in_mmhg_and_kpa() {
    let mut rig = Rig::start(Scenario::Hypertensive, 400.0, start(), |_| {}).await;
    let seen = rig
        // The pulse rate is the last reading of a measurement.
        .collect_until(|s| readings(s, &Metric::PulseRate).len() == 2)
        .await;
    rig.stop().await;
    let value = |m: &Metric| -> Vec<f64> { readings(&seen, m).iter().map(|r| r.0).collect() };
    // 182/112 (135) mmHg, pulse 88; then 24.3/15.1/18.1 kPa × 7.50062, pulse 90.
    let close = |got: &[f64], want: &[f64]| {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9)
    };
    assert!(
        close(&value(&Metric::BpSystolic), &[182.0, 182.265_066]),
        "{seen:?}"
    );
    assert!(
        close(&value(&Metric::BpDiastolic), &[112.0, 113.259_362]),
        "{:?}",
        value(&Metric::BpDiastolic)
    );
    assert!(close(&value(&Metric::BpMean), &[135.0, 135.761_222]));
    assert!(close(&value(&Metric::PulseRate), &[88.0, 90.0]));
    // The cuff pressure while deflating: 190 down to 80 mmHg in 10 mmHg steps first.
    let cuff: Vec<f64> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Reading(r) if r.metric.name() == "cuff_pressure" => Some(r.value),
            _ => None,
        })
        .take(12)
        .collect();
    let expected: Vec<f64> = (0..12).map(|k| 190.0 - 10.0 * f64::from(k)).collect();
    assert_eq!(cuff, expected);
    // The measurement carries the cuff's time stamp (12 s into the script).
    let at = readings(&seen, &Metric::BpSystolic)[0].2;
    assert_eq!(at, (start() + TimeDelta::seconds(12)).and_utc());
}
