//! Integration tests of wardgate-drivers: one binary, one module per family.

mod ble;
mod modbus;
mod pump;
