//! Device drivers: for each device family a sans-IO codec (pure functions over
//! bytes, no I/O, no clock) and an async driver that owns the connection.
//!
//! Drivers turn bytes into [`wardgate_model::Event`]s bound to the subject the
//! configuration names. A driver never panics on device input: bad bytes are a
//! typed error, counted and logged once.
