//! BLE health devices over the simulator socket: a spec-exact encoder of
//! every GATT health characteristic the gateway decodes ([`encode`]),
//! scripted scenarios ([`scenario`]) and the device server ([`server`]).
//! Runnable in-process ([`server::serve`]) or as `wardgate-sim ble`
//! (`src/cli/ble.rs`).

pub mod encode;
pub mod scenario;
pub mod server;

pub use scenario::Scenario;
pub use server::{BleSimConfig, listen_and_serve, serve};
