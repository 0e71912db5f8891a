//! Integration tests of wardgate-sim, one binary (see STYLE.md).

mod load;
