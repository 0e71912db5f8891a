//! The FHIR sink: charts readings into the patient record of an EMR (or an
//! integration engine in front of one) as FHIR R4 Observations, and advances
//! its spool cursor only after the server's 2xx on the transaction Bundle
//! that carries them.
//!
//! From the spooled stream (alerts first) it takes, through [`Charting`],
//! each metric once per charting interval and every reading that raised an
//! alert; only readings of beds and patients with an MRN in `[patients]`,
//! and only metrics with a LOINC or MDC code ([`encode::chartable`]). The
//! rest is acknowledged without a request: it is not patient-record data,
//! and the other sinks carry it. Systolic, diastolic and mean pressure of
//! one measurement become one panel; the NEWS2 score carries its
//! parameter scores.
//!
//! Delivery is as the InfluxDB sink's ([`crate::sinks::delivery`]): network
//! errors, 429 and 5xx (and 401, 403, 404: the token or URL) are retried
//! with capped backoff and jitter while the spool keeps everything behind
//! the bundle in hand; any other 4xx refuses the bundle, which is split in
//! halves down to the Observations at fault, those go to the quarantine file
//! with a technical alarm, and the stream goes on. Each Observation is a
//! conditional create on its identifier (the same for the same reading in
//! every retry), so a bundle sent again after a lost answer stores nothing
//! twice.
//!
//! Invariant: a spooled record is acknowledged only once everything charted
//! from it is stored at the server or in the quarantine file.

mod config;
pub mod encode;
mod news2;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardgate_model::{Event, Metric, Reading, Spo2Scale, SubjectId, SubjectKind};

pub use config::FhirConfig;
use encode::{Chart, Naming, Patient};

use crate::config::PatientsConfig;
use crate::secret::{Secret, SecretError, SecretSource};
use crate::sinks::charting::Charting;
use crate::sinks::delivery::refusals::Refusals;
use crate::sinks::delivery::split::write_splitting;
use crate::sinks::delivery::{
    DeliveryMetrics, Peer, Quarantine, QuarantineEntry, Settled, WriteError, status_error,
    tls_roots, verdict,
};
use crate::sinks::supervisor::SinkEnv;
use crate::sinks::{PeerHealth, Sink, SinkContext, SinkError};
use crate::spool::Batch;

/// How often the figures are logged while running.
const STATS_INTERVAL: Duration = Duration::from_secs(60);

/// Why the sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FhirSetupError {
    #[error("FHIR token: {0}")]
    Token(#[from] SecretError),
    #[error("FHIR url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("FHIR TLS files: {0}")]
    Tls(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("a fhir sink needs a [patients] section")]
    NoPatients,
}

/// The configured endpoint.
#[derive(Debug)]
struct FhirClient {
    peer: Peer,
    http: reqwest::Client,
    url: reqwest::Url,
    token: Option<Secret>,
}

impl FhirClient {
    fn new(name: &str, config: &FhirConfig) -> Result<Self, FhirSetupError> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| FhirSetupError::Url {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        let roots = tls_roots(config.ca.as_deref()).map_err(FhirSetupError::Tls)?;
        let mut http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .tls_certs_only(roots);
        if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| FhirSetupError::Tls(format!("{}: {e}", p.display())))
            };
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| FhirSetupError::Tls(format!("client certificate and key: {e}")))?;
            http = http.identity(identity);
        }
        Ok(Self {
            peer: Peer {
                name: name.to_owned(),
                server: "FHIR",
                check: "url and token",
                backoff: Peer::backoff(config.max_backoff),
            },
            http: http.build()?,
            url,
            token: config
                .token
                .as_ref()
                .map(SecretSource::resolve)
                .transpose()?,
        })
    }

    /// POSTs one transaction Bundle of `sent` entries; `Ok` on a 2xx whose
    /// answer accounts for every entry.
    async fn post(&self, bundle: &[u8], sent: usize) -> Result<(), WriteError> {
        let mut req = self
            .http
            .post(self.url.clone())
            .header("Content-Type", "application/fhir+json")
            .header("Accept", "application/fhir+json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let response = req
            .body(bundle.to_vec())
            .send()
            .await
            .map_err(WriteError::Network)?;
        let status = response.status().as_u16();
        if verdict(status) != crate::sinks::delivery::Verdict::Stored {
            return Err(status_error(response).await);
        }
        let body = response.bytes().await.map_err(WriteError::Network)?;
        // A 2xx that does not account for every entry is not a delivery:
        // retried like a 5xx (conditional creates make that harmless).
        encode::check_response(&body, sent).map_err(|e| WriteError::Status {
            status: 502,
            body: format!("the server answered {status} but {e}"),
            retry_after: None,
        })
    }
}

