//! The simulated device on a local TCP socket (the framing the BLE driver's
//! simulator transport speaks; see `docs/devices/ble.md`). One connection is
//! one BLE link; the script runs on its own clock from the first
//! subscription on, so notifications sent while no one is connected are lost
//! as they would be over the air, and glucose records are kept for the RACP.

use std::collections::HashSet;
use std::io;

use chrono::NaiveDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use super::scenario::{Action, GLUCOSE, RACP, Scenario, Script};

/// How to run one simulated device.
#[derive(Clone, Debug)]
pub struct BleSimConfig {
    pub scenario: Scenario,
    pub address: [u8; 6],
    /// Virtual seconds per real second; `None` = the scenario's default.
    pub speed: Option<f64>,
    /// What the device clock reads when the script starts.
    pub start: NaiveDateTime,
    /// Start the script over when it ends (demo); otherwise stay connected and silent.
    pub repeat: bool,
}

pub(crate) fn address_text(a: [u8; 6]) -> String {
    a.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One driver's link: the command lines it sends, the write half for
/// notifications, what it subscribed to and whether it said `READY`. Shared
/// with the load simulator's devices (`crate::load`).
pub(crate) struct Conn {
    pub(crate) lines: Lines<BufReader<OwnedReadHalf>>,
    pub(crate) write: OwnedWriteHalf,
    pub(crate) subscribed: HashSet<u16>,
    pub(crate) ready: bool,
}

impl Conn {
    /// Sends the `DEVICE` line on a freshly accepted stream.
    pub(crate) async fn accept(stream: tokio::net::TcpStream, hello: &str) -> io::Result<Self> {
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        write.write_all(hello.as_bytes()).await?;
        Ok(Conn {
            lines: BufReader::new(read).lines(),
            write,
            subscribed: HashSet::new(),
            ready: false,
        })
    }

    async fn send(&mut self, address: &str, characteristic: u16, payload: &[u8]) -> io::Result<()> {
        let line = format!(
            "NTF {address} {characteristic:04x} {}\n",
            hex::encode(payload)
        );
        self.write.write_all(line.as_bytes()).await
    }
}

/// Serves the device on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: TcpListener, config: BleSimConfig) -> io::Result<()> {
    let script: Script = config.scenario.script(config.start);
    let speed = config.speed.unwrap_or(script.default_speed).max(1e-6);
    let address = address_text(config.address);
    let hello = format!(
        "DEVICE {address} {} {}\n",
        script
            .services
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join(","),
        script
            .characteristics
            .iter()
            .map(|c| format!("{c:04x}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut stored = script.stored.clone();
    let mut conn: Option<Conn> = None;
    let mut started: Option<Instant> = None;
    let mut next = 0usize;
    loop {
        let deadline = started.and_then(|s| {
            script
                .steps
                .get(next)
                .map(|step| s + step.at.div_f64(speed))
        });
        tokio::select! {
            accepted = listener.accept(), if conn.is_none() => {
                let (stream, _) = accepted?;
                conn = Conn::accept(stream, &hello).await.ok();
            }
            line = async { conn.as_mut().map(|c| c.lines.next_line()).expect("guarded").await }, if conn.is_some() => {
                let Ok(Some(line)) = line else {
                    conn = None;
                    continue;
                };
                let Some(c) = conn.as_mut() else { continue };
                if handle_command(c, &line, &address, &stored).await.is_err() {
                    conn = None;
                    continue;
                }
                if c.ready && started.is_none() {
                    started = Some(Instant::now());
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                let step = &script.steps[next];
                next += 1;
                match &step.action {
                    Action::Notify { characteristic, payload } => {
                        if let Some(c) = conn.as_mut().filter(|c| c.ready && c.subscribed.contains(characteristic))
                            && c.send(&address, *characteristic, payload).await.is_err()
                        {
                            conn = None;
                        }
                    }
                    Action::Store { seq, payload } => {
                        stored.push((*seq, payload.clone()));
                        if let Some(c) = conn.as_mut().filter(|c| c.ready && c.subscribed.contains(&GLUCOSE))
                            && c.send(&address, GLUCOSE, payload).await.is_err()
                        {
                            conn = None;
                        }
                    }
                    Action::Disconnect => conn = None,
                }
                if next == script.steps.len() && config.repeat {
                    next = 0;
                    stored.clone_from(&script.stored);
                    started = Some(Instant::now());
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// `SUB <char>`, `READY`, `WRITE <char> <hex>`.
pub(crate) async fn handle_command(
    c: &mut Conn,
    line: &str,
    address: &str,
    stored: &[(u16, Vec<u8>)],
) -> io::Result<()> {
    let mut words = line.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("SUB"), Some(ch), _) => {
            if let Ok(ch) = u16::from_str_radix(ch, 16) {
                c.subscribed.insert(ch);
            }
        }
        (Some("READY"), _, _) => c.ready = true,
        (Some("WRITE"), Some(ch), Some(hex)) if u16::from_str_radix(ch, 16) == Ok(RACP) => {
            let request = hex::decode(hex).unwrap_or_default();
            racp(c, &request, address, stored).await?;
        }
        _ => {}
    }
    Ok(())
}

/// GLS Record Access Control Point: "report stored records", all (operator
/// 0x01) or by sequence number ≥ (operator 0x03, filter type 0x01). Records
/// go out as Glucose Measurement notifications, then the response code.
async fn racp(
    c: &mut Conn,
    request: &[u8],
    address: &str,
    stored: &[(u16, Vec<u8>)],
) -> io::Result<()> {
    let from = match request {
        [0x01, 0x01] => Some(0),
        [0x01, 0x03, 0x01, lo, hi] => Some(u16::from_le_bytes([*lo, *hi])),
        _ => None,
    };
    let Some(from) = from else {
        // op code not supported (0x02) for the request's op code
        let op = request.first().copied().unwrap_or(0);
        return c.send(address, RACP, &[0x06, 0x00, op, 0x02]).await;
    };
    let mut sent = 0;
    for (_, payload) in stored.iter().filter(|(seq, _)| *seq >= from) {
        c.send(address, GLUCOSE, payload).await?;
        sent += 1;
    }
    // response code: 0x01 success, 0x06 no records found
    let code = if sent > 0 { 0x01 } else { 0x06 };
    c.send(address, RACP, &[0x06, 0x00, 0x01, code]).await
}

/// Binds `addr`, prints the bound address, and serves (the CLI's entry).
pub async fn listen_and_serve(addr: std::net::SocketAddr, config: BleSimConfig) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!(
        "wardgate-sim ble: {:?} device {} listening on {}",
        config.scenario,
        address_text(config.address),
        listener.local_addr()?
    );
    serve(listener, config).await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn racp_reports_stored_records_from_a_sequence_number() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = BleSimConfig {
            scenario: Scenario::Hypoglycaemia,
            address: [0xAA, 0xBB, 0xCC, 0x00, 0x00, 0x01],
            // Slow enough that no scripted step runs during the test.
            speed: Some(0.001),
            start: "2026-11-27T08:00:00".parse().unwrap(),
            repeat: false,
        };
        let server = tokio::spawn(serve(listener, config));
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        assert_eq!(
            lines.next_line().await.unwrap().unwrap(),
            "DEVICE AA:BB:CC:00:00:01 1808,180f 2a18,2a52,2a19"
        );
        // report stored records, ≥, by sequence number, from 2
        write
            .write_all(b"SUB 2a18\nSUB 2a52\nREADY\nWRITE 2a52 0103010200\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(lines.next_line().await.unwrap().unwrap());
        }
        assert_eq!(
            got,
            [
                // flags 0x02; seq 2; base time 2026-11-27 06:00:00; 96 × 10^-5 kg/L (0xB060); 0x11
                "NTF AA:BB:CC:00:00:01 2a18 020200ea070b1b06000060b011",
                // seq 3; 07:00:00; 74 (0xB04A)
                "NTF AA:BB:CC:00:00:01 2a18 020300ea070b1b0700004ab011",
                // response code: request 0x01, success
                "NTF AA:BB:CC:00:00:01 2a52 06000101",
            ]
        );
        // Nothing at or after 9: "no records found".
        write.write_all(b"WRITE 2a52 0103010900\n").await.unwrap();
        assert_eq!(
            lines.next_line().await.unwrap().unwrap(),
            "NTF AA:BB:CC:00:00:01 2a52 06000106"
        );
        server.abort();
    }
}
