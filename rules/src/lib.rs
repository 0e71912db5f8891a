//! The rules engine: rule language, windows, NEWS2, built-in packs and the
//! alert lifecycle. Deterministic: time is always passed in, never read from the
//! clock, and this crate never does I/O.
