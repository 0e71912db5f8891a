//! Device drivers: for each device family a sans-IO codec (pure functions over
//! bytes, no I/O, no clock) and an async driver that owns the connection.
//!
//! Drivers turn bytes into [`wardgate_model::Event`]s bound to the subject the
//! configuration names, through a [`DriverContext`]. A driver never panics on
//! device input and never exits on a device error: bad bytes are a typed error,
//! counted and logged once; a lost connection is retried with backoff until
//! shutdown.

pub mod ble;
mod context;
pub mod jitter;
pub mod metrics;
pub mod modbus;
pub mod pump;
pub mod synthetic;

pub use context::{
    CommitRequests, DEFAULT_CLOCK_TOLERANCE, DriverContext, Emitted, EventReceiver, PipelineClosed,
};
pub use metrics::{DeviceMetrics, DriverMetrics};
