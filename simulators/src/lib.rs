//! Spec-exact device simulators. They encode what a real device sends from the
//! specifications alone and never reuse the drivers' decoders, so a bug shared
//! by both cannot hide.

pub mod ble;
mod fragment;
pub mod load;
pub mod modbus;
pub mod pump;

pub use fragment::{FragmentError, write as write_fragment};
