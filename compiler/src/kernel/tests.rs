//! Unit tests of lowering to kernels.
