//! The async BLE driver: one task per configured device. It scans for the
//! device the config names, connects, subscribes to its health
//! characteristics, turns every notification into readings bound to the
//! subject, and reports technical events (connected / disconnected as
//! `DeviceStatus`; battery low and sensor contact lost as `DeviceAlarm` start
//! and end, on change only). A lost link is retried with capped exponential
//! backoff and jitter until shutdown; only a host without Bluetooth (no
//! adapter, no D-Bus system bus) ends the driver, with that error.
//!
//! Glucose meters: on every (re)connect the driver asks the Record Access
//! Control Point for records newer than the last sequence number seen, and
//! persists that number under `state_dir`, so readings taken while the
//! patient was out of range arrive once and only once.

use std::path::{Path, PathBuf};

use wardgate_model::{DeviceState, Timestamp};

use super::backoff::Backoff;
use super::racp::{self, RacpCode, RacpResponse};
use super::transport::{BleLink, BleTransport, BtleplugTransport, SimTransport, TransportError};
use super::{BleConfig, Characteristic, Tracker};
use crate::{DriverContext, PipelineClosed};

/// Why the driver stopped before shutdown.
#[derive(Debug, thiserror::Error)]
pub enum BleError {
    #[error(transparent)]
    PipelineClosed(#[from] PipelineClosed),
    #[error("Bluetooth is unavailable on this host: {0}")]
    Unavailable(TransportError),
}

/// Runs the device until shutdown, over the simulator socket if configured,
/// otherwise over the host's Bluetooth stack.
pub async fn run(config: BleConfig, ctx: DriverContext) -> Result<(), BleError> {
    if let Some(addr) = config.simulator {
        return run_with(SimTransport::new(addr), config, ctx).await;
    }
    let transport = tokio::select! {
        () = ctx.shutdown().cancelled() => return Ok(()),
        t = BtleplugTransport::new() => t,
    };
    match transport {
        Ok(t) => run_with(t, config, ctx).await,
        Err(e) => {
            tracing::error!(device = %ctx.device().id, error = %e, "BLE driver cannot start");
            ctx.emit(ctx.status(
                chrono::Utc::now(),
                DeviceState::Offline,
                Some(&e.to_string()),
            ))
            .await?;
            Err(BleError::Unavailable(e))
        }
    }
}

/// The driver over any transport (tests use a fake).
pub async fn run_with<T: BleTransport>(
    mut transport: T,
    config: BleConfig,
    ctx: DriverContext,
) -> Result<(), BleError> {
    let filter = config.scan_filter();
    let wanted = config.wanted();
    let store = config
        .state_dir
        .as_ref()
        .map(|dir| SeqStore::new(dir, ctx.device().id.as_str()));
    let mut tracker = Tracker::new(f64::from(config.battery_low_percent));
    if let Some(store) = &store
        && let Some((seq, at)) = store.load().await
    {
        tracker.last_glucose_seq = Some(seq);
        tracker.last_glucose_at = at;
    }
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    // Report "offline" once per outage, not once per failed attempt.
    let mut offline_reported = false;
    let mut first_attempt = true;
    loop {
        if !std::mem::take(&mut first_attempt) {
            ctx.metrics().reconnect();
        }
        let attempt = tokio::select! {
            () = ctx.shutdown().cancelled() => return Ok(()),
            r = transport.connect(&filter, config.scan_timeout) => r,
        };
        match attempt {
            Ok(mut link) => {
                backoff.handle_connected(tokio::time::Instant::now());
                let address = link.address();
                tracing::info!(device = %ctx.device().id, %address, "BLE device connected");
                ctx.emit(ctx.status(
                    chrono::Utc::now(),
                    DeviceState::Online,
                    Some(&format!("connected to {address}")),
                ))
                .await?;
                let end = session(&mut link, &wanted, &mut tracker, store.as_ref(), &ctx).await?;
                link.disconnect().await;
                let Some(why) = end else { return Ok(()) };
                backoff.handle_disconnected(tokio::time::Instant::now());
                tracing::warn!(device = %ctx.device().id, %address, reason = %why, "BLE device lost");
                ctx.emit(ctx.status(
                    chrono::Utc::now(),
                    DeviceState::Offline,
                    Some(&why.to_string()),
                ))
                .await?;
                offline_reported = true;
            }
            Err(e) if e.is_fatal() => {
                tracing::error!(device = %ctx.device().id, error = %e, "BLE driver stops");
                ctx.emit(ctx.status(
                    chrono::Utc::now(),
                    DeviceState::Offline,
                    Some(&e.to_string()),
                ))
                .await?;
                return Err(BleError::Unavailable(e));
            }
            Err(e) => {
                backoff.handle_disconnected(tokio::time::Instant::now());
                if !offline_reported {
                    // Log and report on change only: a device out of range fails every attempt.
                    tracing::info!(device = %ctx.device().id, error = %e, "BLE device not reachable");
                    ctx.emit(ctx.status(
                        chrono::Utc::now(),
                        DeviceState::Offline,
                        Some(&e.to_string()),
                    ))
                    .await?;
                    offline_reported = true;
                }
            }
        }
        let delay = backoff.poll_delay(rand::random::<f64>());
        tokio::select! {
            () = ctx.shutdown().cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection: subscribe, fetch stored glucose records, then relay
/// notifications. `Ok(None)` on shutdown, `Ok(Some(why))` when the link ended.
async fn session<L: BleLink>(
    link: &mut L,
    wanted: &[Characteristic],
    tracker: &mut Tracker,
    store: Option<&SeqStore>,
    ctx: &DriverContext,
) -> Result<Option<TransportError>, PipelineClosed> {
    let offered = link.characteristics().to_vec();
    let glucose = wanted.contains(&Characteristic::GlucoseMeasurement)
        && offered.contains(&Characteristic::GlucoseMeasurement)
        && offered.contains(&Characteristic::RecordAccessControlPoint);
    let mut subscribe: Vec<Characteristic> = wanted
        .iter()
        .copied()
        .filter(|c| offered.contains(c))
        .collect();
    if glucose {
        subscribe.push(Characteristic::RecordAccessControlPoint);
    }
    let setup = async {
        for c in subscribe {
            link.subscribe(c).await?;
        }
        link.subscribed().await?;
        if glucose {
            let from = tracker.last_glucose_seq.map(|s| s.wrapping_add(1));
            link.write(
                Characteristic::RecordAccessControlPoint,
                &racp::report_records_request(from),
            )
            .await?;
        }
        Ok::<_, TransportError>(())
    };
    let setup = tokio::select! {
        () = ctx.shutdown().cancelled() => return Ok(None),
        r = setup => r,
    };
    if let Err(e) = setup {
        return Ok(Some(e));
    }
    loop {
        let n = tokio::select! {
            () = ctx.shutdown().cancelled() => return Ok(None),
            n = link.next() => n,
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => return Ok(Some(e)),
        };
        ctx.metrics().frame();
        if n.characteristic == Characteristic::RecordAccessControlPoint {
            match racp::decode_response(&n.bytes) {
                Ok(RacpResponse::Response {
                    code: RacpCode::Success | RacpCode::NoRecordsFound,
                    ..
                }) => {
                    tracing::debug!(device = %ctx.device().id, "stored glucose records fetched");
                }
                Ok(other) => {
                    tracing::warn!(device = %ctx.device().id, response = ?other, "glucose meter refused the record request");
                }
                Err(e) => {
                    tracing::warn!(device = %ctx.device().id, error = %e, "bad RACP indication");
                }
            }
            continue;
        }
        let before = tracker.last_glucose_seq;
        match tracker.handle_notification(ctx, chrono::Utc::now(), &n) {
            // One notification is one measurement (a cuff's three pressures
            // and pulse, an oximeter's SpO2 and pulse).
            Ok(events) => ctx.emit_measurement(events).await?,
            Err(e) => {
                tracker.decode_errors += 1;
                ctx.metrics().decode_error("payload");
                // Count always, log the first and then every 100th: a broken
                // device must not flood the log.
                if tracker.decode_errors % 100 == 1 {
                    tracing::warn!(device = %ctx.device().id, error = %e, count = tracker.decode_errors, "undecodable BLE payload");
                }
            }
        }
        if let (Some(store), Some(seq)) = (store, tracker.last_glucose_seq)
            && before != Some(seq)
        {
            // The meter will not send this record again: remember it only
            // once it is durable.
            ctx.committed().await?;
            store.save(seq, tracker.last_glucose_at).await;
        }
    }
}

/// The last glucose sequence number of one device and when its newest
/// record was measured, in `<dir>/<device>.glucose-seq` as `<seq> [<RFC 3339>]`
/// (files from before the time was kept hold the number alone).
#[derive(Debug, Clone)]
struct SeqStore {
    path: PathBuf,
}

impl SeqStore {
    fn new(dir: &Path, device: &str) -> Self {
        Self {
            path: dir.join(format!("{device}.glucose-seq")),
        }
    }

    async fn load(&self) -> Option<(u16, Option<Timestamp>)> {
        let text = tokio::fs::read_to_string(&self.path).await.ok()?;
        let mut parts = text.split_whitespace();
        let seq = parts.next()?.parse().ok()?;
        let at = parts
            .next()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        Some((seq, at))
    }

    /// Write-then-rename, so a crash leaves the old number or the new one.
    async fn save(&self, seq: u16, at: Option<Timestamp>) {
        let tmp = self.path.with_extension("glucose-seq.tmp");
        let result = async {
            if let Some(dir) = self.path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let line = match at {
                Some(at) => format!("{seq} {}\n", at.to_rfc3339()),
                None => format!("{seq}\n"),
            };
            // Private to the gateway's user, like every file of patient data.
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, line.as_bytes()).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &self.path).await
        };
        if let Err(e) = result.await {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot persist glucose sequence number");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;
    use wardgate_model::{DeviceKind, DeviceRef, Event};

    use super::*;
    use crate::ble::transport::{Address, Notification, ScanFilter};

    const ADDR: Address = Address([0xAA, 0xBB, 0xCC, 0x00, 0x00, 0x01]);

    /// What the fake saw the driver do.
    #[derive(Debug, Default)]
    struct Log {
        attempts: Vec<Instant>,
        subscribed: Vec<Characteristic>,
        writes: Vec<(Characteristic, Vec<u8>)>,
    }

    /// Each connect pops the next scripted outcome; an empty script is "not found".
    struct FakeTransport {
        script: VecDeque<Result<FakeLink, TransportError>>,
        log: Arc<Mutex<Log>>,
    }

    struct FakeLink {
        offered: Vec<Characteristic>,
        values: VecDeque<Result<Notification, TransportError>>,
        log: Arc<Mutex<Log>>,
    }

    impl BleTransport for FakeTransport {
        type Link = FakeLink;
        async fn connect(
            &mut self,
            _: &ScanFilter,
            timeout: Duration,
        ) -> Result<FakeLink, TransportError> {
            self.log.lock().unwrap().attempts.push(Instant::now());
            self.script
                .pop_front()
                .unwrap_or(Err(TransportError::NotFound(timeout)))
        }
    }

    impl BleLink for FakeLink {
        fn address(&self) -> Address {
            ADDR
        }
        fn characteristics(&self) -> &[Characteristic] {
            &self.offered
        }
        async fn subscribe(&mut self, c: Characteristic) -> Result<(), TransportError> {
            self.log.lock().unwrap().subscribed.push(c);
            Ok(())
        }
        async fn write(&mut self, c: Characteristic, bytes: &[u8]) -> Result<(), TransportError> {
            self.log.lock().unwrap().writes.push((c, bytes.to_vec()));
            Ok(())
        }
        async fn next(&mut self) -> Result<Notification, TransportError> {
            match self.values.pop_front() {
                Some(v) => v,
                // The script is over: the link stays up, silent.
                None => std::future::pending().await,
            }
        }
        async fn disconnect(self) {}
    }

    #[allow(clippy::unnecessary_wraps)] // scripts hold Ok values beside Err(Disconnected)
    fn ntf(characteristic: Characteristic, bytes: &[u8]) -> Result<Notification, TransportError> {
        Ok(Notification {
            address: ADDR,
            characteristic,
            bytes: bytes.to_vec(),
        })
    }

    fn link(
        log: &Arc<Mutex<Log>>,
        offered: &[Characteristic],
        values: Vec<Result<Notification, TransportError>>,
    ) -> FakeLink {
        FakeLink {
            offered: offered.to_vec(),
            values: values.into(),
            log: log.clone(),
        }
    }

    fn setup() -> (DriverContext, crate::EventReceiver, CancellationToken) {
        let (tx, rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let ctx = DriverContext::new(
            DeviceRef::new("hr-1".into(), DeviceKind::Ble),
            "bed-7".into(),
            tx,
            shutdown.clone(),
        );
        (ctx, crate::EventReceiver::new(rx), shutdown)
    }

    fn config() -> BleConfig {
        BleConfig::for_addresses(&["AA:BB:CC:00:00:01"])
    }

    fn describe(e: &Event) -> String {
        match e {
            Event::Reading(r) => format!("{}={}@{}", r.metric, r.value, r.subject),
            Event::DeviceStatus(s) => {
                format!("{:?}:{}", s.state, s.reason.as_deref().unwrap_or(""))
            }
            Event::DeviceAlarm(a) => format!("{}:{:?}", a.alarm, a.phase),
            Event::Alert(_) | Event::Silence(_) => e.type_name().into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reconnects_with_capped_jittered_backoff_and_reports_status_on_change() {
        let log = Arc::new(Mutex::new(Log::default()));
        let hr = Characteristic::HeartRateMeasurement;
        let script = VecDeque::from([
            Err(TransportError::NotFound(Duration::from_secs(30))),
            Err(TransportError::NotFound(Duration::from_secs(30))),
            Err(TransportError::NotFound(Duration::from_secs(30))),
            Ok(link(
                &log,
                &[hr, Characteristic::BatteryLevel],
                vec![
                    ntf(hr, &[0x06, 0x48]), // contact detected, 72 /min
                    ntf(hr, &[0x06]),       // cut short: counted, not a reading
                    Err(TransportError::Disconnected),
                ],
            )),
            // further attempts: not found (empty script)
        ]);
        let transport = FakeTransport {
            script,
            log: log.clone(),
        };
        let (ctx, mut rx, shutdown) = setup();
        let mut registry = prometheus_client::registry::Registry::with_prefix("wardgate");
        let ctx = ctx.with_metrics(crate::DriverMetrics::register(&mut registry).device("hr-1"));
        let mut cfg = config();
        cfg.backoff_initial = Duration::from_secs(1);
        cfg.backoff_max = Duration::from_secs(4);
        let task = tokio::spawn(run_with(transport, cfg, ctx));

        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(describe(&rx.recv().await.unwrap()));
        }
        assert_eq!(
            seen,
            [
                "Offline:no matching device found within 30s",
                "Online:connected to AA:BB:CC:00:00:01",
                "heart_rate=72@bed-7",
                "Offline:the device disconnected",
            ]
        );
        // Let a few more failing attempts happen, then stop.
        while log.lock().unwrap().attempts.len() < 9 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert!(
            rx.try_recv().is_err(),
            "failed attempts after an outage are not re-reported"
        );

        let log = log.lock().unwrap();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let value = |series: &str| -> usize {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
                .parse()
                .unwrap()
        };
        assert_eq!(value(r#"wardgate_device_frames_total{device="hr-1"}"#), 2);
        assert_eq!(
            value(r#"wardgate_device_decode_errors_total{device="hr-1",kind="payload"}"#),
            1
        );
        // Every attempt but the first is a reconnect (the stop may come
        // between counting one and making it).
        let reconnects = value(r#"wardgate_device_reconnects_total{device="hr-1"}"#);
        assert!(
            (log.attempts.len() - 1..=log.attempts.len()).contains(&reconnects),
            "{reconnects} for {} attempts",
            log.attempts.len()
        );
        assert_eq!(log.subscribed, [hr, Characteristic::BatteryLevel]);
        let gaps: Vec<Duration> = log.attempts.windows(2).map(|w| w[1] - w[0]).collect();
        // Steps 1, 2, 4 s, then a short session (no reset) and the cap of 4 s.
        let steps = [1, 2, 4, 4, 4, 4, 4, 4];
        for (gap, step) in gaps.iter().zip(steps) {
            let step = Duration::from_secs(step);
            assert!(
                *gap >= step / 2 && *gap <= step,
                "gap {gap:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_adapter_is_returned_once_not_retried() {
        let log = Arc::new(Mutex::new(Log::default()));
        let transport = FakeTransport {
            script: VecDeque::from([Err(TransportError::NoAdapter)]),
            log: log.clone(),
        };
        let (ctx, mut rx, _shutdown) = setup();
        let result = run_with(transport, config(), ctx).await;
        assert!(matches!(
            result,
            Err(BleError::Unavailable(TransportError::NoAdapter))
        ));
        let status = describe(&rx.recv().await.unwrap());
        assert!(
            status.starts_with("Offline:no Bluetooth adapter found"),
            "{status}"
        );
        assert_eq!(log.lock().unwrap().attempts.len(), 1);
    }

    /// A glucose record: flags 0x02 (concentration, kg/L), sequence `seq`,
    /// base time 2026-11-27 07:00:00, `mgdl` × 10^-5 kg/L, capillary whole blood / finger.
    fn glucose(seq: u16, mgdl: u8) -> Vec<u8> {
        let [lo, hi] = seq.to_le_bytes();
        vec![0x02, lo, hi, 0xEA, 0x07, 11, 27, 7, 0, 0, mgdl, 0xB0, 0x11]
    }

    #[tokio::test(start_paused = true)]
    async fn glucose_fetches_records_after_the_persisted_sequence_number_on_every_connect() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hr-1.glucose-seq"), "5\n").unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let g = Characteristic::GlucoseMeasurement;
        let racp = Characteristic::RecordAccessControlPoint;
        let offered = [g, racp];
        let script = VecDeque::from([
            Ok(link(
                &log,
                &offered,
                vec![
                    ntf(g, &glucose(5, 90)), // already delivered before: dropped
                    ntf(g, &glucose(6, 100)),
                    ntf(g, &glucose(7, 52)),
                    ntf(racp, &[0x06, 0x00, 0x01, 0x01]), // success
                    Err(TransportError::Disconnected),
                ],
            )),
            Ok(link(
                &log,
                &offered,
                vec![ntf(racp, &[0x06, 0x00, 0x01, 0x06])],
            )), // none found
        ]);
        let transport = FakeTransport {
            script,
            log: log.clone(),
        };
        let (ctx, mut rx, shutdown) = setup();
        let mut cfg = config();
        cfg.state_dir = Some(dir.path().to_owned());
        let task = tokio::spawn(run_with(transport, cfg, ctx));
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(describe(&rx.recv().await.unwrap()));
        }
        assert_eq!(
            seen,
            [
                "Online:connected to AA:BB:CC:00:00:01",
                "glucose=100@bed-7",
                "glucose=52@bed-7",
                "Offline:the device disconnected",
                "Online:connected to AA:BB:CC:00:00:01",
            ]
        );
        // The second connection's request was written before its Online event was read.
        while log.lock().unwrap().writes.len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.subscribed, [g, racp, g, racp]);
        assert_eq!(
            log.writes,
            [
                // report stored records, ≥, by sequence number, 6
                (racp, vec![0x01, 0x03, 0x01, 0x06, 0x00]),
                // after reconnect: ≥ 8
                (racp, vec![0x01, 0x03, 0x01, 0x08, 0x00]),
            ]
        );
        let persisted = std::fs::read_to_string(dir.path().join("hr-1.glucose-seq")).unwrap();
        assert_eq!(persisted, "7 2026-11-27T07:00:00+00:00\n");
    }

    /// As [`glucose`], measured at `hh:mm` on 2026-11-27.
    fn glucose_at(seq: u16, mgdl: u8, hh: u8, mm: u8) -> Vec<u8> {
        let mut b = glucose(seq, mgdl);
        b[7] = hh;
        b[8] = mm;
        b
    }

    #[test]
    fn glucose_sequence_numbers_that_start_over_are_detected_and_accepted() {
        let (ctx, _rx, _s) = setup();
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let mut t = Tracker::new(20.0);
        let g = Characteristic::GlucoseMeasurement;
        let readings = |t: &mut Tracker, bytes: Vec<u8>| {
            t.handle_notification(&ctx, now, &ntf(g, &bytes).unwrap())
                .unwrap()
                .len()
        };
        assert_eq!(readings(&mut t, glucose_at(100, 90, 7, 0)), 1);
        assert_eq!(readings(&mut t, glucose_at(101, 95, 7, 5)), 1);
        // Sent again (a reconnect replays the store): already delivered.
        assert_eq!(readings(&mut t, glucose_at(101, 95, 7, 5)), 0);
        assert_eq!(t.glucose_seq_restarts, 0);
        // The meter was reset: numbering starts again at 1, with newer records.
        assert_eq!(readings(&mut t, glucose_at(1, 60, 8, 0)), 1);
        assert_eq!(readings(&mut t, glucose_at(2, 65, 8, 10)), 1);
        assert_eq!(t.glucose_seq_restarts, 1);
        assert_eq!(t.last_glucose_seq, Some(2));
        // An old record below the new numbering is still a duplicate.
        assert_eq!(readings(&mut t, glucose_at(1, 60, 8, 0)), 0);
        // Wrap past 65535: accepted whatever the meter's clock says.
        t.last_glucose_seq = Some(65_535);
        assert_eq!(readings(&mut t, glucose_at(0, 70, 8, 10)), 1);
        assert_eq!(t.glucose_seq_restarts, 2);
    }

    #[test]
    fn alarms_start_and_end_on_change_only() {
        let (ctx, _rx, _s) = setup();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let mut t = Tracker::new(20.0);
        let mut feed = |c, bytes: &[u8]| -> Vec<String> {
            let n = Notification {
                address: ADDR,
                characteristic: c,
                bytes: bytes.to_vec(),
            };
            t.handle_notification(&ctx, now, &n)
                .unwrap()
                .iter()
                .map(describe)
                .collect()
        };
        let bat = Characteristic::BatteryLevel;
        let hr = Characteristic::HeartRateMeasurement;
        assert_eq!(feed(bat, &[50]), ["battery_level=50@bed-7"]);
        assert_eq!(
            feed(bat, &[19]),
            ["battery_level=19@bed-7", "battery_low:Start"]
        );
        assert_eq!(feed(bat, &[18]), ["battery_level=18@bed-7"]);
        assert_eq!(
            feed(bat, &[20]),
            ["battery_level=20@bed-7", "battery_low:End"]
        );
        // flags 0x04: contact supported, not detected
        // readings without contact are withheld
        assert_eq!(feed(hr, &[0x04, 0x48]), ["sensor_contact_lost:Start"]);
        assert!(feed(hr, &[0x04, 0x48]).is_empty());
        // flags 0x06: detected
        assert_eq!(
            feed(hr, &[0x06, 0x49]),
            ["heart_rate=73@bed-7", "sensor_contact_lost:End"]
        );
        // PLX continuous, flags 0x08 device status, bit 11 sensor unconnected
        assert_eq!(
            feed(
                Characteristic::PlxContinuous,
                &[0x08, 0x61, 0x00, 0x48, 0x00, 0x00, 0x08, 0x00]
            ),
            ["sensor_contact_lost:Start"]
        );
    }
}
