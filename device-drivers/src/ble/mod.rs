//! Bluetooth LE health devices: heart-rate straps, pulse oximeters, blood
//! pressure cuffs, thermometers, glucometers, scales.
//!
//! - [`gatt`] and [`ieee11073`]: sans-IO decoders, one pure function per GATT
//!   characteristic; no I/O, no clock (the gateway's `now` is an argument).
//! - [`json`]: the `wardgate decode ble` output ([`json::decode_to_json`]).
//! - [`racp`] (glucose record requests) and [`backoff`]: sans-IO too.
//! - [`transport`]: the `BleTransport`/`BleLink` traits, btleplug and the
//!   simulator socket; [`config`]: `BleConfig` and its validation;
//!   [`driver`]: `run`, the only async code.
//!
//! Decoders never panic on any input: a payload that breaks its spec is a
//! [`DecodeError`] naming the characteristic and the reason. Nothing here
//! except the driver's thin shell reads the clock. See `docs/devices/ble.md`.

pub mod backoff;
mod characteristic;
pub mod config;
mod decoded;
pub mod driver;
mod fields;
pub mod gatt;
pub mod ieee11073;
pub mod json;
pub mod racp;
mod tracker;
pub mod transport;

pub use characteristic::{Characteristic, UnknownCharacteristic, sig_uuid128};
pub use config::BleConfig;
pub use decoded::{
    DecodeError, DecodeReason, Decoded, Extra, ExtraValue, INLINE_MEASUREMENTS, Measurement,
    StatusFlag, StatusFlags, TimeFallback, Unavailability, Unavailable,
};
pub use gatt::decode;
pub use tracker::Tracker;

#[cfg(test)]
mod vectors;