/// A configured FHIR sink, ready to run.
#[derive(Debug)]
pub struct FhirSink {
    name: String,
    config: FhirConfig,
    client: FhirClient,
    naming: Naming,
    patients: Arc<PatientsConfig>,
    /// The NEWS2 SpO2 scale of each subject, and which are rooms.
    scales: HashMap<SubjectId, Spo2Scale>,
    rooms: HashSet<SubjectId>,
    refusals: Refusals,
    metrics: Arc<DeliveryMetrics>,
}

impl Sink for FhirSink {
    type Config = FhirConfig;

    async fn build(name: &str, config: &FhirConfig, env: &SinkEnv) -> Result<Self, SinkError> {
        let patients = env.patients.clone().ok_or(FhirSetupError::NoPatients)?;
        let quarantine = Quarantine::new(
            config.quarantine.clone().unwrap_or_else(|| {
                env.spool_path
                    .with_file_name(format!("{name}.quarantine.jsonl"))
            }),
            config.quarantine_max_bytes,
        );
        let mut refusals = Refusals::new(name, quarantine, config.quarantine_max_bytes);
        refusals.alarm_on(env.events.clone(), env.gateway.clone());
        Ok(Self {
            name: name.to_owned(),
            client: FhirClient::new(name, config)?,
            naming: Naming {
                base: config.identifier_base.clone().unwrap_or_else(|| {
                    format!("urn:wardgate:{}:{}", env.identity.site, env.gateway)
                }),
                gateway: env.gateway.clone(),
            },
            config: config.clone(),
            patients,
            scales: env
                .subjects
                .iter()
                .map(|s| (s.id.clone(), s.profile.spo2_scale))
                .collect(),
            rooms: env
                .subjects
                .iter()
                .filter(|s| s.kind == SubjectKind::Room)
                .map(|s| s.id.clone())
                .collect(),
            refusals,
            metrics: Arc::new(DeliveryMetrics::new().exporting(env.metrics.sink(name))),
        })
    }

    fn run(
        self,
        cx: SinkContext,
    ) -> impl std::future::Future<Output = Result<u64, SinkError>> + Send {
        self.deliver(cx)
    }
}

/// What the stream gave since the last bundle: the batches to acknowledge
/// once it is stored, and the readings charted from them.
#[derive(Debug, Default)]
struct Held {
    batches: Vec<Batch>,
    charted: Vec<Reading>,
    /// When the oldest charted reading must be sent.
    deadline: Option<Instant>,
    /// The deadline was put off once for a panel's missing parts.
    put_off: bool,
}

enum Flushed {
    Done,
    /// Stopping while the server is failing: the batches stay in the spool.
    Stopped,
}

