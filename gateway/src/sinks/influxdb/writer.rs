//! The one InfluxDB writer, used by the InfluxDB sink and by `wardgate bridge`:
//! a v2 write request (nanosecond precision, optional gzip body), the retry
//! loop around it, and the start-up readiness probe.
//!
//! Why plain reqwest and no InfluxDB client crate: influxdb2 0.5 sends line
//! protocol bodies uncompressed (its gzip path only covers its own
//! `DataPoint` streams), counts only 204 as success, drops the response
//! headers (so `Retry-After` on 429/503 cannot be honoured through it), and
//! pins reqwest 0.11 with hyper 0.14 and rustls 0.21 beside the current stack.
//! Both requests are built here (docs/influxdb.md, "Dependencies").

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::InfluxDbConfig;
use super::encode;
use crate::secret::{Secret, SecretError, SecretSource};
use crate::sinks::delivery::split::{self, Settled};
use crate::sinks::delivery::{
    Delivery, DeliveryMetrics, Peer, Verdict, WriteError, status_error, tls_roots, verdict,
};

/// How long the start-up readiness probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum InfluxSetupError {
    #[error("InfluxDB token: {0}")]
    Token(#[from] SecretError),
    #[error("InfluxDB url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot read the InfluxDB CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A configured write endpoint.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    peer: Peer,
    http: reqwest::Client,
    write_url: reqwest::Url,
    ready_url: reqwest::Url,
    base_url: String,
    token: Option<Secret>,
    gzip: bool,
}

impl InfluxWriter {
    /// Resolves the token and builds the HTTP client; `name` labels logs.
    pub fn new(name: &str, config: &InfluxDbConfig) -> Result<Self, InfluxSetupError> {
        let bad_url = |reason: String| InfluxSetupError::Url {
            url: config.url.clone(),
            reason,
        };
        let base = reqwest::Url::parse(&config.url).map_err(|e| bad_url(e.to_string()))?;
        let endpoint = |segments: &[&str]| {
            let mut url = base.clone();
            url.path_segments_mut()
                .map_err(|()| bad_url("cannot be a base URL".into()))?
                .pop_if_empty()
                .extend(segments);
            Ok::<_, InfluxSetupError>(url)
        };
        let mut write_url = endpoint(&["api", "v2", "write"])?;
        let ready_url = endpoint(&["ready"])?;
        write_url
            .query_pairs_mut()
            .append_pair("org", &config.org)
            .append_pair("bucket", &config.bucket)
            .append_pair("precision", "ns");
        let roots = tls_roots(config.ca.as_deref()).map_err(|reason| InfluxSetupError::Ca {
            path: config.ca.as_ref().map_or_else(
                || "(built-in roots)".to_owned(),
                |p| p.display().to_string(),
            ),
            reason,
        })?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .tls_certs_only(roots);
        let token = config
            .token
            .as_ref()
            .map(SecretSource::resolve)
            .transpose()?;
        Ok(Self {
            peer: Peer {
                name: name.to_owned(),
                server: "InfluxDB",
                check: "token, org and bucket",
                backoff: Peer::backoff(config.max_backoff),
            },
            http: http.build()?,
            write_url,
            ready_url,
            base_url: config.url.clone(),
            token,
            gzip: config.gzip,
        })
    }

    /// The sink or bridge this writer serves, as logged.
    pub fn name(&self) -> &str {
        &self.peer.name
    }

    /// Logs whether the server answers its readiness endpoint (`GET /ready`,
    /// 200 when ready); only informational (the writes retry anyway).
    pub async fn probe(&self) {
        match tokio::time::timeout(PROBE_TIMEOUT, self.ready()).await {
            Ok(Ok(())) => {
                tracing::info!(sink = %self.peer.name, url = %self.base_url, "InfluxDB is ready");
            }
            Err(_) => {
                tracing::warn!(sink = %self.peer.name, url = %self.base_url, "InfluxDB is not ready yet; writes will be retried");
            }
            Ok(Err(e)) => {
                tracing::warn!(sink = %self.peer.name, url = %self.base_url, error = %e, "InfluxDB is not reachable yet; writes will be retried");
            }
        }
    }

    /// One readiness request: `Ok` on a 200 only, as InfluxDB 2.x answers
    /// when it has started.
    pub(super) async fn ready(&self) -> Result<(), WriteError> {
        let response = self
            .authorized(self.http.get(self.ready_url.clone()))
            .send()
            .await
            .map_err(WriteError::Network)?;
        if response.status() == reqwest::StatusCode::OK {
            return Ok(());
        }
        Err(status_error(response).await)
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Token {}", t.expose())),
            None => req,
        }
    }

    /// One write request.
    pub async fn write(&self, body: &str) -> Result<(), WriteError> {
        let req = self.authorized(
            self.http
                .post(self.write_url.clone())
                .header("Content-Type", "text/plain; charset=utf-8"),
        );
        let req = if self.gzip {
            req.header("Content-Encoding", "gzip")
                .body(encode::gzip(body.as_bytes()))
        } else {
            req.body(body.to_owned())
        };
        let response = req.send().await.map_err(WriteError::Network)?;
        if verdict(response.status().as_u16()) == Verdict::Stored {
            return Ok(());
        }
        Err(status_error(response).await)
    }

    /// Writes `body` (`points` lines), retrying with capped exponential
    /// backoff and jitter (or the server's `Retry-After`) until the server
    /// stores or rejects it. Once `stop` is cancelled a failing write is
    /// given up (the caller keeps the points for later); a backoff pause that
    /// stopping cuts short is followed by one last attempt.
    pub async fn write_until_done(
        &self,
        body: &str,
        points: u64,
        metrics: &DeliveryMetrics,
        stop: &CancellationToken,
    ) -> Delivery {
        self.peer
            .until_done(points, metrics, stop, || self.write(body))
            .await
    }
}

/// Writes `lines` (each ending with `\n`) through `writer`, splitting
/// refused requests until only the refused lines are left
/// ([`crate::sinks::delivery::split`]).
pub async fn write_splitting(
    writer: &InfluxWriter,
    lines: &[&str],
    metrics: &DeliveryMetrics,
    stop: &CancellationToken,
) -> Settled {
    split::write_splitting(writer.name(), "InfluxDB", lines.len(), |range| {
        let points = range.len() as u64;
        let body = lines[range].concat();
        async move { writer.write_until_done(&body, points, metrics, stop).await }
    })
    .await
}
