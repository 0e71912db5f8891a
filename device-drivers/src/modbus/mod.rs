//! Modbus TCP and RTU ward sensors (room temperature and humidity, O2 flow,
//! isolation-room pressure, medication fridges, bed load cells).
//!
//! - [`register`]: data types and byte/word orders, pure decoding.
//! - [`plan`]: coalescing of a register map into few read requests.
//! - [`poller`]: the poll schedule, retries, failure counting and backoff of
//!   one device as a sans-IO state machine.
//! - [`config`]: `ModbusConfig`, the `[[devices]] type = "modbus"` table.
//!
//! This module never decides which subject a reading belongs to (the
//! [`crate::DriverContext`] does) and never reads the clock outside the async shells.

pub mod config;
mod driver;
pub mod plan;
pub mod poller;
pub mod register;

pub use config::{Link, ModbusConfig, Parity, RegisterConfig, validate_bus};
pub use driver::{BusDevice, ModbusError, ModbusStats, run, run_bus, run_with_stats};
pub use register::{ByteOrder, DataType, DecodeError, Decoding, Table};