impl FhirSink {
    /// Charts until `drain` is cancelled and everything spooled is settled
    /// (or, when the server is failing, at once: the spool keeps the rest).
    async fn deliver(mut self, cx: SinkContext) -> Result<u64, SinkError> {
        let SinkContext {
            mut reader,
            drain,
            health,
            ..
        } = cx;
        let mut charting = Charting::new(&self.config.chart);
        let mut news2 = news2::News2Tracker::default();
        let mut unmapped: HashSet<SubjectId> = HashSet::new();
        let mut held = Held::default();
        let mut acknowledged = 0u64;
        let mut stats = tokio::time::interval_at(Instant::now() + STATS_INTERVAL, STATS_INTERVAL);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let mut caught_up = false;
            // A blood-pressure panel is not cut between two bundles: its
            // parts are read on past the bound (one spool batch more).
            let mut past_bound = false;
            while held.charted.len() < self.config.batch_max
                || (open_panel(&held.charted) && !std::mem::replace(&mut past_bound, true))
            {
                let Some(batch) = reader.next_batch(self.config.batch_max).await? else {
                    caught_up = true;
                    break;
                };
                for record in &batch.records {
                    match &record.event {
                        Event::Alert(a) => charting.handle_alert(a),
                        Event::Reading(r) => {
                            news2.handle_reading(r);
                            if self.wanted(r, &mut unmapped) && charting.handle_reading(r) {
                                held.charted.push(r.clone());
                            }
                        }
                        _ => {}
                    }
                }
                if held.charted.is_empty() {
                    // Nothing of it goes to the record: settled as it is.
                    acknowledged += batch.records.len() as u64;
                    reader.ack(batch.lane, batch.after, batch.last()).await?;
                } else {
                    held.deadline
                        .get_or_insert_with(|| Instant::now() + self.config.flush_interval);
                    held.batches.push(batch);
                }
            }
            let now = Instant::now();
            if held.deadline.is_some_and(|d| d <= now)
                && open_panel(&held.charted)
                && !std::mem::replace(&mut held.put_off, true)
            {
                // The rest of the measurement is committed within moments:
                // wait one interval more for it (once).
                held.deadline = Some(now + self.config.flush_interval);
            }
            let due = held.charted.len() >= self.config.batch_max
                || drain.is_cancelled()
                || held.deadline.is_some_and(|d| d <= now);
            if !held.charted.is_empty() && due {
                let charts = self.charts(&held.charted, &news2);
                match self.flush(&charts, &drain, &health).await {
                    Flushed::Done => {
                        for b in held.batches.drain(..) {
                            acknowledged += b.records.len() as u64;
                            reader.ack(b.lane, b.after, b.last()).await?;
                        }
                        held = Held::default();
                        continue;
                    }
                    Flushed::Stopped => break,
                }
            }
            if drain.is_cancelled() && caught_up && held.charted.is_empty() {
                break;
            }
            let sleep_until = held.deadline.unwrap_or_else(Instant::now);
            tokio::select! {
                () = reader.wait_for_data(), if caught_up => {}
                () = tokio::time::sleep_until(sleep_until), if held.deadline.is_some() => {}
                _ = stats.tick() => {
                    self.metrics.log(&self.name, chrono::Utc::now(), "fhir sink");
                    self.refusals.recheck(&self.metrics).await;
                }
                () = drain.cancelled(), if !drain.is_cancelled() => {}
            }
        }
        self.metrics
            .log(&self.name, chrono::Utc::now(), "fhir sink stopped");
        Ok(acknowledged)
    }

    /// Whether `r` may go to the record at all: a coded metric of a bed or
    /// patient whose MRN is configured. An unmapped subject is logged once.
    fn wanted(&self, r: &Reading, unmapped: &mut HashSet<SubjectId>) -> bool {
        if !encode::chartable(&r.metric) || self.rooms.contains(&r.subject) {
            return false;
        }
        if self.patients.mrn(&r.subject).is_some() {
            return true;
        }
        if unmapped.insert(r.subject.clone()) {
            tracing::warn!(sink = %self.name, subject = %r.subject, "no MRN for this subject in [patients]: its readings are not charted (an empty bed, or add it to patients.mrn)");
        }
        false
    }

    /// The charted readings as Observations to create: blood pressure parts
    /// of one measurement joined into a panel, NEWS2 with its parameters.
    fn charts(&self, readings: &[Reading], news2: &news2::News2Tracker) -> Vec<Chart> {
        let key = |r: &'_ Reading| -> (SubjectId, Option<String>, i64) {
            (
                r.subject.clone(),
                r.device.as_ref().map(|d| d.id.to_string()),
                r.at.timestamp_nanos_opt().unwrap_or_default(),
            )
        };
        let mut bp: HashMap<(SubjectId, Option<String>, i64), [Option<Reading>; 3]> =
            HashMap::new();
        for r in readings {
            let slot = match r.metric {
                Metric::BpSystolic => 0,
                Metric::BpDiastolic => 1,
                Metric::BpMean => 2,
                _ => continue,
            };
            bp.entry(key(r)).or_default()[slot] = Some(r.clone());
        }
        let mut out = Vec::with_capacity(readings.len());
        for r in readings {
            match r.metric {
                Metric::BpSystolic | Metric::BpDiastolic | Metric::BpMean => {
                    let Some(parts) = bp.remove(&key(r)) else {
                        continue; // already charted as part of its panel
                    };
                    match parts {
                        [Some(systolic), Some(diastolic), mean] => out.push(Chart::BloodPressure {
                            systolic,
                            diastolic,
                            mean,
                        }),
                        parts => out.extend(parts.into_iter().flatten().map(Chart::Single)),
                    }
                }
                Metric::News2Score => out.push(Chart::News2 {
                    score: r.clone(),
                    parameters: news2
                        .parameters(r, self.scales.get(&r.subject).copied().unwrap_or_default()),
                }),
                _ => out.push(Chart::Single(r.clone())),
            }
        }
        out
    }

    /// Sends the charts in transaction Bundles, split while the server
    /// refuses, and quarantines what it refuses on its own.
    async fn flush(
        &mut self,
        charts: &[Chart],
        drain: &CancellationToken,
        health: &PeerHealth,
    ) -> Flushed {
        let observations: Vec<Value> = charts
            .iter()
            .map(|c| {
                let mrn = self.patients.mrn(&c.first().subject).unwrap_or_default();
                let patient = Patient {
                    system: &self.patients.system,
                    mrn,
                };
                encode::observation(c, patient, &self.naming)
            })
            .collect();
        let n = observations.len() as u64;
        self.metrics.add_queued(n, charts[0].first().at);
        let client = &self.client;
        let metrics = &*self.metrics;
        let bundle = |range: Range<usize>| {
            let body =
                serde_json::to_vec(&encode::transaction(observations[range.clone()].to_vec()))
                    .unwrap_or_default();
            let sent = range.len();
            async move {
                client
                    .peer
                    .until_done(sent as u64, metrics, drain, || client.post(&body, sent))
                    .await
            }
        };
        let refused = match write_splitting(&self.name, "FHIR", observations.len(), bundle).await {
            Settled::Done { refused, .. } => refused,
            Settled::Cancelled => {
                health.down("the server did not store the last bundle before the gateway stopped");
                return Flushed::Stopped;
            }
        };
        health.up();
        self.metrics.add_acknowledged(n - refused.len() as u64);
        if let Some(first) = refused.first() {
            let now = chrono::Utc::now();
            let texts: Vec<String> = refused
                .iter()
                .map(|f| observations[f.index].to_string())
                .collect();
            let entries: Vec<QuarantineEntry<'_>> = refused
                .iter()
                .zip(&texts)
                .map(|(f, text)| QuarantineEntry {
                    quarantined_at: now,
                    by: &self.name,
                    status: Some(f.status),
                    reason: &f.reason,
                    topic: None,
                    event: None,
                    payload: Some(text),
                })
                .collect();
            let Some(appended) = self.refusals.keep(&entries, &self.metrics, drain).await else {
                return Flushed::Stopped;
            };
            tracing::error!(
                sink = %self.name,
                status = first.status,
                response = %first.reason,
                refused = refused.len(),
                observations = n,
                quarantine = %self.refusals.quarantine().path().display(),
                "the FHIR server refused Observations; they were moved to the quarantine file and will not be retried (the rest of the bundle is stored)"
            );
            let detail = format!(
                "{} of {n} Observations refused with {}: {}",
                refused.len(),
                first.status,
                first.reason.trim_end()
            );
            self.refusals.alarm_quarantined(appended, &detail).await;
        }
        self.metrics.done(n, None);
        Flushed::Done
    }
}

