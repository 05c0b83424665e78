//! The GPU code generator: kernel IR → LLVM IR for NVPTX → PTX text, one module per GPU
//! architecture (`sm_80`, `sm_90`).
//!
//! The program is the CPU's (same buffers, same kernels, so one manifest describes both).
//! Its block statements are expanded into scalar loop nests (`kernel::expand`) and its
//! kernels emitted by the CPU backend's scalar emitter (`cpu/emit.rs`) as device functions
//! with the CPU ABI `k_body(bufs, dims, begin, end, status)`; inlined into each, a PTX entry
//! (`entry.rs`) maps the kernel's outermost loop onto the grid: one thread per iteration of a
//! parallel loop, one thread for a serial one. [`launch`] gives the matching grid and block
//! for the manifest. Not yet: shared-memory tiling, warp shuffles, tensor cores (a block
//! statement's iteration is meant to become a thread block's cooperative work).

mod entry;

use super::cpu::{CodegenError, run_o3};
use crate::kernel::{self, Kernel, Program, Sched};
use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use seqc_runtime::SymExpr;

/// The architectures `--target ptx` compiles for by default, ascending.
pub const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

/// Threads per block of a kernel whose outermost loop is parallel.
pub const BLOCK: u32 = 128;

/// The triple of the NVPTX target.
pub const TRIPLE: &str = "nvptx64-nvidia-cuda";

/// The PTX ISA version the modules declare (8.0: CUDA 12.0 and later drivers).
const PTX_FEATURES: &str = "+ptx80";

/// Checks that `arch` is an architecture this backend generates code for.
pub fn check_arch(arch: &str) -> Result<(), CodegenError> {
    if ARCHS.contains(&arch) {
        Ok(())
    } else {
        Err(CodegenError::Target(format!(
            "unknown GPU architecture `{arch}`: expected one of {}",
            ARCHS.join(", ")
        )))
    }
}

fn machine(arch: &str) -> Result<TargetMachine, CodegenError> {
    check_arch(arch)?;
    Target::initialize_nvptx(&InitializationConfig::default());
    let triple = TargetTriple::create(TRIPLE);
    let target = Target::from_triple(&triple).map_err(|e| CodegenError::Llvm(e.to_string()))?;
    target
        .create_target_machine(
            &triple,
            arch,
            PTX_FEATURES,
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| CodegenError::Llvm(format!("no NVPTX target machine for {arch}")))
}

fn build<'c>(
    ctx: &'c Context,
    p: &Program,
    tm: &TargetMachine,
) -> Result<Module<'c>, CodegenError> {
    let module = ctx.create_module("seqc");
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    let mut p = kernel::expand::expand_blocks(p);
    for k in &mut p.kernels {
        scalar_loops(&mut k.root.body);
    }
    entry::emit(ctx, &module, &p)?;
    module
        .verify()
        .map_err(|e| CodegenError::Llvm(format!("invalid module: {e}")))?;
    // A GPU has no libm: a call of anything but an LLVM intrinsic would not assemble (or
    // would abort LLVM's instruction selection), so it is refused here by name.
    let mut f = module.get_first_function();
    while let Some(func) = f {
        let name = func.get_name().to_string_lossy().into_owned();
        if func.count_basic_blocks() == 0 && !name.starts_with("llvm.") {
            return Err(CodegenError::Unsupported(format!(
                "a call of the external function `{name}` on the GPU"
            )));
        }
        f = func.get_next_function();
    }
    Ok(module)
}

/// Drops the `vector` tags: a GPU thread has no SIMD lanes to widen a loop over (LLVM would
/// warn that it could not), its parallelism is the grid's.
fn scalar_loops(body: &mut [kernel::Stmt]) {
    for s in body {
        if let kernel::Stmt::Loop(l) = s
            && l.sched == Sched::Vector
        {
            l.sched = Sched::Serial;
        }
        if let Some(b) = s.body_mut() {
            scalar_loops(b);
        }
    }
}

/// The LLVM IR of program `p` for GPU `arch`, before
/// (`optimize = false`) or after the O3 pipeline.
pub fn llvm_ir(p: &Program, arch: &str, optimize: bool) -> Result<String, CodegenError> {
    let tm = machine(arch)?;
    let ctx = Context::create();
    let module = build(&ctx, p, &tm)?;
    if optimize {
        run_o3(&module, &tm)?;
    }
    Ok(module.print_to_string().to_string())
}

/// The PTX text of program `p` for GPU `arch`.
pub fn ptx(p: &Program, arch: &str) -> Result<String, CodegenError> {
    let tm = machine(arch)?;
    let ctx = Context::create();
    let module = build(&ctx, p, &tm)?;
    run_o3(&module, &tm)?;
    let buf = tm
        .write_to_memory_buffer(&module, FileType::Assembly)
        .map_err(|e| CodegenError::Llvm(e.to_string()))?;
    String::from_utf8(buf.as_slice().to_vec())
        .map_err(|e| CodegenError::Llvm(format!("PTX is not UTF-8: {e}")))
}

/// How kernel `k` is launched: (grid, block, dynamic shared bytes). `extent` is its outermost
/// loop's extent in the runtime's form.
pub fn launch(k: &Kernel, extent: &SymExpr) -> ([SymExpr; 3], [u32; 3], u32) {
    let one = SymExpr::Const(1);
    if k.root.sched == Sched::Parallel {
        let blocks = SymExpr::FloorDiv(
            Box::new(SymExpr::Add(vec![
                extent.clone(),
                SymExpr::Const(i64::from(BLOCK) - 1),
            ])),
            i64::from(BLOCK),
        );
        ([blocks, one.clone(), one], [BLOCK, 1, 1], 0)
    } else {
        ([one.clone(), one.clone(), one], [1, 1, 1], 0)
    }
}
