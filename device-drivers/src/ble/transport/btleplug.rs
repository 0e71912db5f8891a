//! The system Bluetooth stack through btleplug (BlueZ over D-Bus on Linux).
//! Only what the hardware needs lives here; the driver's logic is tested
//! against the [`BleTransport`] trait. A host without an adapter or without a
//! D-Bus system bus gets one error naming what is missing.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use btleplug::api::{
    self, Central as _, CentralEvent, Manager as _, Peripheral as _, ValueNotification, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::{Address, BleLink, BleTransport, Notification, ScanFilter, Seen, TransportError};
use crate::ble::Characteristic;

type Events = Pin<Box<dyn Stream<Item = CentralEvent> + Send>>;
type Values = Pin<Box<dyn Stream<Item = ValueNotification> + Send>>;

fn other(e: &btleplug::Error) -> TransportError {
    match e {
        btleplug::Error::NoAdapterAvailable => TransportError::NoAdapter,
        e => TransportError::Other(format!("bluetooth: {e}")),
    }
}

/// The first Bluetooth adapter of the host.
#[derive(Debug, Clone)]
pub struct BtleplugTransport {
    adapter: Adapter,
}

impl BtleplugTransport {
    /// Opens the system bus and the first adapter.
    pub async fn new() -> Result<Self, TransportError> {
        let manager = Manager::new()
            .await
            .map_err(|e| TransportError::NoSystemBus(e.to_string()))?;
        let adapters = manager
            .adapters()
            .await
            .map_err(|e| TransportError::NoSystemBus(e.to_string()))?;
        let adapter = adapters
            .into_iter()
            .next()
            .ok_or(TransportError::NoAdapter)?;
        Ok(Self { adapter })
    }

    /// Listens to advertisements for `duration` and returns every device
    /// the adapter knows, by address (BlueZ also lists devices it heard
    /// before; those have no signal strength).
    pub async fn scan(&self, duration: Duration) -> Result<Vec<Seen>, TransportError> {
        self.adapter
            .start_scan(api::ScanFilter::default())
            .await
            .map_err(|e| other(&e))?;
        tokio::time::sleep(duration).await;
        let peripherals = self.adapter.peripherals().await.map_err(|e| other(&e));
        let _ = self.adapter.stop_scan().await;
        let mut seen = Vec::new();
        for p in peripherals? {
            let props = p.properties().await.ok().flatten().unwrap_or_default();
            seen.push(Seen {
                address: Address(p.address().into_inner()),
                name: props.local_name,
                rssi: props.rssi,
                services: props.services.iter().map(Uuid::as_u128).collect(),
            });
        }
        seen.sort_by_key(|s| s.address);
        Ok(seen)
    }

    async fn accepts(&self, p: &Peripheral, filter: &ScanFilter) -> bool {
        let address = Address(p.address().into_inner());
        let services: Vec<u128> = match p.properties().await {
            Ok(Some(props)) => props.services.iter().map(Uuid::as_u128).collect(),
            _ => Vec::new(),
        };
        filter.matches(address, &services)
    }

    async fn find(
        &self,
        filter: &ScanFilter,
        events: &mut Events,
    ) -> Result<Peripheral, TransportError> {
        for p in self.adapter.peripherals().await.map_err(|e| other(&e))? {
            if self.accepts(&p, filter).await {
                return Ok(p);
            }
        }
        while let Some(event) = events.next().await {
            let (CentralEvent::DeviceDiscovered(id)
            | CentralEvent::DeviceUpdated(id)
            | CentralEvent::ServicesAdvertisement { id, .. }) = event
            else {
                continue;
            };
            if let Ok(p) = self.adapter.peripheral(&id).await
                && self.accepts(&p, filter).await
            {
                return Ok(p);
            }
        }
        Err(TransportError::Other(
            "bluetooth: adapter event stream ended".into(),
        ))
    }
}

impl BleTransport for BtleplugTransport {
    type Link = BtleplugLink;

