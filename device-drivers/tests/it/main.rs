//! Integration tests of wardgate-drivers: one binary, one module per family.

mod modbus;
mod pump;
