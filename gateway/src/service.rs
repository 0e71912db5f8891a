//! Service-manager integration: systemd's notify protocol. `READY=1` once
//! the gateway runs (devices started, sinks ready, the page listening),
//! `STOPPING=1` when a stop begins, and — when the unit sets `WatchdogSec`
//! — `WATCHDOG=1` at half that interval, but only while the rules stage
//! answers and the spool commits: a wedged gateway stops pinging and the
//! service manager restarts it. Without `NOTIFY_SOCKET` (not started by
//! systemd) nothing is sent. A unit file ships in `packaging/systemd/`.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::oneshot;
use wardgate_drivers::CommitRequests;

/// Threads the async runtime may start for blocking work (spool commits and
/// reads, file writes) besides its workers, one per core. They come and go
/// with the load (an idle one ends after 10 s), so the process's thread
/// count moves under load but never beyond workers + this + a few of the
/// runtime's own.
pub const MAX_BLOCKING_THREADS: usize = 32;

/// Tells the service manager that the gateway runs.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager that a stop has begun (drain and flush follow).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining and flushing"),
    ]);
}

fn send(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// While the unit's watchdog is enabled, asks the rules stage every half
/// interval to commit what it holds, and pings the watchdog once it has;
/// returns when the rules stage is gone (the gateway stops).
pub async fn watchdog(commits: CommitRequests) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = interval / 2;
    tracing::info!(
        interval_ms = interval.as_millis(),
        "service-manager watchdog enabled"
    );
    let mut quiet = false;
    loop {
        let (tx, rx) = oneshot::channel();
        if commits.send(tx).await.is_err() {
            return;
        }
        match tokio::time::timeout(every, rx).await {
            Ok(Ok(())) => {
                if std::mem::take(&mut quiet) {
                    tracing::info!("the rules stage answers again; watchdog pings resume");
                }
                send(&[NotifyState::Watchdog]);
                tokio::time::sleep(every).await;
            }
            Ok(Err(_)) => return,
            Err(_) => {
                if !quiet {
                    quiet = true;
                    tracing::error!(
                        waited_ms = every.as_millis(),
                        "the rules stage or the spool does not answer: no watchdog ping (the service manager restarts wardgate if this lasts)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
