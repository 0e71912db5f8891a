//! Modbus driver against the wardgate-sim Modbus simulator over real TCP and pseudo-terminals.
