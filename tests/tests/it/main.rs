//! End-to-end tests across processes: the real `wardgate` binary, a real
//! mosquitto broker, a real victoria-metrics TSDB, all on loopback ports.

mod acl;
mod alert_path;
mod browser;
mod dashboard;
mod influx;
mod mqtt;
mod restart;
mod sim_config_out;
mod soak;
