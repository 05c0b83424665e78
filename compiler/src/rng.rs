//! The project's seeded RNG, re-exported from `seqc-runtime` (one definition for the
//! interpreter, the compiler and the runtime, so every backend draws the same values).

pub use seqc_runtime::rng::*;
