//! `seqc-runtime`: what the compiler and an embedding app share — dtypes, host tensors and
//! safetensors I/O. Architecture invariant: this crate never depends on LLVM.

pub mod dtype;
pub mod error;
pub mod io;
pub mod tensor;

pub use dtype::DType;
pub use error::RuntimeError;
pub use tensor::{HostTensor, TensorData};
