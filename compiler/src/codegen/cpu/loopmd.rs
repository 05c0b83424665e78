//! Loop metadata: a loop's schedule tag (`Sched::Vector`, `Sched::Unroll`) as the
//! `!llvm.loop` properties LLVM's vectoriser and unroller read, attached to the loop's
//! back-edge branch.
//!
//! A loop ID must be a distinct node whose first operand is itself, which inkwell's safe API
//! cannot build, so this file calls the LLVM C API (re-exported by inkwell as `llvm_sys`):
//! a temporary node stands for the self-reference until the node exists, then is replaced by
//! it (a self-referencing node is made distinct by LLVM).

use super::build::R;
use crate::kernel::Sched;
use inkwell::context::{AsContextRef, Context};
use inkwell::llvm_sys::core::{
    LLVMGetMDKindIDInContext, LLVMMDNodeInContext2, LLVMMDStringInContext2,
    LLVMMetadataAsValue, LLVMSetMetadata, LLVMValueAsMetadata,
};
use inkwell::llvm_sys::debuginfo::{LLVMMetadataReplaceAllUsesWith, LLVMTemporaryMDNode};
use inkwell::llvm_sys::prelude::LLVMMetadataRef;
use inkwell::values::{AsValueRef, InstructionValue};

/// The `!llvm.loop` properties of a schedule tag: (name, i32 or i1 operand). None for tags
/// that need no metadata.
fn properties(sched: Sched) -> Vec<(&'static str, Option<u32>)> {
    match sched {
        Sched::Serial | Sched::Parallel => Vec::new(),
        // The width is left to the vectoriser: the widest profitable for the target's
        // registers (with AVX-512, 16 f32 lanes under prefer-vector-width=512).
        Sched::Vector => vec![("llvm.loop.vectorize.enable", Some(1))],
        Sched::Unroll(_) => vec![("llvm.loop.unroll.full", None)],
    }
}

/// Attaches `sched`'s loop properties to `backedge`, the branch that closes the loop.
// unsafe: LLVM C API calls on live objects of `ctx` (see the SAFETY note inside).
#[allow(unsafe_code)]
pub(super) fn tag<'c>(ctx: &'c Context, backedge: InstructionValue<'c>, sched: Sched) -> R<()> {
    let props = properties(sched);
    if props.is_empty() {
        return Ok(());
    }
    let c = ctx.as_ctx_ref();
    let i1 = ctx.bool_type();
    // SAFETY: every reference passed is a live object of context `c` (the context outlives
    // this call, the branch belongs to one of its modules); string pointers come with their
    // lengths; the arrays outlive the calls that read them. The temporary node is replaced
    // (and thereby freed) before returning, as the C API requires.
    unsafe {
        let mut ops: Vec<LLVMMetadataRef> = vec![LLVMTemporaryMDNode(c, std::ptr::null_mut(), 0)];
        for (name, value) in props {
            let mut prop = vec![LLVMMDStringInContext2(c, name.as_ptr().cast(), name.len())];
            if let Some(v) = value {
                let k = i1.const_int(u64::from(v), false);
                prop.push(LLVMValueAsMetadata(k.as_value_ref()));
            }
            ops.push(LLVMMDNodeInContext2(c, prop.as_mut_ptr(), prop.len()));
        }
        let id = LLVMMDNodeInContext2(c, ops.as_mut_ptr(), ops.len());
        LLVMMetadataReplaceAllUsesWith(ops[0], id);
        let kind = "llvm.loop";
        let kind = LLVMGetMDKindIDInContext(c, kind.as_ptr().cast(), kind.len() as u32);
        LLVMSetMetadata(backedge.as_value_ref(), kind, LLVMMetadataAsValue(c, id));
    }
    Ok(())
}
