//! seqc: a compiler for sequence-model architectures.
//!
//! Pipeline (each stage a module): `syntax` (spec text → AST) → `lower` (AST → tensor `ir`,
//! type and shape checked, verified) → `interp` (the reference interpreter, the numerical
//! oracle). `bind` matches run-time tensors to a graph's declared inputs and params.

pub mod bind;
pub mod interp;
pub mod ir;
pub mod rng;
