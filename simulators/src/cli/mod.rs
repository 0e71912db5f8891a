//! One module per `wardgate-sim` subcommand.

pub(crate) mod pump;
