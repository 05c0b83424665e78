//! Code generation from the kernel IR. `cpu` emits LLVM IR for the host and links a shared
//! object; `ptx` emits PTX for NVIDIA GPUs from the same kernel IR, reusing the CPU
//! backend's scalar emitter for the kernels' bodies.

pub mod artifact;
pub mod cpu;
pub mod ptx;
