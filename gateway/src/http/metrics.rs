//! `GET /metrics`: the OpenMetrics text exposition (docs/metrics.md) of
//! the live counters ([`crate::metrics::Metrics`]) followed by the figures
//! read at the scrape — the page view's devices and alerts, the HTTP
//! layer's own counters, the spool's size and each sink's backlog — encoded
//! by prometheus-client from a registry built for this scrape.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use wardgate_drivers::metrics::LabelValue;
use wardgate_model::Timestamp;

use super::HttpState;
use crate::spool::{SinkBacklog, SpoolStats};

/// What Prometheus asks for and prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the figures built at each scrape.
type Labels = Vec<(&'static str, LabelValue)>;
type F64Gauge = Gauge<f64, AtomicU64>;

pub(super) async fn metrics(State(state): State<HttpState>) -> Response {
    let mut scrape = Registry::with_prefix(crate::metrics::PREFIX);
    view_figures(&mut scrape, &state);
    http_figures(&mut scrape, &state);
    if let Some(probe) = state.spool.clone() {
        let spool = Arc::clone(&probe.spool);
        if let Ok(Ok(backlog)) = tokio::task::spawn_blocking(move || spool.backlog()).await {
            sink_backlog(&mut scrape, &backlog, chrono::Utc::now());
        }
        let spool = Arc::clone(&probe.spool);
        let read = tokio::task::spawn_blocking(move || {
            let size = std::fs::metadata(spool.path()).map_or(0, |m| m.len());
            spool.stats().map(|s| (s, size))
        });
        if let Ok(Ok((stats, size))) = read.await {
            spool_figures(&mut scrape, &stats, size, probe.max_bytes);
        }
    }
    let mut out = String::new();
    let encoded = encode_registry(&mut out, state.metrics.registry())
        .and_then(|()| encode_registry(&mut out, &scrape))
        .and_then(|()| encode_eof(&mut out));
    if let Err(e) = encoded {
        // Writing into a String fails only if an encoder refuses a value.
        tracing::error!(error = %e, "metrics could not be encoded");
        return super::api::error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        );
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        out,
    )
        .into_response()
}

/// A counter with the value `v`, for a figure kept elsewhere.
fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

fn gauge_f64(v: f64) -> F64Gauge {
    let g = F64Gauge::default();
    g.set(v);
    g
}

fn one(key: &'static str, value: impl Into<LabelValue>) -> Labels {
    vec![(key, value.into())]
}

