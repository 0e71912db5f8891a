//! The accept loop: the router on HTTP/1.1 connections that are bounded in
//! number and must send each request head within a time limit, so that
//! idle or deliberately slow clients cannot hold the nurse-station page and
//! the API away from everyone else (`axum::serve` sets neither).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once; further clients wait in the listen backlog
/// until one closes.
pub const MAX_CONNECTIONS: usize = 128;
/// A connection that has not sent a whole request head this long after it
/// opened, or after its last answer, is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Error {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder.serve_connection(TokioIo::new(tcp), service).await {
                tracing::debug!(%peer, error = %e, "HTTP connection closed");
            }
            drop(slot);
        });
    }
}