    async fn connect(
        &mut self,
        filter: &ScanFilter,
        timeout: Duration,
    ) -> Result<BtleplugLink, TransportError> {
        let mut events = self.adapter.events().await.map_err(|e| other(&e))?;
        let scan = api::ScanFilter {
            services: filter
                .services
                .iter()
                .copied()
                .map(Uuid::from_u128)
                .collect(),
        };
        self.adapter.start_scan(scan).await.map_err(|e| other(&e))?;
        let found = tokio::time::timeout(timeout, self.find(filter, &mut events)).await;
        let _ = self.adapter.stop_scan().await;
        let peripheral = found.map_err(|_| TransportError::NotFound(timeout))??;
        let link = async {
            peripheral.connect().await.map_err(|e| other(&e))?;
            peripheral
                .discover_services()
                .await
                .map_err(|e| other(&e))?;
            let values = peripheral.notifications().await.map_err(|e| other(&e))?;
            Ok::<_, TransportError>(values)
        };
        let values = tokio::time::timeout(timeout, link).await.map_err(|_| {
            TransportError::Other(format!("bluetooth: connect timed out after {timeout:?}"))
        })??;
        let gatt = peripheral.characteristics();
        let characteristics = gatt
            .iter()
            .filter_map(|c| Characteristic::from_uuid128(c.uuid.as_u128()))
            .collect();
        Ok(BtleplugLink {
            id: peripheral.id(),
            address: Address(peripheral.address().into_inner()),
            peripheral,
            gatt,
            characteristics,
            values,
            events,
        })
    }
}

/// A connected BLE peripheral.
pub struct BtleplugLink {
    id: PeripheralId,
    address: Address,
    peripheral: Peripheral,
    gatt: BTreeSet<api::Characteristic>,
    characteristics: Vec<Characteristic>,
    values: Values,
    events: Events,
}

impl std::fmt::Debug for BtleplugLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtleplugLink")
            .field("address", &self.address)
            .field("characteristics", &self.characteristics)
            .finish_non_exhaustive()
    }
}

impl BtleplugLink {
    fn gatt(&self, ch: Characteristic) -> Result<api::Characteristic, TransportError> {
        self.gatt
            .iter()
            .find(|c| c.uuid.as_u128() == ch.uuid128())
            .cloned()
            .ok_or(TransportError::MissingCharacteristic(ch))
    }
}

impl BleLink for BtleplugLink {
    fn address(&self) -> Address {
        self.address
    }

    fn characteristics(&self) -> &[Characteristic] {
        &self.characteristics
    }

    async fn subscribe(&mut self, characteristic: Characteristic) -> Result<(), TransportError> {
        let c = self.gatt(characteristic)?;
        self.peripheral.subscribe(&c).await.map_err(|e| other(&e))
    }

    async fn write(
        &mut self,
        characteristic: Characteristic,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        let c = self.gatt(characteristic)?;
        self.peripheral
            .write(&c, bytes, WriteType::WithResponse)
            .await
            .map_err(|e| other(&e))
    }

    async fn next(&mut self) -> Result<Notification, TransportError> {
        loop {
            tokio::select! {
                value = self.values.next() => {
                    let value = value.ok_or(TransportError::Disconnected)?;
                    if let Some(characteristic) = Characteristic::from_uuid128(value.uuid.as_u128()) {
                        return Ok(Notification { address: self.address, characteristic, bytes: value.value });
                    }
                }
                event = self.events.next() => match event {
                    Some(CentralEvent::DeviceDisconnected(id)) if id == self.id => {
                        return Err(TransportError::Disconnected);
                    }
                    None => return Err(TransportError::Disconnected),
                    Some(_) => {}
                },
            }
        }
    }

    async fn disconnect(self) {
        let _ = self.peripheral.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This host has no radio; whatever it lacks, opening the stack must be
    /// an error that names it, never a panic. (On a host with an adapter the
    /// transport opens.)
    #[tokio::test]
    async fn missing_bus_or_adapter_is_a_clear_error() {
        match BtleplugTransport::new().await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.is_fatal(), "{e:?}");
                let text = e.to_string();
                assert!(
                    text.contains("D-Bus system bus") || text.contains("no Bluetooth adapter"),
                    "{text}"
                );
            }
        }
    }
}
