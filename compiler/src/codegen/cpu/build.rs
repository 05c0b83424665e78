//! Helpers the CPU code generators share: the error conversion, setting an access's
//! alignment, and 64-bit integer arithmetic and branches on a function's builder (`IntOps`).

use super::CodegenError;
use inkwell::IntPredicate;
use inkwell::builder::Builder;
use inkwell::types::IntType;
use inkwell::values::{BasicValue, FunctionValue, IntValue, PointerValue};

pub(super) type R<T> = Result<T, CodegenError>;

/// An LLVM builder error as a `CodegenError`.
pub(super) fn llvm<E: std::fmt::Display>(e: E) -> CodegenError {
    CodegenError::Llvm(e.to_string())
}

/// Sets the alignment of a load or store.
pub(super) fn set_align<'c>(v: &impl BasicValue<'c>, align: u32) -> R<()> {
    if let Some(i) = v.as_instruction_value() {
        i.set_alignment(align).map_err(llvm)?;
    }
    Ok(())
}

/// Signed 64-bit integer arithmetic and the function's arguments, for a generator that
/// holds a builder positioned in `func`.
pub(super) trait IntOps<'c> {
    fn builder(&self) -> &Builder<'c>;
    fn func(&self) -> FunctionValue<'c>;
    fn i64t(&self) -> IntType<'c>;

    fn int(&self, v: u64) -> IntValue<'c> {
        self.i64t().const_int(v, false)
    }

    /// Integer argument `i` of the function.
    fn iarg(&self, i: u32) -> IntValue<'c> {
        self.func()
            .get_nth_param(i)
            .expect("declared")
            .into_int_value()
    }

    /// Pointer argument `i` of the function.
    fn parg(&self, i: u32) -> PointerValue<'c> {
        self.func()
            .get_nth_param(i)
            .expect("declared")
            .into_pointer_value()
    }

    fn add(&self, a: IntValue<'c>, b: IntValue<'c>) -> R<IntValue<'c>> {
        self.builder().build_int_add(a, b, "").map_err(llvm)
    }

    fn mul(&self, a: IntValue<'c>, b: IntValue<'c>) -> R<IntValue<'c>> {
        self.builder().build_int_mul(a, b, "").map_err(llvm)
    }

    fn sub(&self, a: IntValue<'c>, b: IntValue<'c>) -> R<IntValue<'c>> {
        self.builder().build_int_sub(a, b, "").map_err(llvm)
    }

    fn lt(&self, a: IntValue<'c>, b: IntValue<'c>) -> R<IntValue<'c>> {
        self.builder()
            .build_int_compare(IntPredicate::SLT, a, b, "")
            .map_err(llvm)
    }

    fn le(&self, a: IntValue<'c>, b: IntValue<'c>) -> R<IntValue<'c>> {
        self.builder()
            .build_int_compare(IntPredicate::SLE, a, b, "")
            .map_err(llvm)
    }

    fn min(&self, a: IntValue<'c>, b: IntValue<'c>) -> R<IntValue<'c>> {
        let c = self.lt(a, b)?;
        Ok(self
            .builder()
            .build_select(c, a, b, "")
            .map_err(llvm)?
            .into_int_value())
    }

    /// `if cond { then } else { other }`.
    fn branch(
        &self,
        cond: IntValue<'c>,
        then: impl FnOnce(&Self) -> R<()>,
        other: impl FnOnce(&Self) -> R<()>,
    ) -> R<()>
    where
        Self: Sized,
    {
        let (f, b) = (self.func(), self.builder());
        let ctx = f.get_type().get_context();
        let (t, e, end) = (
            ctx.append_basic_block(f, "then"),
            ctx.append_basic_block(f, "else"),
            ctx.append_basic_block(f, "endif"),
        );
        b.build_conditional_branch(cond, t, e).map_err(llvm)?;
        b.position_at_end(t);
        then(self)?;
        b.build_unconditional_branch(end).map_err(llvm)?;
        b.position_at_end(e);
        other(self)?;
        b.build_unconditional_branch(end).map_err(llvm)?;
        b.position_at_end(end);
        Ok(())
    }
}
