//! seqc: a compiler for sequence-model architectures.
//!
//! Pipeline (each stage a module): `syntax` (spec text → AST) → `lower` (AST → tensor `ir`,
//! type and shape checked) → `ir::verify` → `interp` (the reference interpreter, the
//! numerical oracle). `frontend` runs the passes in order; `bind` matches run-time tensors to
//! a graph's declared inputs and params; `diag` renders spec errors.

pub mod bind;
pub mod codegen;
pub mod diag;
pub mod frontend;
pub mod info;
pub mod interp;
pub mod ir;
pub mod kernel;
pub mod lower;
pub mod opt;
pub mod rng;
pub mod syntax;
