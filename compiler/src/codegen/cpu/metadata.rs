//! LLVM metadata the kernels carry: a loop's schedule tag (`Sched::Vector`, `Sched::Unroll`)
//! as the `!llvm.loop` properties LLVM's vectoriser and unroller read, and one alias scope
//! per buffer, so that LLVM knows two buffers of a kernel never overlap.
//!
//! Why the scopes are sound: a kernel only touches buffers live at its step, and the runtime
//! places buffers live at the same step apart (`runtime/src/model/plan.rs`); inputs, weights,
//! seeded fills and caller-owned outputs are separate allocations, and only arena buffers and
//! outputs are written. Accesses through the same buffer share its scope, so in-place
//! updates stay ordered. Block products, recurrences and attention tiles emit accesses
//! without scopes, which LLVM treats as possibly aliasing anything.
//!
//! A loop ID or a scope must be a distinct node whose first operand is itself, which
//! inkwell's safe API cannot build, so this file calls the LLVM C API (re-exported by inkwell
//! as `llvm_sys`): a temporary node stands for the self-reference until the node exists,
//! then is replaced by it (LLVM makes a self-referencing node distinct).

use super::build::R;
use crate::kernel::Sched;
use inkwell::context::{AsContextRef, Context};
use inkwell::llvm_sys::core::{
    LLVMGetMDKindIDInContext, LLVMMDNodeInContext2, LLVMMDStringInContext2, LLVMMetadataAsValue,
    LLVMSetMetadata, LLVMValueAsMetadata,
};
use inkwell::llvm_sys::debuginfo::{LLVMMetadataReplaceAllUsesWith, LLVMTemporaryMDNode};
use inkwell::llvm_sys::prelude::{LLVMContextRef, LLVMMetadataRef, LLVMValueRef};
use inkwell::values::{AsValueRef, InstructionValue};

/// The `!llvm.loop` properties of a schedule tag: (name, i1 operand). Empty for tags that
/// need no metadata.
fn properties(sched: Sched) -> Vec<(&'static str, Option<bool>)> {
    match sched {
        Sched::Serial | Sched::Parallel => Vec::new(),
        // The width is left to the vectoriser: the widest profitable for the target's
        // registers (with AVX-512, 16 f32 lanes under prefer-vector-width=512).
        Sched::Vector => vec![("llvm.loop.vectorize.enable", Some(true))],
        Sched::Unroll(_) => vec![("llvm.loop.unroll.full", None)],
    }
}

/// The alias metadata of one buffer's accesses in one kernel.
#[derive(Clone, Copy)]
pub(super) struct Scope {
    /// `!{scope}`.
    scope: LLVMValueRef,
    /// `!{every other buffer's scope}`.
    noalias: LLVMValueRef,
}

/// `!name` as metadata.
// unsafe: an LLVM C API call (see the SAFETY note inside).
#[allow(unsafe_code)]
fn string(c: LLVMContextRef, name: &str) -> LLVMMetadataRef {
    // SAFETY: `c` is a live context; the pointer comes with its length.
    unsafe { LLVMMDStringInContext2(c, name.as_ptr().cast(), name.len()) }
}

/// `!{ops…}`, uniqued.
// unsafe: an LLVM C API call (see the SAFETY note inside).
#[allow(unsafe_code)]
fn node(c: LLVMContextRef, ops: &mut [LLVMMetadataRef]) -> LLVMMetadataRef {
    // SAFETY: `c` is a live context and `ops` live metadata of it, read during the call.
    unsafe { LLVMMDNodeInContext2(c, ops.as_mut_ptr(), ops.len()) }
}

/// `distinct !{self, ops…}`.
// unsafe: an LLVM C API call (see the SAFETY note inside).
#[allow(unsafe_code)]
fn distinct(c: LLVMContextRef, ops: &[LLVMMetadataRef]) -> LLVMMetadataRef {
    // SAFETY: `c` is a live context and `ops` live metadata of it. The temporary node is
    // replaced (and thereby freed) before returning, as the C API requires.
    unsafe {
        let tmp = LLVMTemporaryMDNode(c, std::ptr::null_mut(), 0);
        let mut all = vec![tmp];
        all.extend_from_slice(ops);
        let id = node(c, &mut all);
        LLVMMetadataReplaceAllUsesWith(tmp, id);
        id
    }
}

/// Attaches metadata `md` as `kind` to `inst`.
// unsafe: an LLVM C API call (see the SAFETY note inside).
#[allow(unsafe_code)]
fn attach(c: LLVMContextRef, inst: LLVMValueRef, kind: &str, md: LLVMValueRef) {
    // SAFETY: `c` is a live context, `inst` an instruction of one of its modules and `md`
    // metadata of it; the kind name comes with its length.
    unsafe {
        let k = LLVMGetMDKindIDInContext(c, kind.as_ptr().cast(), kind.len() as u32);
        LLVMSetMetadata(inst, k, md);
    }
}

// unsafe: an LLVM C API call (see the SAFETY note inside).
#[allow(unsafe_code)]
fn as_value(c: LLVMContextRef, md: LLVMMetadataRef) -> LLVMValueRef {
    // SAFETY: `c` is a live context and `md` metadata of it.
    unsafe { LLVMMetadataAsValue(c, md) }
}

/// Attaches `sched`'s loop properties to `backedge`, the branch that closes the loop.
// unsafe: an LLVM C API call (see the SAFETY note inside).
#[allow(unsafe_code)]
pub(super) fn tag_loop<'c>(
    ctx: &'c Context,
    backedge: InstructionValue<'c>,
    sched: Sched,
) -> R<()> {
    let props = properties(sched);
    if props.is_empty() {
        return Ok(());
    }
    let c = ctx.as_ctx_ref();
    let mut ops = Vec::new();
    for (name, value) in props {
        let mut prop = vec![string(c, name)];
        if let Some(v) = value {
            let k = ctx.bool_type().const_int(u64::from(v), false);
            // SAFETY: a live constant of context `c`.
            prop.push(unsafe { LLVMValueAsMetadata(k.as_value_ref()) });
        }
        ops.push(node(c, &mut prop));
    }
    let id = distinct(c, &ops);
    attach(c, backedge.as_value_ref(), "llvm.loop", as_value(c, id));
    Ok(())
}

/// One scope per buffer in `used` (by buffer number), in a domain of kernel `kernel`'s own.
pub(super) fn scopes(ctx: &Context, kernel: &str, used: &[bool]) -> Vec<Option<Scope>> {
    let c = ctx.as_ctx_ref();
    let domain = distinct(c, &[string(c, kernel)]);
    let ids: Vec<Option<LLVMMetadataRef>> = used
        .iter()
        .enumerate()
        .map(|(i, u)| u.then(|| distinct(c, &[domain, string(c, &format!("{kernel}.b{i}"))])))
        .collect();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let id = (*id)?;
            let mut others: Vec<LLVMMetadataRef> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, o)| *o)
                .collect();
            Some(Scope {
                scope: as_value(c, node(c, &mut [id])),
                noalias: as_value(c, node(c, &mut others)),
            })
        })
        .collect()
}

/// Marks `access`, a load or store of the buffer whose scope is `s`.
pub(super) fn mark(ctx: &Context, access: InstructionValue<'_>, s: Scope) {
    let c = ctx.as_ctx_ref();
    attach(c, access.as_value_ref(), "alias.scope", s.scope);
    attach(c, access.as_value_ref(), "noalias", s.noalias);
}
