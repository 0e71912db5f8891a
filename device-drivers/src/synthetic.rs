//! A synthetic source: smooth, deterministic signals for configured metrics,
//! like Telegraf's `inputs.mock`. It lets a gateway (and the demo config) run
//! end to end without hardware; it does not pretend to be any real device.

use std::time::Duration;

use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration, check_range};
use wardgate_model::{DeviceState, MetricRegistry, TimeSource};

use crate::{DriverContext, PipelineClosed};

/// `[[devices]] type = "synthetic"`.
#[derive(Debug, Clone, Deserialize)]
pub struct SyntheticConfig {
    /// Time between samples of every signal.
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// The signals to produce, one reading each per interval.
    pub signals: Vec<SignalConfig>,
}

/// `value(t) = base + amplitude * sin(2πt / period)`, rounded to `decimals`.
#[derive(Debug, Clone, Deserialize)]
pub struct SignalConfig {
    pub metric: String,
    pub base: f64,
    #[serde(default)]
    pub amplitude: f64,
    #[serde(with = "humantime_serde", default = "default_period")]
    pub period: Duration,
    #[serde(default = "default_decimals")]
    pub decimals: u8,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_period() -> Duration {
    Duration::from_secs(60)
}
fn default_decimals() -> u8 {
    1
}

impl Validate for SyntheticConfig {
    fn validate(&self, metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_duration(
            &mut issues,
            "interval",
            self.interval,
            Duration::from_millis(10)..=Duration::from_secs(3600),
        );
        if self.signals.is_empty() {
            issues.push(ConfigIssue::new(
                [PathSeg::from("signals")],
                "at least one signal is needed",
            ));
        }
        for (i, s) in self.signals.iter().enumerate() {
            let within = [PathSeg::from("signals"), PathSeg::from(i)];
            if metrics.resolve(&s.metric).is_none() {
                issues.push(
                    ConfigIssue::new(
                        [PathSeg::from("metric")],
                        format!(
                            "unknown metric {:?}; allowed: the built-in metrics ({}) or a [[metrics]] declaration",
                            s.metric,
                            metrics.known_names().join(", ")
                        ),
                    )
                    .within(within.clone()),
                );
            }
            if s.period.is_zero() {
                issues.push(
                    ConfigIssue::new([PathSeg::from("period")], "period must be longer than 0s")
                        .within(within.clone()),
                );
            }
            let mut own = Vec::new();
            check_range(&mut own, "decimals", s.decimals, 0..=6);
            for field in [("base", s.base), ("amplitude", s.amplitude)] {
                if !field.1.is_finite() {
                    own.push(ConfigIssue::new(
                        [PathSeg::from(field.0)],
                        format!("{} must be a finite number", field.0),
                    ));
                }
            }
            issues.extend(own.into_iter().map(|x| x.within(within.clone())));
        }
        issues
    }
}

impl SignalConfig {
    /// The signal's value `elapsed` after the driver started.
    pub fn value_at(&self, elapsed: Duration) -> f64 {
        let phase = std::f64::consts::TAU * elapsed.as_secs_f64() / self.period.as_secs_f64();
        let raw = self.base + self.amplitude * phase.sin();
        let scale = 10f64.powi(i32::from(self.decimals));
        (raw * scale).round() / scale
    }
}

/// Emits every signal each interval until shutdown. Metric names were checked
/// by [`Validate`]; `metrics` resolves them again here.
pub async fn run(
    config: SyntheticConfig,
    metrics: &MetricRegistry,
    ctx: DriverContext,
) -> Result<(), PipelineClosed> {
    let signals: Vec<_> = config
        .signals
        .iter()
        .filter_map(|s| metrics.resolve(&s.metric).map(|m| (m, s)))
        .collect();
    ctx.emit(ctx.status(chrono::Utc::now(), DeviceState::Online, None))
        .await?;
    let start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.shutdown().cancelled() => break,
            tick = ticker.tick() => {
                let now = chrono::Utc::now();
                // One tick of a device is one measurement.
                let mut measurement = Vec::with_capacity(signals.len());
                for (metric, signal) in &signals {
                    let value = signal.value_at(tick - start);
                    // Validated config gives finite values; a failure here is a bug worth seeing.
                    match ctx.reading(now, TimeSource::Gateway, metric.clone(), value) {
                        Ok(event) => measurement.push(event),
                        Err(e) => tracing::error!(device = %ctx.device().id, error = %e, "synthetic signal produced no reading"),
                    }
                }
                ctx.emit_measurement(measurement).await?;
            }
        }
    }
    tracing::debug!(device = %ctx.device().id, "synthetic driver stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    use wardgate_model::{DeviceKind, DeviceRef, Event, Metric};

    fn signal(base: f64, amplitude: f64, period_s: u64) -> SignalConfig {
        SignalConfig {
            metric: "heart_rate".into(),
            base,
            amplitude,
            period: Duration::from_secs(period_s),
            decimals: 1,
        }
    }

    #[test]
    fn sine_hits_its_extremes_at_quarter_periods() {
        let s = signal(72.0, 6.0, 40);
        assert_eq!(s.value_at(Duration::ZERO), 72.0);
        assert_eq!(s.value_at(Duration::from_secs(10)), 78.0);
        assert_eq!(s.value_at(Duration::from_secs(30)), 66.0);
    }

    #[test]
    fn validation_reports_every_problem() {
        let config = SyntheticConfig {
            interval: Duration::from_millis(1),
            signals: vec![
                SignalConfig {
                    metric: "heart_rat".into(),
                    decimals: 9,
                    ..signal(1.0, 0.0, 1)
                },
                signal(f64::INFINITY, 0.0, 0),
            ],
        };
        let issues = config.validate(&MetricRegistry::default());
        let paths: Vec<String> = issues.iter().map(ConfigIssue::dotted_path).collect();
        assert_eq!(
            paths,
            [
                "interval",
                "signals.[0].metric",
                "signals.[0].decimals",
                "signals.[1].period",
                "signals.[1].base"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn emits_online_then_one_reading_per_signal_per_interval_until_shutdown() {
        let (tx, rx) = mpsc::channel(16);
        let mut rx = crate::EventReceiver::new(rx);
        let shutdown = CancellationToken::new();
        let ctx = DriverContext::new(
            DeviceRef::new("syn-1".into(), DeviceKind::Synthetic),
            "bed-1".into(),
            tx,
            shutdown.clone(),
        );
        let config = SyntheticConfig {
            interval: Duration::from_secs(1),
            signals: vec![signal(72.0, 0.0, 60)],
        };
        let task = tokio::spawn(async move { run(config, &MetricRegistry::default(), ctx).await });
        assert!(
            matches!(rx.recv().await, Some(Event::DeviceStatus(s)) if s.state == DeviceState::Online)
        );
        for _ in 0..3 {
            match rx.recv().await {
                Some(Event::Reading(r)) => {
                    assert_eq!(
                        (r.metric, r.value, r.subject.as_str()),
                        (Metric::HeartRate, 72.0, "bed-1")
                    );
                }
                other => panic!("expected a reading, got {other:?}"),
            }
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
}
