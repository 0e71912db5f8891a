//! End-to-end tests across processes: the real `wardgate` binary, a real
//! mosquitto broker, a real victoria-metrics TSDB, all on loopback ports.

mod browser;
mod mqtt;
