//! The PTX entries: for each kernel `k`, its scalar body is emitted as the internal device
//! function `k_body` with the CPU ABI, and the entry `k(bufs, dims, extent, status)` (calling
//! convention PTX_Kernel) computes the global thread index g = ctaid.x · ntid.x + tid.x and
//! runs iteration g of a parallel outermost loop (g < extent), or, in thread 0, the whole
//! range of a serial one. The body is always inlined into its entry.

use super::CodegenError;
use crate::codegen::cpu::emit_program;
use crate::kernel::{Program, Sched};
use inkwell::AddressSpace;
use inkwell::IntPredicate;
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::values::IntValue;

/// LLVM's calling convention number for PTX kernels (`CallingConv::PTX_Kernel`).
const PTX_KERNEL: u32 = 71;

fn llvm<E: std::fmt::Display>(e: E) -> CodegenError {
    CodegenError::Llvm(e.to_string())
}

/// Adds every kernel of `p`, body and entry, to `module`.
pub(super) fn emit<'c>(
    ctx: &'c Context,
    module: &Module<'c>,
    p: &Program,
) -> Result<(), CodegenError> {
    let mut bodies = p.clone();
    for k in &mut bodies.kernels {
        k.name = format!("{}_body", k.name);
    }
    // The vector width matters only to the CPU block statements, which a GPU program lacks.
    emit_program(ctx, module, &bodies, 1)?;
    let inline = Attribute::get_named_enum_kind_id("alwaysinline");
    let ptr = ctx.ptr_type(AddressSpace::default());
    let (i32t, i64t) = (ctx.i32_type(), ctx.i64_type());
    let sreg = |name: &str| {
        module.get_function(name).unwrap_or_else(|| {
            module.add_function(name, i32t.fn_type(&[], false), Some(Linkage::External))
        })
    };
    let (tid, ctaid, ntid) = (
        sreg("llvm.nvvm.read.ptx.sreg.tid.x"),
        sreg("llvm.nvvm.read.ptx.sreg.ctaid.x"),
        sreg("llvm.nvvm.read.ptx.sreg.ntid.x"),
    );
    for (k, kb) in p.kernels.iter().zip(&bodies.kernels) {
        let body = module
            .get_function(&kb.name)
            .ok_or_else(|| CodegenError::Llvm(format!("no function {}", kb.name)))?;
        body.set_linkage(Linkage::Internal);
        body.add_attribute(AttributeLoc::Function, ctx.create_enum_attribute(inline, 0));
        let fty = ctx
            .void_type()
            .fn_type(&[ptr.into(), ptr.into(), i64t.into(), ptr.into()], false);
        let f = module.add_function(&k.name, fty, Some(Linkage::External));
        f.set_call_conventions(PTX_KERNEL);
        let b = ctx.create_builder();
        let (entry, run, done) = (
            ctx.append_basic_block(f, "entry"),
            ctx.append_basic_block(f, "run"),
            ctx.append_basic_block(f, "done"),
        );
        b.position_at_end(entry);
        let arg = |i: u32| f.get_nth_param(i).expect("declared");
        let (bufs, dims, extent, status) = (arg(0), arg(1), arg(2).into_int_value(), arg(3));
        let read = |s| -> Result<IntValue<'c>, CodegenError> {
            let v = b.build_call(s, &[], "").map_err(llvm)?;
            let v = v
                .try_as_basic_value()
                .basic()
                .ok_or_else(|| CodegenError::Llvm("a special register read gave nothing".into()))?
                .into_int_value();
            b.build_int_z_extend(v, i64t, "").map_err(llvm)
        };
        let g = b
            .build_int_add(
                b.build_int_mul(read(ctaid)?, read(ntid)?, "")
                    .map_err(llvm)?,
                read(tid)?,
                "g",
            )
            .map_err(llvm)?;
        let (go, begin, end) = if k.root.sched == Sched::Parallel {
            let go = b
                .build_int_compare(IntPredicate::SLT, g, extent, "")
                .map_err(llvm)?;
            let next = b
                .build_int_add(g, i64t.const_int(1, false), "")
                .map_err(llvm)?;
            (go, g, next)
        } else {
            let go = b
                .build_int_compare(IntPredicate::EQ, g, i64t.const_zero(), "")
                .map_err(llvm)?;
            (go, i64t.const_zero(), extent)
        };
        b.build_conditional_branch(go, run, done).map_err(llvm)?;
        b.position_at_end(run);
        b.build_call(
            body,
            &[
                bufs.into(),
                dims.into(),
                begin.into(),
                end.into(),
                status.into(),
            ],
            "",
        )
        .map_err(llvm)?;
        b.build_unconditional_branch(done).map_err(llvm)?;
        b.position_at_end(done);
        b.build_return(None).map_err(llvm)?;
    }
    Ok(())
}
