//! The accept loop: the router on HTTP/1.1 connections that are bounded in
//! number, globally and per client address, and must send each request head
//! within a time limit, so that idle, deliberately slow or greedy clients
//! cannot hold the nurse-station page and the API away from everyone else
//! (`axum::serve` sets none of these).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// Connections served at once; further clients wait in the listen backlog
/// until one closes.
pub const MAX_CONNECTIONS: usize = 128;
/// Connections one client address may hold at once; its next one is closed
/// at once, so one machine cannot take every slot. Behind a proxy every
/// client has the proxy's address: put the limit on the proxy instead.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// A connection that has not sent a whole request head this long after it
/// opened, or after its last answer, is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// The address a request came from, for per-client limits (absent when the
/// router is called without a socket, as in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Counts what each client address holds (connections, event streams)
/// against a limit.
#[derive(Debug, Clone)]
pub struct PerClient {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    limit: usize,
    what: &'static str,
}

impl PerClient {
    pub fn new(limit: usize, what: &'static str) -> Self {
        Self {
            held: Arc::default(),
            limit,
            what,
        }
    }

    /// One more for `ip`, held until the slot is dropped; `None` when it
    /// holds the limit already (logged when it first reaches it).
    pub fn take(&self, ip: IpAddr) -> Option<ClientSlot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(ip).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        if *n == self.limit {
            tracing::warn!(client = %ip, limit = self.limit, "an HTTP client holds as many {} as one client may; more are refused until it closes some", self.what);
        }
        Some(ClientSlot {
            owner: self.clone(),
            ip,
        })
    }
}

/// What one client holds; given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    owner: PerClient,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until the task is dropped: HTTPS when `tls`
/// is given (the handshake bounded by [`HEADER_READ_TIMEOUT`] too), plain
/// HTTP otherwise.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Error {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let clients = PerClient::new(MAX_CONNECTIONS_PER_CLIENT, "connections");
    loop {
        // The semaphore is never closed: acquiring only waits.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return std::io::Error::other("the HTTP connection slots were closed");
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection; retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Some(client) = clients.take(peer.ip()) else {
            // Closed unanswered: this client holds its share already.
            continue;
        };
        let app = app.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer));
                app.clone().oneshot(request)
            },
        ));
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let served = match tls {
                None => builder.serve_connection(TokioIo::new(tcp), service).await,
                Some(tls) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTP connection closed");
            }
            drop((slot, client));
        });
    }
}
