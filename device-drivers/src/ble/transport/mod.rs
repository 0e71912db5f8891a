//! How the BLE driver reaches devices: a [`BleTransport`] finds and connects
//! one device, a [`BleLink`] is that connection. Two implementations: the
//! system's Bluetooth stack through btleplug, and a simulator over a local TCP
//! socket (`wardgate-sim ble`). The driver's logic is written once against
//! these traits and tested against a fake.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::Characteristic;

pub mod btleplug;
pub mod sim;

pub use self::btleplug::BtleplugTransport;
pub use self::sim::{Advertisement, SimTransport};

/// A Bluetooth device address, `AA:BB:CC:DD:EE:FF` (upper case once parsed).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 6]);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a Bluetooth address like AA:BB:CC:DD:EE:FF");
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Address(out))
    }
}

/// Parses a service or characteristic UUID: `180d`, `0x180D` or 128-bit.
pub fn parse_uuid(text: &str) -> Result<u128, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_prefix("0x").unwrap_or(&t);
    let bad = || {
        format!("{text:?} is not a UUID like 180d, 0x180D or 0000180d-0000-1000-8000-00805f9b34fb")
    };
    if t.len() == 4 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u16::from_str_radix(t, 16)
            .map(super::sig_uuid128)
            .map_err(|_| bad());
    }
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    if t.len() == 36 && hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u128::from_str_radix(&hex, 16).map_err(|_| bad());
    }
    Err(bad())
}

/// Which devices the driver may connect to: any address in `addresses`, or
/// (when none are listed) any device advertising one of `services`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanFilter {
    pub addresses: Vec<Address>,
    /// 128-bit service UUIDs.
    pub services: Vec<u128>,
}

impl ScanFilter {
    /// Whether a device seen with `address` advertising `services` is ours.
    /// With both lists set, the address must be listed and advertise a service.
    pub fn matches(&self, address: Address, services: &[u128]) -> bool {
        let address_ok = self.addresses.is_empty() || self.addresses.contains(&address);
        let service_ok =
            self.services.is_empty() || services.iter().any(|s| self.services.contains(s));
        address_ok && service_ok && !(self.addresses.is_empty() && self.services.is_empty())
    }
}

/// A device heard during a scan (`wardgate devices scan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub address: Address,
    /// The advertised local name, if any.
    pub name: Option<String>,
    /// Signal strength in dBm, when the stack reported one.
    pub rssi: Option<i16>,
    /// Advertised service UUIDs (128-bit).
    pub services: Vec<u128>,
}

/// One notification or indication value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub address: Address,
    pub characteristic: Characteristic,
    pub bytes: Vec<u8>,
}

/// Why a transport operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The host has no Bluetooth adapter: retrying will not help.
    #[error(
        "no Bluetooth adapter found (BlueZ reports none; is the adapter plugged in and powered?)"
    )]
    NoAdapter,
    /// BlueZ is unreachable: retrying will not help.
    #[error(
        "cannot reach BlueZ over the D-Bus system bus (is dbus running, /run/dbus/system_bus_socket present and bluetoothd started?): {0}"
    )]
    NoSystemBus(String),
    #[error("no matching device found within {0:?}")]
    NotFound(Duration),
    #[error("the device disconnected")]
    Disconnected,
    #[error("the device does not offer {0}")]
    MissingCharacteristic(Characteristic),
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// Whether the driver should give up instead of retrying: the missing
    /// piece is the host's, not the device's.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            TransportError::NoAdapter | TransportError::NoSystemBus(_)
        )
    }
}

/// Finds and connects devices.
pub trait BleTransport: Send {
    type Link: BleLink;

    /// Scans for a device `filter` accepts, connects and discovers its
    /// characteristics; gives up after `timeout`.
    fn connect(
        &mut self,
        filter: &ScanFilter,
        timeout: Duration,
    ) -> impl Future<Output = Result<Self::Link, TransportError>> + Send;
}

/// A connected device.
pub trait BleLink: Send {
    fn address(&self) -> Address;

    /// The known characteristics the device offers.
    fn characteristics(&self) -> &[Characteristic];

    /// Enables notifications or indications (whichever the characteristic has).
    fn subscribe(
        &mut self,
        characteristic: Characteristic,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Every subscription is in place (the simulator starts sending then).
    fn subscribed(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send {
        async { Ok(()) }
    }

    /// Writes with response (the RACP).
    fn write(
        &mut self,
        characteristic: Characteristic,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The next value; `Err(Disconnected)` when the link drops.
    fn next(&mut self) -> impl Future<Output = Result<Notification, TransportError>> + Send;

    /// Disconnects (best effort).
    fn disconnect(self) -> impl Future<Output = ()> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let a: Address = "aa:bb:cc:dd:ee:0f".parse().unwrap();
        assert_eq!(a, Address([0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x0F]));
        assert_eq!(a.to_string(), "AA:BB:CC:DD:EE:0F");
        for bad in [
            "",
            "AA:BB:CC:DD:EE",
            "AA:BB:CC:DD:EE:FF:00",
            "AAA:BB:CC:DD:EE:F",
            "GG:BB:CC:DD:EE:FF",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn uuids_parse() {
        let hr = 0x0000_180d_0000_1000_8000_0080_5f9b_34fb;
        assert_eq!(parse_uuid("180d"), Ok(hr));
        assert_eq!(parse_uuid("0x180D"), Ok(hr));
        assert_eq!(parse_uuid("0000180D-0000-1000-8000-00805f9b34fb"), Ok(hr));
        assert!(parse_uuid("18").is_err());
    }

    #[test]
    fn filter_needs_a_listed_address_or_service() {
        let a = Address([1, 2, 3, 4, 5, 6]);
        let b = Address([6, 5, 4, 3, 2, 1]);
        let hr = crate::ble::sig_uuid128(0x180D);
        let by_address = ScanFilter {
            addresses: vec![a],
            services: vec![],
        };
        assert!(by_address.matches(a, &[]));
        assert!(!by_address.matches(b, &[hr]));
        let by_service = ScanFilter {
            addresses: vec![],
            services: vec![hr],
        };
        assert!(by_service.matches(b, &[hr]));
        assert!(!by_service.matches(b, &[]));
        let both = ScanFilter {
            addresses: vec![a],
            services: vec![hr],
        };
        assert!(both.matches(a, &[hr]) && !both.matches(a, &[]) && !both.matches(b, &[hr]));
        assert!(
            !ScanFilter::default().matches(a, &[hr]),
            "an empty filter accepts nothing"
        );
    }
}
