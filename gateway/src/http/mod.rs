//! The HTTP server: health and readiness, Prometheus metrics, the JSON API,
//! a Server-Sent Events stream and the nurse-station page (embedded in the
//! binary: nothing is fetched from elsewhere at runtime).
//!
//! It owns a [`View`] fed from the events the pipeline has committed to the
//! spool (a broadcast channel), and sends nurses' commands to the rules
//! stage with a reply channel. It never touches the rules engine or a sink
//! itself, and it never logs a token.

mod api;
mod config;
mod serve;
pub mod view;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use wardgate_model::Event;

pub use api::router;
#[doc(hidden)]
pub use api::{SilenceRequest, ack_request, silence_request};
pub use config::{HttpConfig, HttpToken};
pub use serve::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS, serve};
pub use view::View;

use crate::commands::AlertCommand;
use crate::config::{Config, Secret, SecretError};
use crate::sinks::supervisor::SinkHealth;
use crate::spool::Spool;

/// Committed batches buffered for slow SSE clients before they lag.
const BROADCAST: usize = 1024;
/// Commands from HTTP waiting for the rules stage.
const COMMANDS: usize = 64;
/// Event streams (`/api/events`) served at once: a station page holds one;
/// beyond this a client is told to come back rather than the gateway
/// spending a task and a queue on each.
pub const MAX_EVENT_STREAMS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("token `{name}`: {source}")]
    Token { name: String, source: SecretError },
    /// The reason is in the message, in words an operator can act on, so it
    /// is not also a `source` (printed twice in a chain otherwise).
    #[error("cannot listen on {addr}: {}", bind_reason(reason))]
    Bind {
        addr: std::net::SocketAddr,
        reason: std::io::Error,
    },
}

impl HttpError {
    /// Whether another process already listens on the address.
    pub fn is_address_in_use(&self) -> bool {
        matches!(self, HttpError::Bind { reason, .. } if reason.kind() == std::io::ErrorKind::AddrInUse)
    }
}

fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address already in use — another wardgate or program uses it".to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied — ports below 1024 need privileges".to_owned()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no network interface of this machine has that address".to_owned()
        }
        _ => e.to_string(),
    }
}

/// Spool figures for `/readyz` and `/metrics`.
#[derive(Debug, Clone)]
pub struct SpoolProbe {
    pub spool: Arc<Spool>,
    pub max_bytes: u64,
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub(crate) view: Arc<Mutex<View>>,
    pub(crate) tokens: Arc<[(String, Secret)]>,
    pub(crate) commands: mpsc::Sender<AlertCommand>,
    pub(crate) events: broadcast::Sender<Arc<[Event]>>,
    pub(crate) spool: Option<SpoolProbe>,
    pub(crate) lagged: Arc<AtomicU64>,
    pub(crate) rejected_writes: Arc<AtomicU64>,
    /// Sinks failing now (for `/readyz`).
    pub(crate) sinks: SinkHealth,
    /// `Host` headers served; `None`: any.
    pub(crate) hosts: Option<Arc<[String]>>,
    /// One permit per open `/api/events` stream.
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
}

impl HttpState {
    /// State with no spool (tests): returns the command receiver the rules
    /// stage (or a test) answers.
    pub fn new(
        view: View,
        tokens: Vec<(String, Secret)>,
        spool: Option<SpoolProbe>,
    ) -> (Self, mpsc::Receiver<AlertCommand>) {
        let (commands, rx) = mpsc::channel(COMMANDS);
        let (events, _) = broadcast::channel(BROADCAST);
        (
            HttpState {
                view: Arc::new(Mutex::new(view)),
                tokens: tokens.into(),
                commands,
                events,
                spool,
                lagged: Arc::new(AtomicU64::new(0)),
                rejected_writes: Arc::new(AtomicU64::new(0)),
                sinks: SinkHealth::default(),
                hosts: None,
                streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
            },
            rx,
        )
    }

    /// Serves only requests whose `Host` is one of `hosts` (a request
    /// without one is served: it does not come from a browser).
    #[must_use]
    pub fn with_hosts(mut self, hosts: Option<Vec<String>>) -> Self {
        self.hosts = hosts.map(Into::into);
        self
    }

