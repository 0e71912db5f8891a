//! Integration tests of wardgate-drivers: one binary, one module per driver.

mod ble;
