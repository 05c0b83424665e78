//! The CPU code generator: kernel IR → LLVM IR (`emit.rs`) → the O3 pipeline for the host
//! CPU (its triple, CPU name and feature string; the vector width follows from the features)
//! → an object file → a shared object linked by the system C compiler (`cc -shared`).

mod attn_tile;
mod build;
mod emit;
mod gemm;
mod half;
mod math;
mod metadata;
mod recur;
mod target;

/// The scalar kernel emitter, shared with the GPU backend (`codegen/ptx`).
pub(crate) use emit::emit_program;
pub use emit::{STATUS_DIV_ZERO, STATUS_INDEX};
pub use target::{HostTarget, LEVELS, cpu_target, host_target};

use crate::kernel::Program;
use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine,
};
use std::path::Path;
use thiserror::Error;

/// Why code generation failed.
#[derive(Debug, Error)]
pub enum CodegenError {
    #[error("the CPU backend cannot generate code for {0} yet")]
    Unsupported(String),
    #[error("target: {0}")]
    Target(String),
    #[error("LLVM: {0}")]
    Llvm(String),
    #[error("linking the shared object with `cc`: {0}")]
    Link(String),
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
}

fn machine(t: &HostTarget) -> Result<TargetMachine, CodegenError> {
    Target::initialize_native(&InitializationConfig::default()).map_err(CodegenError::Llvm)?;
    let triple = inkwell::targets::TargetTriple::create(&t.triple);
    let target = Target::from_triple(&triple).map_err(|e| CodegenError::Llvm(e.to_string()))?;
    target
        .create_target_machine(
            &triple,
            &t.cpu,
            &t.features,
            OptimizationLevel::Aggressive,
            RelocMode::PIC,
            CodeModel::Default,
        )
        .ok_or_else(|| CodegenError::Llvm(format!("no target machine for {}", t.triple)))
}

fn build<'c>(
    ctx: &'c Context,
    p: &Program,
    tm: &TargetMachine,
) -> Result<Module<'c>, CodegenError> {
    let module = ctx.create_module("seqc");
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    let features = tm.get_feature_string().to_string_lossy().into_owned();
    emit::emit_program(ctx, &module, p, gemm::vector_width(&features))?;
    module
        .verify()
        .map_err(|e| CodegenError::Llvm(format!("invalid module: {e}")))?;
    Ok(module)
}

/// The LLVM IR of a program for the host, before (`optimize = false`) or after the O3
/// pipeline.
pub fn llvm_ir(p: &Program, optimize: bool) -> Result<String, CodegenError> {
    llvm_ir_for(p, optimize, &host_target())
}

/// The LLVM IR of a program for target `t`, before (`optimize = false`) or after the O3
/// pipeline.
pub fn llvm_ir_for(p: &Program, optimize: bool, t: &HostTarget) -> Result<String, CodegenError> {
    let tm = machine(t)?;
    let ctx = Context::create();
    let module = build(&ctx, p, &tm)?;
    if optimize {
        run_o3(&module, &tm)?;
    }
    Ok(module.print_to_string().to_string())
}

/// LLVM's O3 pipeline for `tm` (shared with the GPU backend).
pub(crate) fn run_o3(module: &Module, tm: &TargetMachine) -> Result<(), CodegenError> {
    module
        .run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(|e| CodegenError::Llvm(e.to_string()))
}

/// Compiles a program to a shared object at `so_path` for target `t`.
pub fn compile_shared_object(
    p: &Program,
    so_path: &Path,
    t: &HostTarget,
) -> Result<(), CodegenError> {
    let tm = machine(t)?;
    let ctx = Context::create();
    let module = build(&ctx, p, &tm)?;
    run_o3(&module, &tm)?;
    link(&module, &tm, so_path)
}

/// Writes `module`'s object code and links it into a shared object at `so_path`.
fn link(module: &Module, tm: &TargetMachine, so_path: &Path) -> Result<(), CodegenError> {
    let obj = so_path.with_extension("o");
    tm.write_to_file(module, FileType::Object, &obj)
        .map_err(|e| CodegenError::Llvm(e.to_string()))?;
    let out = std::process::Command::new("cc")
        .arg("-shared")
        .arg("-o")
        .arg(so_path)
        .arg(&obj)
        .arg("-lm")
        .output()
        .map_err(|e| CodegenError::Link(e.to_string()))?;
    let _ = std::fs::remove_file(&obj);
    if !out.status.success() {
        return Err(CodegenError::Link(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(())
}

/// A shared object at `so_path` with `void seqc_math_pow(const double *x, const double *y,
/// double *out, int64_t n)`: the inline pow kernels use, for its accuracy tests.
pub fn pow_shared_object(so_path: &Path) -> Result<(), CodegenError> {
    let t = host_target();
    let tm = machine(&t)?;
    let ctx = Context::create();
    let module = ctx.create_module("seqc_pow");
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    math::emit_pow_probe(&ctx, &module)?;
    module
        .verify()
        .map_err(|e| CodegenError::Llvm(format!("invalid module: {e}")))?;
    run_o3(&module, &tm)?;
    link(&module, &tm, so_path)
}

/// A shared object at `so_path` with `void seqc_math_<op>(const T *x, T *y, int64_t n)` for
/// each of `ops` (exp, log, log1p, tanh, erf, sigmoid, silu, softplus, elu, gelu, gelu_tanh),
/// T = f32 when `single`, else f64: the inline functions kernels use, for accuracy tests and
/// for reading their machine code.
pub fn math_shared_object(
    ops: &[crate::ir::UnaryOp],
    single: bool,
    so_path: &Path,
) -> Result<HostTarget, CodegenError> {
    let t = host_target();
    let tm = machine(&t)?;
    let ctx = Context::create();
    let module = ctx.create_module("seqc_math");
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    for op in ops {
        math::emit_probe(&ctx, &module, *op, single)?;
    }
    module
        .verify()
        .map_err(|e| CodegenError::Llvm(format!("invalid module: {e}")))?;
    run_o3(&module, &tm)?;
    link(&module, &tm, so_path)?;
    Ok(t)
}
