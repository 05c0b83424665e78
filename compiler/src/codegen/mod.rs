//! Code generation from the kernel IR. `cpu` emits LLVM IR for the host and links a shared
//! object; a GPU target (PTX) will sit beside it, reading the same kernel IR.

pub mod artifact;
pub mod cpu;
