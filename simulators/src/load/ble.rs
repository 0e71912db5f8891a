//! One BLE vital-signs patch of the load: the simulator-socket link handling
//! of `ble::server` (the `DEVICE` line, `SUB`, `READY`), a steady stream —
//! Heart Rate Measurement, PLX Continuous and Temperature Measurement once
//! per interval at its own phase — and a fever reading on demand.
//!
//! The regular batch is built once per link (from what the driver
//! subscribed to) and written with one `write_all` per interval: no
//! allocation per notification.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wardgate_model::Timestamp;

use super::{Counters, values};
use crate::ble::encode;
use crate::ble::server::{Conn, handle_command};

pub(super) const HEART_RATE: u16 = 0x2A37;
pub(super) const PLX_CONTINUOUS: u16 = 0x2A5F;
pub(super) const TEMPERATURE: u16 = 0x2A1C;

/// A request to send the fever reading now; answered with the time just
/// before the bytes were written, or `None` when no driver is subscribed.
pub(super) type Inject = oneshot::Sender<Option<Timestamp>>;

/// The payloads, encoded once for every device.
#[derive(Debug)]
pub(super) struct Payloads {
    regular: [(u16, String); 3],
    fever: String,
}

impl Payloads {
    pub(super) fn new() -> Self {
        Self {
            regular: [
                (
                    HEART_RATE,
                    hex::encode(encode::heart_rate(
                        values::HEART_RATE,
                        encode::Contact::Detected,
                        None,
                        &[],
                    )),
                ),
                (
                    PLX_CONTINUOUS,
                    hex::encode(encode::plx_continuous(
                        values::SPO2,
                        values::PULSE_RATE,
                        None,
                        None,
                    )),
                ),
                (
                    TEMPERATURE,
                    hex::encode(encode::temperature(values::BODY_TEMP, false, None, None)),
                ),
            ],
            fever: hex::encode(encode::temperature(values::FEVER_TEMP, false, None, None)),
        }
    }
}

/// One device's settings.
#[derive(Debug)]
pub(super) struct LoadBle {
    pub(super) address: String,
    pub(super) interval: Duration,
    /// When its first batch is due (its phase).
    pub(super) first: Instant,
    pub(super) payloads: Arc<Payloads>,
    pub(super) counters: Arc<Counters>,
    pub(super) inject: mpsc::Receiver<Inject>,
}

/// A subscribed link and what it gets.
struct Link {
    conn: Conn,
    /// The regular notifications it subscribed to, as wire lines.
    batch: Vec<u8>,
    batch_len: u64,
    /// The fever line, when it subscribed to temperature.
    fever: Option<Vec<u8>>,
}

fn ntf(out: &mut String, address: &str, characteristic: u16, hex: &str) {
    let _ = writeln!(out, "NTF {address} {characteristic:04x} {hex}");
}

/// Serves the device until `shutdown`: one link at a time, as a BLE
/// peripheral that stops advertising while connected.
pub(super) async fn serve(listener: TcpListener, mut dev: LoadBle, shutdown: CancellationToken) {
    let hello = format!(
        "DEVICE {} 180d,1822,1809 {HEART_RATE:04x},{PLX_CONTINUOUS:04x},{TEMPERATURE:04x}\n",
        dev.address
    );
    let mut ticker = tokio::time::interval_at(dev.first, dev.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut conn: Option<Conn> = None;
    let mut link: Option<Link> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept(), if conn.is_none() && link.is_none() => {
                if let Ok((stream, _)) = accepted {
                    conn = Conn::accept(stream, &hello).await.ok();
                }
            }
            line = async { conn.as_mut().map(|c| c.lines.next_line()).expect("guarded").await }, if conn.is_some() => {
                let Ok(Some(line)) = line else {
                    conn = None;
                    continue;
                };
                let Some(c) = conn.as_mut() else { continue };
                if handle_command(c, &line, &dev.address, &[]).await.is_err() {
                    conn = None;
                } else if c.ready && let Some(c) = conn.take() {
                    link = Some(subscribed(c, &dev));
                    dev.counters.ble_links.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A subscribed link only reads to see the driver go away.
            line = async { link.as_mut().map(|l| l.conn.lines.next_line()).expect("guarded").await }, if link.is_some() => {
                if !matches!(line, Ok(Some(_))) {
                    drop_link(&mut link, &dev.counters);
                }
            }
            _ = ticker.tick() => {
                if let Some(l) = link.as_mut() {
                    if l.conn.write.write_all(&l.batch).await.is_ok() {
                        dev.counters.notifications.fetch_add(l.batch_len, Ordering::Relaxed);
                    } else {
                        drop_link(&mut link, &dev.counters);
                    }
                }
            }
            Some(reply) = dev.inject.recv() => {
                let mut at = None;
                if let Some(l) = link.as_mut() && let Some(fever) = &l.fever {
                    let now = chrono::Utc::now();
                    if l.conn.write.write_all(fever).await.is_ok() {
                        dev.counters.notifications.fetch_add(1, Ordering::Relaxed);
                        at = Some(now);
                    } else {
                        drop_link(&mut link, &dev.counters);
                    }
                }
                let _ = reply.send(at);
            }
        }
    }
}

fn drop_link(link: &mut Option<Link>, counters: &Counters) {
    if link.take().is_some() {
        counters.ble_links.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The lines a link that said `READY` gets.
fn subscribed(conn: Conn, dev: &LoadBle) -> Link {
    let mut batch = String::new();
    let mut batch_len = 0;
    for (ch, hex) in &dev.payloads.regular {
        if conn.subscribed.contains(ch) {
            ntf(&mut batch, &dev.address, *ch, hex);
            batch_len += 1;
        }
    }
    let fever = conn.subscribed.contains(&TEMPERATURE).then(|| {
        let mut line = String::new();
        ntf(&mut line, &dev.address, TEMPERATURE, &dev.payloads.fever);
        line.into_bytes()
    });
    Link {
        conn,
        batch: batch.into_bytes(),
        batch_len,
        fever,
    }
}
