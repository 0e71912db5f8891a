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

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

use super::config::InfluxDbConfig;
use super::encode::{self, Verdict};
use super::metrics::DeliveryMetrics;
use crate::secret::{Secret, SecretError, SecretSource};

/// Longest `Retry-After` obeyed; a server asking for more is asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long the start-up readiness probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest response text kept in an error.
const MAX_ERROR_BODY: usize = 1000;

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

/// Why one write request did not store the points.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("InfluxDB answered {status}: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach InfluxDB: {0}")]
    Network(#[source] reqwest::Error),
}

impl WriteError {
    /// 401, 403 or 404: the token, org or bucket is wrong.
    fn is_misconfiguration(&self) -> bool {
        matches!(self, WriteError::Status { status, .. }
            if encode::verdict(*status) == Verdict::Misconfigured)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WriteError::Status { retry_after, .. } => *retry_after,
            WriteError::Network(_) => None,
        }
    }
}

/// How a batch ended.
#[derive(Debug)]
pub enum Delivery {
    /// The server answered 2xx.
    Stored,
    /// The server rejected the request for good (a 4xx other than 401, 403, 404 and 429).
    Rejected { status: u16, body: String },
    /// Stopping was requested while the server was failing; nothing stored.
    Cancelled,
}

/// A configured write endpoint.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    name: String,
    http: reqwest::Client,
    write_url: reqwest::Url,
    ready_url: reqwest::Url,
    base_url: String,
    token: Option<Secret>,
    gzip: bool,
    backoff: backon::ExponentialBuilder,
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
        // The public web roots (Mozilla's bundle, compiled in) and the
        // private CA if one is configured; never the host's trust store, so
        // a box trusts the same servers whatever its distribution ships.
        let mut roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(ca) = &config.ca {
            let ca_err = |reason: String| InfluxSetupError::Ca {
                path: ca.display().to_string(),
                reason,
            };
            let pem = std::fs::read(ca).map_err(|e| ca_err(e.to_string()))?;
            roots.push(reqwest::Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?);
        }
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
            name: name.to_owned(),
            http: http.build()?,
            write_url,
            ready_url,
            base_url: config.url.clone(),
            token,
            gzip: config.gzip,
            backoff: backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(config.max_backoff)
                .with_jitter()
                .without_max_times(),
        })
    }

    /// The sink or bridge this writer serves, as logged.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Logs whether the server answers its readiness endpoint (`GET /ready`,
    /// 200 when ready); only informational (the writes retry anyway).
    pub async fn probe(&self) {
        match tokio::time::timeout(PROBE_TIMEOUT, self.ready()).await {
            Ok(Ok(())) => {
                tracing::info!(sink = %self.name, url = %self.base_url, "InfluxDB is ready");
            }
            Err(_) => {
                tracing::warn!(sink = %self.name, url = %self.base_url, "InfluxDB is not ready yet; writes will be retried");
            }
            Ok(Err(e)) => {
                tracing::warn!(sink = %self.name, url = %self.base_url, error = %e, "InfluxDB is not reachable yet; writes will be retried");
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
        if encode::verdict(response.status().as_u16()) == Verdict::Stored {
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
        let mut delays = self.backoff.build();
        let mut failures = 0u64;
        loop {
            metrics.add_sent(points);
            match self.write(body).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(sink = %self.name, retries = failures, "InfluxDB writes succeed again");
                    }
                    return Delivery::Stored;
                }
                Err(WriteError::Status {
                    status,
                    body,
                    retry_after: _,
                }) if encode::verdict(status) == Verdict::Reject => {
                    return Delivery::Rejected { status, body };
                }
                Err(e) => {
                    failures += 1;
                    metrics.add_retried(points);
                    if failures == 1 && e.is_misconfiguration() {
                        tracing::error!(sink = %self.name, error = %e, "InfluxDB refuses the gateway's writes: check this sink's token, org and bucket; retrying with backoff (data is kept meanwhile)");
                    } else if failures == 1 {
                        tracing::warn!(sink = %self.name, error = %e, "InfluxDB write failed; retrying with backoff (data is kept meanwhile)");
                    } else {
                        tracing::debug!(sink = %self.name, error = %e, attempt = failures, "InfluxDB write failed again");
                    }
                    if stop.is_cancelled() {
                        return Delivery::Cancelled;
                    }
                    let delay = e.retry_after().map_or_else(
                        || delays.next().unwrap_or(Duration::from_secs(30)),
                        |d| d.min(MAX_RETRY_AFTER),
                    );
                    // Stopping cuts the pause short for one last attempt.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => {}
                    }
                }
            }
        }
    }
}

/// A non-success answer: its status, `Retry-After` and (the start of) its text.
async fn status_error(response: reqwest::Response) -> WriteError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| encode::retry_after(v, chrono::Utc::now()));
    let mut body = response.text().await.unwrap_or_default();
    if body.len() > MAX_ERROR_BODY {
        let mut cut = MAX_ERROR_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    WriteError::Status {
        status,
        body,
        retry_after,
    }
}