    /// Reports these sinks' failures on `/readyz`.
    #[must_use]
    pub fn with_sink_health(mut self, sinks: SinkHealth) -> Self {
        self.sinks = sinks;
        self
    }

    /// Applies committed events to the view (the pipeline's hook calls this
    /// through the broadcast channel; tests call it directly).
    pub fn apply(&self, events: &[Event]) {
        let mut view = self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in events {
            view.handle_event(e);
        }
    }

    /// Where committed batches are published (for SSE and the view).
    pub fn committed(&self) -> broadcast::Sender<Arc<[Event]>> {
        self.events.clone()
    }

    /// After missed batches: the open alerts again from the authoritative
    /// state, the spool's open-alert snapshots (vitals catch up with the next
    /// readings). Without a spool (tests) there is nothing to read.
    pub fn resync_alerts(&self) {
        let Some(probe) = &self.spool else {
            return;
        };
        match probe.spool.open_alerts() {
            Ok(open) => {
                let n = open.len();
                self.view
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .replace_alerts(open);
                tracing::info!(open_alerts = n, "HTTP view resynchronised from the spool");
            }
            Err(e) => {
                tracing::error!(error = %e, "HTTP view cannot resynchronise: the spool cannot be read");
            }
        }
    }
}

/// Keeps the view following the committed batches until the pipeline closes
/// the channel. A view that fell behind (the broadcast is bounded) does not
/// stay wrong: it counts the loss and resynchronises its open alerts from
/// the spool, so the page never misses an alert.
pub async fn follow(feeder: HttpState, mut rx: broadcast::Receiver<Arc<[Event]>>) {
    loop {
        match rx.recv().await {
            Ok(batch) => feeder.apply(&batch),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                feeder.lagged.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(batches = n, "HTTP view fell behind; resynchronising");
                feeder.resync_alerts();
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// A running server, as the pipeline holds it.
#[derive(Debug)]
pub struct Started {
    pub committed: broadcast::Sender<Arc<[Event]>>,
    pub commands_rx: mpsc::Receiver<AlertCommand>,
    pub server: tokio::task::JoinHandle<()>,
    pub addr: std::net::SocketAddr,
}

/// Resolves the tokens, binds and serves until the returned task is aborted.
pub async fn start(
    http: &HttpConfig,
    config: &Config,
    spool: Arc<Spool>,
    sinks: SinkHealth,
) -> Result<Started, HttpError> {
    let mut tokens = Vec::new();
    for t in &http.tokens {
        let secret = t.token.resolve().map_err(|source| HttpError::Token {
            name: t.name.clone(),
            source,
        })?;
        tokens.push((t.name.clone(), secret));
    }
    if tokens.is_empty() {
        tracing::warn!("[http] has no tokens: acknowledging and silencing are refused");
    }
    let mut view = View::new(&config.subjects, &config.devices);
    // The alerts open before a restart are on the page from the first view.
    match spool.open_silences() {
        Ok(open) => {
            for s in open {
                view.handle_event(&Event::Silence(s));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "the silences in the spool cannot be read for the page");
        }
    }
    match spool.open_alerts() {
        Ok(open) => view.seed_alerts(open),
        Err(e) => {
            tracing::error!(error = %e, "the open alerts in the spool cannot be read for the page");
        }
    }
    let probe = SpoolProbe {
        spool,
        max_bytes: config.spool.max_bytes,
    };
    let (state, commands_rx) = HttpState::new(view, tokens, Some(probe));
    let state = state.with_sink_health(sinks).with_hosts(http.hosts());
    let listener = tokio::net::TcpListener::bind(http.listen)
        .await
        .map_err(|reason| HttpError::Bind {
            addr: http.listen,
            reason,
        })?;
    let addr = listener.local_addr().unwrap_or(http.listen);
    // The view follows the committed events in its own task.
    let feed = follow(state.clone(), state.events.subscribe());
    let committed = state.committed();
    let app = router(state);
    let server = tokio::spawn(async move {
        tokio::select! {
            () = feed => {}
            e = serve(listener, app) => tracing::error!(error = %e, "HTTP server stopped"),
        }
    });
    tracing::info!(url = %format!("http://{addr}/"), "nurse-station page and API listening");
    Ok(Started {
        committed,
        commands_rx,
        server,
        addr,
    })
}
