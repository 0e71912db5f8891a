//! Infusion pumps speaking the Alaris Asena-style serial protocol
//! (`docs/devices/asena.md`).
//!
//! - [`codec`]: framing and CRC, pure functions over bytes.
//! - [`poll`]: the identify/poll schedule, a state machine given the time.
//! - [`state`]: replies parsed into a [`PumpState`] in canonical units.
//! - [`run`]: the async driver over a serial port, configured by [`PumpConfig`].
//!
//! This module is read-only towards the pump: it never builds a command that
//! changes an infusion (rate, start, stop, VTBI).

pub mod codec;
mod config;
mod driver;
pub mod poll;
pub mod state;

pub use codec::{DecodeError, DecoderStats, Frame, FrameDecoder, FrameError};
pub use config::PumpConfig;
pub use driver::{PumpError, Translated, run, run_with_stats, translate};
pub use poll::{PollSettings, PollStats, Poller, PumpEvent};
pub use state::{Mode, PumpAlarm, PumpState, ReplyError, StatusReply, VtbiReply};
