//! Integration tests of wardgate-rules: one binary, one module per area.

mod episodes;
mod helpers;
mod lifecycle;
mod news2;
mod packs;
mod props;
mod replay;
mod rule_tests;
mod wander;
