//! The simulator transport: a device on a local TCP socket, one connection
//! per BLE link. Framing is one ASCII line per message (UUIDs as 4 hex
//! digits, payloads as hex):
//!
//! ```text
//! device → driver  DEVICE <address> <service>,<service>... <char>,<char>...   (on accept: advertisement + discovery)
//! driver → device  SUB <char>                                                   (enable notify/indicate)
//! driver → device  READY                                                        (all subscriptions written)
//! driver → device  WRITE <char> <hex>                                           (write with response: RACP)
//! device → driver  NTF <address> <char> <hex>                                  (notification or indication)
//! ```
//!
//! The device closing the socket is a disconnection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{Address, BleLink, BleTransport, Notification, ScanFilter, TransportError};
use crate::ble::Characteristic;

/// What a `DEVICE` line announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub address: Address,
    pub services: Vec<u128>,
    pub characteristics: Vec<Characteristic>,
}

fn uuid16(text: &str) -> Result<u16, String> {
    if text.len() == 4 {
        u16::from_str_radix(text, 16).map_err(|_| format!("bad UUID {text:?}"))
    } else {
        Err(format!("bad UUID {text:?}"))
    }
}

/// Parses `DEVICE <address> <services> <characteristics>`. Characteristics
/// this driver does not know are left out.
pub fn parse_device_line(line: &str) -> Result<Advertisement, String> {
    let mut words = line.split_ascii_whitespace();
    if words.next() != Some("DEVICE") {
        return Err(format!("expected a DEVICE line, got {line:?}"));
    }
    let address = words.next().ok_or("DEVICE without address")?.parse()?;
    let list = |w: Option<&str>| -> Result<Vec<u16>, String> {
        w.unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(uuid16)
            .collect()
    };
    let services = list(words.next())?
        .into_iter()
        .map(crate::ble::sig_uuid128)
        .collect();
    let characteristics = list(words.next())?
        .into_iter()
        .filter_map(Characteristic::from_uuid16)
        .collect();
    Ok(Advertisement {
        address,
        services,
        characteristics,
    })
}

/// Parses `NTF <address> <char> <hex>`; `Ok(None)` for a characteristic
/// this driver does not know.
pub fn parse_notification_line(line: &str) -> Result<Option<Notification>, String> {
    let mut words = line.split_ascii_whitespace();
    if words.next() != Some("NTF") {
        return Err(format!("expected an NTF line, got {line:?}"));
    }
    let address = words.next().ok_or("NTF without address")?.parse()?;
    let ch = uuid16(words.next().ok_or("NTF without characteristic")?)?;
    let bytes = hex::decode(words.next().unwrap_or("")).map_err(|e| e.to_string())?;
    Ok(
        Characteristic::from_uuid16(ch).map(|characteristic| Notification {
            address,
            characteristic,
            bytes,
        }),
    )
}

/// Connects to a simulated device listening on `addr` (loopback).
#[derive(Debug, Clone)]
pub struct SimTransport {
    addr: SocketAddr,
}

impl SimTransport {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }
}

fn io(e: &std::io::Error) -> TransportError {
    TransportError::Other(format!("simulator socket: {e}"))
}

impl BleTransport for SimTransport {
    type Link = SimLink;

    async fn connect(
        &mut self,
        filter: &ScanFilter,
        timeout: Duration,
    ) -> Result<SimLink, TransportError> {
        let attempt = async {
            let link = self.open().await?;
            if !filter.matches(link.ad.address, &link.ad.services) {
                return Err(TransportError::NotFound(timeout));
            }
            Ok(link)
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(TransportError::NotFound(timeout)))
    }
}

impl SimTransport {
    /// Connects and reads the device's `DEVICE` line.
    async fn open(&self) -> Result<SimLink, TransportError> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| io(&e))?;
        stream.set_nodelay(true).map_err(|e| io(&e))?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let line = lines
            .next_line()
            .await
            .map_err(|e| io(&e))?
            .ok_or(TransportError::Disconnected)?;
        let ad = parse_device_line(&line).map_err(TransportError::Other)?;
        Ok(SimLink { ad, lines, write })
    }

    /// What the simulated device advertises (the scan of `wardgate devices
    /// scan --simulator`): connects, reads its `DEVICE` line, disconnects.
    pub async fn advertisement(&self, timeout: Duration) -> Result<Advertisement, TransportError> {
        let link = tokio::time::timeout(timeout, self.open())
            .await
            .unwrap_or(Err(TransportError::NotFound(timeout)))?;
        let ad = link.ad.clone();
        link.disconnect().await;
        Ok(ad)
    }
}

/// A connection to a simulated device.
#[derive(Debug)]
pub struct SimLink {
    ad: Advertisement,
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl SimLink {
    async fn send(&mut self, line: String) -> Result<(), TransportError> {
        self.write
            .write_all(line.as_bytes())
            .await
            .map_err(|_| TransportError::Disconnected)
    }
}

impl BleLink for SimLink {
    fn address(&self) -> Address {
        self.ad.address
    }

    fn characteristics(&self) -> &[Characteristic] {
        &self.ad.characteristics
    }

    async fn subscribe(&mut self, characteristic: Characteristic) -> Result<(), TransportError> {
        if !self.ad.characteristics.contains(&characteristic) {
            return Err(TransportError::MissingCharacteristic(characteristic));
        }
        self.send(format!("SUB {:04x}\n", characteristic.uuid16()))
            .await
    }

    async fn subscribed(&mut self) -> Result<(), TransportError> {
        self.send("READY\n".to_owned()).await
    }

    async fn write(
        &mut self,
        characteristic: Characteristic,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        self.send(format!(
            "WRITE {:04x} {}\n",
            characteristic.uuid16(),
            hex::encode(bytes)
        ))
        .await
    }

    async fn next(&mut self) -> Result<Notification, TransportError> {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .map_err(|_| TransportError::Disconnected)?
                .ok_or(TransportError::Disconnected)?;
            match parse_notification_line(&line) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(e) => return Err(TransportError::Other(format!("simulator sent {e}"))),
            }
        }
    }

    async fn disconnect(mut self) {
        let _ = self.write.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        let ad = parse_device_line("DEVICE AA:BB:CC:00:00:01 180d,180f 2a37,2a19,ffff").unwrap();
        assert_eq!(ad.address.to_string(), "AA:BB:CC:00:00:01");
        assert_eq!(
            ad.services,
            [
                crate::ble::sig_uuid128(0x180D),
                crate::ble::sig_uuid128(0x180F)
            ]
        );
        assert_eq!(
            ad.characteristics,
            [
                Characteristic::HeartRateMeasurement,
                Characteristic::BatteryLevel
            ]
        );
        let n = parse_notification_line("NTF AA:BB:CC:00:00:01 2a19 55")
            .unwrap()
            .unwrap();
        assert_eq!(
            (n.characteristic, n.bytes),
            (Characteristic::BatteryLevel, vec![0x55])
        );
        assert_eq!(
            parse_notification_line("NTF AA:BB:CC:00:00:01 ffff 00"),
            Ok(None)
        );
        assert!(parse_notification_line("NTF AA:BB:CC:00:00:01 2a19 5").is_err());
        assert!(parse_device_line("HELLO").is_err());
    }
}