/// The page view's figures: events and alert transitions committed, open
/// alerts, and per device its readings, last sign of life and online state.
fn view_figures(registry: &mut Registry, state: &HttpState) {
    let view = state
        .view
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let events = Family::<Labels, Counter>::default();
    for (k, v) in &view.counters.events {
        events.get_or_create(&one("type", *k)).inc_by(*v);
    }
    registry.register("events", "Events committed to the spool, by type", events);
    let transitions = Family::<Labels, Counter>::default();
    for (k, v) in &view.counters.transitions {
        transitions.get_or_create(&one("transition", *k)).inc_by(*v);
    }
    registry.register(
        "alert_transitions",
        "Alert transitions, by transition (wardgate_rule_alert_transitions_total adds rule and priority)",
        transitions,
    );
    let alerts = Family::<Labels, Gauge>::default();
    let counts = view.alert_counts();
    for s in ["active", "latched", "acknowledged"] {
        alerts
            .get_or_create(&one("state", s))
            .set(counts.get(s).copied().unwrap_or(0) as i64);
    }
    registry.register("alerts", "Open alerts, by state", alerts);
    let readings = Family::<Labels, Counter>::default();
    let last_seen = Family::<Labels, F64Gauge>::default();
    let online = Family::<Labels, Gauge>::default();
    for d in view.devices() {
        let labels = one("device", d.id.as_str());
        readings.get_or_create(&labels).inc_by(d.readings);
        if let Some(t) = d.last_seen {
            last_seen
                .get_or_create(&labels)
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
        online
            .get_or_create(&labels)
            .set(i64::from(d.state == "online"));
    }
    registry.register("device_readings", "Readings committed, by device", readings);
    registry.register_with_unit(
        "device_last_seen",
        "Unix time of the device's last reading, alarm or online status",
        Unit::Seconds,
        last_seen,
    );
    registry.register(
        "device_online",
        "1 when the device's last status is online",
        online,
    );
}

/// The HTTP layer's own counters and the runtime's task count.
fn http_figures(registry: &mut Registry, state: &HttpState) {
    registry.register(
        "http_sse_lagged",
        "Committed batches an SSE client or the page view skipped",
        counter(state.lagged.load(Ordering::Relaxed)),
    );
    registry.register(
        "tasks",
        "Tasks alive in the gateway's runtime (drivers, sinks, connections): a leak shows as growth",
        gauge(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as u64,
        ),
    );
    registry.register(
        "http_unauthorized",
        "Requests refused for want of a valid token (401) or of a role that allows them (403)",
        counter(state.rejected_writes.load(Ordering::Relaxed)),
    );
    registry.register(
        "http_streams_refused",
        "Event streams refused: the gateway's or the client's limit reached",
        counter(state.refused_streams.load(Ordering::Relaxed)),
    );
}

/// The spool's contents against its bound.
fn spool_figures(registry: &mut Registry, s: &SpoolStats, file_bytes: u64, max_bytes: u64) {
    registry.register(
        "spool_alerts",
        "Alert events waiting in the spool",
        gauge(s.alerts),
    );
    registry.register(
        "spool_telemetry",
        "Telemetry events waiting in the spool",
        gauge(s.telemetry),
    );
    registry.register_with_unit(
        "spool_telemetry",
        "Bytes of telemetry in the spool (what its bound counts)",
        Unit::Bytes,
        gauge(s.telemetry_bytes),
    );
    registry.register_with_unit(
        "spool_max",
        "The spool's telemetry bound (`[spool] max_bytes`)",
        Unit::Bytes,
        gauge(max_bytes),
    );
    registry.register_with_unit(
        "spool_file_size",
        "Size of the spool file on disk",
        Unit::Bytes,
        gauge(file_bytes),
    );
    registry.register(
        "spool_fill_ratio",
        "Telemetry bytes over the bound: at 1 the oldest telemetry is evicted",
        gauge_f64(if max_bytes == 0 {
            0.0
        } else {
            s.telemetry_bytes as f64 / max_bytes as f64
        }),
    );
    registry.register(
        "spool_evicted",
        "Telemetry evicted to stay within the limits",
        counter(s.evicted_total),
    );
    registry.register(
        "spool_corrupt_records",
        "Spool records that could not be read",
        counter(s.corrupt_records),
    );
}

/// Per sink and lane: records waiting for the peer's confirmation, and how
/// long the oldest has waited (the cursor's lag) — an alert lane that does
/// not drain is the figure to alarm on.
fn sink_backlog(registry: &mut Registry, backlog: &[SinkBacklog], now: Timestamp) {
    let records = Family::<Labels, Gauge>::default();
    let age = Family::<Labels, F64Gauge>::default();
    for b in backlog {
        let labels = vec![
            ("sink", LabelValue::from(b.sink.as_str())),
            ("lane", LabelValue::from(b.lane.as_str())),
        ];
        records
            .get_or_create(&labels)
            .set(i64::try_from(b.records).unwrap_or(i64::MAX));
        age.get_or_create(&labels).set(
            b.since
                .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
        );
    }
    registry.register(
        "sink_backlog_records",
        "Spooled records the sink's peer has not confirmed yet",
        records,
    );
    registry.register_with_unit(
        "sink_backlog_age",
        "How long the oldest unconfirmed record has waited (0 when none)",
        Unit::Seconds,
        age,
    );
}
