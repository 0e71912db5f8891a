//! One module per `wardgate-sim` subcommand.

pub(crate) mod ble;
pub(crate) mod load;
pub(crate) mod pump;
