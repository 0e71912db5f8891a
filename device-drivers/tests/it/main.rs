//! Integration tests of wardgate-drivers, one binary.

mod modbus;
