//! `seqc-runtime`: what the compiler and an embedding app share — dtypes, host tensors,
//! safetensors I/O, the seeded RNG, the compiled-artifact format — and the CPU runtime that
//! loads an artifact, binds weights and runs it (`model`). Architecture invariant: this crate never depends on LLVM.

pub mod artifact;
pub mod compare;
pub mod dtype;
pub mod error;
pub mod io;
pub mod model;
pub mod rng;
pub mod sym;
pub mod tensor;

pub use dtype::DType;
pub use error::RuntimeError;
pub use model::{Model, ModelError, Options, Weights};
pub use sym::{DimValues, SymExpr};
pub use tensor::{HostTensor, TensorData};