/// Whether the last charted reading is a blood-pressure part whose panel
/// lacks one of its parts (they may follow: a cuff without a mean pressure
/// leaves the panel open until the next reading or the deadline put off).
fn open_panel(charted: &[Reading]) -> bool {
    let Some(last) = charted.last() else {
        return false;
    };
    if !matches!(
        last.metric,
        Metric::BpSystolic | Metric::BpDiastolic | Metric::BpMean
    ) {
        return false;
    }
    let same =
        |r: &&Reading| r.at == last.at && r.subject == last.subject && r.device == last.device;
    let parts: Vec<&Metric> = charted
        .iter()
        .rev()
        .take(3)
        .filter(same)
        .map(|r| &r.metric)
        .collect();
    parts.len() < 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardgate_model::TimeSource;

    fn r(metric: Metric, s: i64) -> Reading {
        let at = chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        Reading::new(at, TimeSource::Device, "bed-1".into(), None, metric, 1.0).unwrap()
    }

    #[test]
    fn a_panel_is_open_until_its_three_parts_are_in() {
        use Metric::{BpDiastolic, BpMean, BpSystolic, HeartRate};
        assert!(!open_panel(&[]));
        assert!(!open_panel(&[r(HeartRate, 0)]));
        assert!(open_panel(&[r(HeartRate, 0), r(BpSystolic, 1)]));
        assert!(open_panel(&[r(BpSystolic, 1), r(BpDiastolic, 1)]));
        assert!(!open_panel(&[
            r(BpSystolic, 1),
            r(BpDiastolic, 1),
            r(BpMean, 1)
        ]));
        // Parts of another measurement do not close it.
        assert!(open_panel(&[
            r(BpSystolic, 0),
            r(BpDiastolic, 0),
            r(BpSystolic, 1)
        ]));
        assert!(open_panel(&[r(BpDiastolic, 1), r(BpMean, 1)]));
    }
}
