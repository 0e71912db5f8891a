//! The HTTP server: health and readiness, Prometheus metrics, the JSON API,
//! a Server-Sent Events stream and the nurse-station page (embedded in the
//! binary: nothing is fetched from elsewhere at runtime).
//!
//! It owns a [`View`] fed from the events the pipeline has committed to the
//! spool (a broadcast channel), and sends nurses' commands to the rules
//! stage with a reply channel. It never touches the rules engine or a sink
//! itself, and it never logs a token.

mod api;
mod auth;
mod config;
mod events;
mod metrics;
mod serve;
pub mod view;
mod writes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use wardgate_model::Event;

pub use api::router;
pub use config::{HttpConfig, HttpToken, HttpsConfig, Layout, Role};
pub use serve::{
    ClientAddr, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, PerClient, serve,
};
pub use view::View;
#[doc(hidden)]
pub use writes::{SilenceRequest, ack_request, silence_request};

use crate::commands::AlertCommand;
use crate::config::Config;
use crate::roster::StaffMember;
use crate::secret::{Secret, SecretError};
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
/// Event streams one client address may hold at once (a station's tabs, a
/// phone), so one machine cannot take every stream.
pub const MAX_EVENT_STREAMS_PER_CLIENT: usize = 8;

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
    #[error("[http] tls: {0}")]
    Tls(String),
}

/// The TLS acceptor for `[http] tls`: the certificate chain and key read
/// and checked now, so a bad file stops the start with a message naming it.
pub fn tls_acceptor(tls: &HttpsConfig) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = tls.cert.display();
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| HttpError::Tls(format!("certificate {cert}: {e}")))?;
    if chain.is_empty() {
        return Err(HttpError::Tls(format!(
            "certificate {cert}: no PEM certificate in it"
        )));
    }
    let key = tls
        .key
        .resolve()
        .map_err(|e| HttpError::Tls(format!("key: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
        .map_err(|e| HttpError::Tls(format!("key: not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| HttpError::Tls(format!("certificate {cert} and key: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
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

/// `GET /api/page`: how the page lays itself out, and what each rule means.
#[derive(Debug, Default, serde::Serialize)]
pub struct PageInfo {
    pub layout: Layout,
    pub rules: Vec<RuleInfo>,
}

/// One rule as the page explains it.
#[derive(Debug, serde::Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// A configured token, resolved: its name, its secret and its role.
#[derive(Debug, Clone)]
pub struct Grant {
    pub name: String,
    pub secret: Secret,
    pub role: Role,
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
    pub(crate) tokens: Arc<[Grant]>,
    /// Reads need a token too (`[http] reads_need_token`).
    pub(crate) reads_need_token: bool,
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
    /// Open streams per client address.
    pub(crate) client_streams: PerClient,
    /// The staff and their assignments, as the rules stage last confirmed.
    pub(crate) staff: Arc<Mutex<Vec<StaffMember>>>,
    /// What `GET /api/page` says: the layout and each rule's advice.
    pub(crate) page: Arc<PageInfo>,
    /// Event streams refused (either limit).
    pub(crate) refused_streams: Arc<AtomicU64>,
    /// Every stream place taken at the last refusal (logged once per episode).
    pub(crate) streams_full: Arc<std::sync::atomic::AtomicBool>,
    /// The gateway's live counters, encoded by `/metrics`.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

impl HttpState {
    /// State with no spool (tests): returns the command receiver the rules
    /// stage (or a test) answers.
    pub fn new(
        view: View,
        tokens: Vec<Grant>,
        spool: Option<SpoolProbe>,
    ) -> (Self, mpsc::Receiver<AlertCommand>) {
        let (commands, rx) = mpsc::channel(COMMANDS);
        let (events, _) = broadcast::channel(BROADCAST);
        (
            HttpState {
                view: Arc::new(Mutex::new(view)),
                tokens: tokens.into(),
                reads_need_token: false,
                commands,
                events,
                spool,
                lagged: Arc::new(AtomicU64::new(0)),
                rejected_writes: Arc::new(AtomicU64::new(0)),
                sinks: SinkHealth::default(),
                hosts: None,
                streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
                client_streams: PerClient::new(MAX_EVENT_STREAMS_PER_CLIENT, "event streams"),
                refused_streams: Arc::new(AtomicU64::new(0)),
                staff: Arc::default(),
                page: Arc::default(),
                streams_full: Arc::default(),
                metrics: Arc::default(),
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

    /// The staff `GET /api/staff` shows until an assignment changes them.
    #[must_use]
    pub fn with_staff(self, staff: Vec<StaffMember>) -> Self {
        *self
            .staff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = staff;
        self
    }

    /// The page's layout and the rules it explains.
    #[must_use]
    pub fn with_page(mut self, layout: Layout, rules: &wardgate_rules::RuleSet) -> Self {
        self.page = Arc::new(PageInfo {
            layout,
            rules: rules
                .rules()
                .iter()
                .map(|r| RuleInfo {
                    id: r.id.to_string(),
                    description: r.description.clone(),
                    advice: r.advice.clone(),
                })
                .collect(),
        });
        self
    }

    /// Makes reads need a token of any role.
    #[must_use]
    pub fn with_reads_need_token(mut self, yes: bool) -> Self {
        self.reads_need_token = yes;
        self
    }

    /// Encodes these live counters on `/metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
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
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Started, HttpError> {
    let mut tokens = Vec::new();
    for t in &http.tokens {
        let secret = t.token.resolve().map_err(|source| HttpError::Token {
            name: t.name.clone(),
            source,
        })?;
        tokens.push(Grant {
            name: t.name.clone(),
            secret,
            role: t.role,
        });
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
    let state = state
        .with_sink_health(sinks)
        .with_metrics(metrics)
        .with_hosts(http.hosts())
        .with_reads_need_token(http.reads_need_token)
        .with_staff(config.staff.clone())
        .with_page(http.layout, &config.rule_set);
    let tls = http.tls.as_ref().map(tls_acceptor).transpose()?;
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
            e = serve(listener, app, tls) => tracing::error!(error = %e, "HTTP server stopped"),
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
