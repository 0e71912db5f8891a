//! The wardgate gateway: configuration, the running pipeline and its sinks.
//! The binary (`main.rs`) is a thin CLI over this library.

pub mod bridge;
pub mod cli;
pub mod cmd;
pub mod commands;
pub mod config;
pub mod demo;
pub mod http;
pub mod lineproto;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod mqtt;
pub mod pipeline;
pub mod roster;
pub mod secret;
pub mod service;
pub mod sinks;
pub mod spool;
pub mod supervisor;
