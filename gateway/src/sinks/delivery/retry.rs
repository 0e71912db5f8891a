//! One HTTP request retried until the server settles it, shared by the
//! InfluxDB and FHIR sinks and `wardgate bridge`: what a status code means,
//! the `Retry-After` header, the retry loop with capped exponential backoff
//! and jitter, and the HTTP client trusting the same roots everywhere.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;
use wardgate_model::Timestamp;

use super::metrics::DeliveryMetrics;

/// Longest `Retry-After` obeyed; a server asking for more is asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Longest response text kept in an error.
const MAX_ERROR_BODY: usize = 1000;

/// Why one request did not store what it carried.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the server answered {status}: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the server: {0}")]
    Network(#[source] reqwest::Error),
}

impl WriteError {
    /// 401, 403 or 404: the gateway's credentials or addresses are wrong.
    fn is_misconfiguration(&self) -> bool {
        matches!(self, WriteError::Status { status, .. }
            if verdict(*status) == Verdict::Misconfigured)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WriteError::Status { retry_after, .. } => *retry_after,
            WriteError::Network(_) => None,
        }
    }
}

/// How a request ended.
#[derive(Debug)]
pub enum Delivery {
    /// The server answered 2xx.
    Stored,
    /// The server rejected the request for good (a 4xx other than 401, 403, 404 and 429).
    Rejected { status: u16, body: String },
    /// Stopping was requested while the server was failing; nothing stored.
    Cancelled,
}

/// What to do after the server answered a write with `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the points are stored; acknowledge them.
    Stored,
    /// 429, 5xx (and anything unexpected such as a redirect): the server may
    /// take them later; retry with backoff.
    Retry,
    /// 401, 403, 404: the gateway's configuration is wrong (token, org,
    /// bucket, base URL), not the data; it is kept and retried with backoff
    /// until an operator fixes it, while the sink's backlog raises
    /// `sink_stalled`.
    Misconfigured,
    /// Any other 4xx: the request itself is wrong (a bad line, too large);
    /// retrying cannot help, so the batch is quarantined.
    Reject,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Stored,
        429 => Verdict::Retry,
        401 | 403 | 404 => Verdict::Misconfigured,
        400..=499 => Verdict::Reject,
        _ => Verdict::Retry,
    }
}

/// The delay a `Retry-After` header asks for: either delay-seconds
/// (`120`) or an HTTP-date (`Fri, 27 Nov 2026 10:00:00 GMT`, RFC 9110
/// §10.2.3). A date in the past means "now". Anything else is ignored.
pub fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.to_utc() - now).to_std().unwrap_or(Duration::ZERO))
}

/// A non-success answer: its status, `Retry-After` and (the start of) its text.
pub async fn status_error(response: reqwest::Response) -> WriteError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, chrono::Utc::now()));
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

/// The trust anchors of every HTTPS peer: the public web roots (Mozilla's
/// bundle, compiled in) and the private CA if one is configured; never the
/// host's trust store, so a box trusts the same servers whatever its
/// distribution ships. `Err` is the CA file's problem.
pub fn tls_roots(ca: Option<&Path>) -> Result<Vec<reqwest::Certificate>, String> {
    let mut roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
        roots.push(reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?);
    }
    Ok(roots)
}

/// Who is retried, for the logs.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The sink or bridge, as logged.
    pub name: String,
    /// What the server is (`InfluxDB`, `FHIR`), as logs name it.
    pub server: &'static str,
    /// What to check when it refuses the gateway (401, 403, 404).
    pub check: &'static str,
    pub backoff: backon::ExponentialBuilder,
}

impl Peer {
    /// The retry pauses: from 100 ms doubling to `max`, with jitter.
    pub fn backoff(max: Duration) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(max)
            .with_jitter()
            .without_max_times()
    }

    /// Runs `attempt` (a request carrying `points` records), retrying with
    /// capped exponential backoff and jitter (or the server's `Retry-After`)
    /// until the server stores or rejects it. Once `stop` is cancelled a
    /// failing request is given up (the caller keeps the records for
    /// later); a backoff pause that stopping cuts short is followed by one
    /// last attempt.
    pub async fn until_done<F, Fut>(
        &self,
        points: u64,
        metrics: &DeliveryMetrics,
        stop: &CancellationToken,
        mut attempt: F,
    ) -> Delivery
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), WriteError>>,
    {
        let name = &self.name;
        let server = self.server;
        let mut delays = self.backoff.build();
        let mut failures = 0u64;
        loop {
            metrics.add_sent(points);
            match attempt().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(sink = %name, retries = failures, "{server} writes succeed again");
                    }
                    return Delivery::Stored;
                }
                Err(WriteError::Status {
                    status,
                    body,
                    retry_after: _,
                }) if verdict(status) == Verdict::Reject => {
                    return Delivery::Rejected { status, body };
                }
                Err(e) => {
                    failures += 1;
                    metrics.add_retried(points);
                    if failures == 1 && e.is_misconfiguration() {
                        tracing::error!(sink = %name, error = %e, "{server} refuses the gateway's writes: check this sink's {}; retrying with backoff (data is kept meanwhile)", self.check);
                    } else if failures == 1 {
                        tracing::warn!(sink = %name, error = %e, "{server} write failed; retrying with backoff (data is kept meanwhile)");
                    } else {
                        tracing::debug!(sink = %name, error = %e, attempt = failures, "{server} write failed again");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-27T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn status_codes() {
        for (status, expected) in [
            (204, Verdict::Stored),
            (200, Verdict::Stored),
            (400, Verdict::Reject),
            (401, Verdict::Misconfigured),
            (403, Verdict::Misconfigured),
            (404, Verdict::Misconfigured),
            (413, Verdict::Reject),
            (422, Verdict::Reject),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
            (307, Verdict::Retry),
        ] {
            assert_eq!(verdict(status), expected, "status {status}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after("120", now()), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now()), Some(Duration::ZERO));
        // Ten seconds after now(), as an IMF-fixdate.
        assert_eq!(
            retry_after("Fri, 27 Nov 2026 10:00:10 GMT", now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("-5", now()), None);
        assert_eq!(retry_after("soon", now()), None);
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(s in "\\PC*") {
            let _ = retry_after(&s, now());
        }
    }
}
