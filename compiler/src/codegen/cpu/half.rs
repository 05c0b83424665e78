//! f16 and bf16 in the kernels: rounding an f64 register to the format (one correct
//! rounding, ties to even: the interpreter's `interp/round.rs`, step for step), and the
//! conversions between an f64 register and the 16-bit storage bits. Everything is integer
//! and f64 arithmetic, so no target needs half-precision instructions or a runtime
//! library call (x86-64 without F16C would call `__truncdfhf2`; the GPU has no libraries).

use super::build::{R, llvm};
use crate::kernel::Ty;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::Module;
use inkwell::values::{FloatValue, IntValue};
use inkwell::{FloatPredicate, IntPredicate};

/// Fraction bits, least normal exponent and largest finite value of a 16-bit float type.
fn format(ty: Ty) -> (u64, i64, f64) {
    match ty {
        Ty::BF16 => (7, -126, 3.3895313892515355e38),
        _ => (10, -14, 65504.0),
    }
}

/// Emits f16/bf16 conversions with a builder positioned in a kernel.
pub(super) struct Half<'a, 'c> {
    pub ctx: &'c Context,
    pub module: &'a Module<'c>,
    pub b: &'a Builder<'c>,
}

impl<'c> Half<'_, 'c> {
    fn i64c(&self, v: u64) -> IntValue<'c> {
        self.ctx.i64_type().const_int(v, false)
    }

    fn bits(&self, x: FloatValue<'c>) -> R<IntValue<'c>> {
        Ok(self
            .b
            .build_bit_cast(x, self.ctx.i64_type(), "")
            .map_err(llvm)?
            .into_int_value())
    }

    fn float(&self, x: IntValue<'c>) -> R<FloatValue<'c>> {
        Ok(self
            .b
            .build_bit_cast(x, self.ctx.f64_type(), "")
            .map_err(llvm)?
            .into_float_value())
    }

    fn intrinsic(&self, name: &str, args: &[FloatValue<'c>]) -> R<FloatValue<'c>> {
        let f = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[self.ctx.f64_type().into()]))
            .ok_or_else(|| llvm(format!("no declaration of {name}")))?;
        let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
        self.b
            .build_call(f, &args, "")
            .map_err(llvm)?
            .try_as_basic_value()
            .basic()
            .map(|v| v.into_float_value())
            .ok_or_else(|| llvm(format!("{name} returned nothing")))
    }

    /// `x` rounded to `ty` (f16 or bf16), still an f64: |x| scaled so that the last fraction
    /// bit weighs 1 (the exponent clamped at the least normal one, for subnormals), rounded
    /// to an integer by adding and subtracting 2^52, scaled back, +∞ above the largest
    /// finite, the sign copied back. Zero, ±∞ and NaN come through unchanged.
    pub fn round(&self, x: FloatValue<'c>, ty: Ty) -> R<FloatValue<'c>> {
        let (frac, emin, max) = format(ty);
        let (b, f64t, i64t) = (self.b, self.ctx.f64_type(), self.ctx.i64_type());
        let a = self.intrinsic("llvm.fabs", &[x])?;
        let raw = b
            .build_right_shift(self.bits(a)?, self.i64c(52), false, "")
            .map_err(llvm)?;
        let e = b.build_int_sub(raw, self.i64c(1023), "").map_err(llvm)?;
        let lo = i64t.const_int(emin as u64, true);
        let small = b
            .build_int_compare(IntPredicate::SLT, e, lo, "")
            .map_err(llvm)?;
        let e = b
            .build_select(small, lo, e, "")
            .map_err(llvm)?
            .into_int_value();
        let pow2 = |biased: IntValue<'c>| -> R<FloatValue<'c>> {
            let sh = b
                .build_left_shift(biased, self.i64c(52), "")
                .map_err(llvm)?;
            self.float(sh)
        };
        let scale = pow2(
            b.build_int_sub(self.i64c(1023 + frac), e, "")
                .map_err(llvm)?,
        )?;
        let unscale = pow2(
            b.build_int_add(e, self.i64c(1023 - frac), "")
                .map_err(llvm)?,
        )?;
        let big = f64t.const_float(4503599627370496.0);
        let y = b.build_float_mul(a, scale, "").map_err(llvm)?;
        let y = b.build_float_add(y, big, "").map_err(llvm)?;
        let y = b.build_float_sub(y, big, "").map_err(llvm)?;
        let r = b.build_float_mul(y, unscale, "").map_err(llvm)?;
        let over = b
            .build_float_compare(FloatPredicate::OGT, r, f64t.const_float(max), "")
            .map_err(llvm)?;
        let r = b
            .build_select(over, f64t.const_float(f64::INFINITY), r, "")
            .map_err(llvm)?
            .into_float_value();
        self.intrinsic("llvm.copysign", &[r, x])
    }

    /// The f64 value of 16 storage bits of `ty`. bf16 is the top half of an f32; an f16
    /// with a biased exponent in 1..=30 is rebiased into an f64, a subnormal is its
    /// fraction · 2^−24, exponent 31 is ±∞ (fraction 0) or NaN.
    pub fn decode(&self, h: IntValue<'c>, ty: Ty) -> R<FloatValue<'c>> {
        let (b, i32t, i64t, f64t) = (
            self.b,
            self.ctx.i32_type(),
            self.ctx.i64_type(),
            self.ctx.f64_type(),
        );
        if ty == Ty::BF16 {
            let w = b.build_int_z_extend(h, i32t, "").map_err(llvm)?;
            let w = b
                .build_left_shift(w, i32t.const_int(16, false), "")
                .map_err(llvm)?;
            let f = b
                .build_bit_cast(w, self.ctx.f32_type(), "")
                .map_err(llvm)?
                .into_float_value();
            return b.build_float_ext(f, f64t, "").map_err(llvm);
        }
        let w = b.build_int_z_extend(h, i64t, "").map_err(llvm)?;
        let m = b.build_and(w, self.i64c(0x7fff), "").map_err(llvm)?;
        let sign = b.build_and(w, self.i64c(0x8000), "").map_err(llvm)?;
        let sign = b.build_left_shift(sign, self.i64c(48), "").map_err(llvm)?;
        // Normal: fraction into the f64's top fraction bits, exponent rebiased 15 → 1023.
        let normal = b.build_left_shift(m, self.i64c(42), "").map_err(llvm)?;
        let normal = b
            .build_int_add(normal, self.i64c((1023 - 15) << 52), "")
            .map_err(llvm)?;
        let normal = self.float(normal)?;
        let sub = b.build_unsigned_int_to_float(m, f64t, "").map_err(llvm)?;
        let sub = b
            .build_float_mul(sub, f64t.const_float(2f64.powi(-24)), "")
            .map_err(llvm)?;
        let is_sub = b
            .build_int_compare(IntPredicate::ULT, m, self.i64c(0x400), "")
            .map_err(llvm)?;
        let v = b.build_select(is_sub, sub, normal, "").map_err(llvm)?;
        let is_inf = b
            .build_int_compare(IntPredicate::EQ, m, self.i64c(0x7c00), "")
            .map_err(llvm)?;
        let v = b
            .build_select(
                is_inf,
                f64t.const_float(f64::INFINITY),
                v.into_float_value(),
                "",
            )
            .map_err(llvm)?;
        let is_nan = b
            .build_int_compare(IntPredicate::UGT, m, self.i64c(0x7c00), "")
            .map_err(llvm)?;
        let v = b
            .build_select(is_nan, f64t.const_float(f64::NAN), v.into_float_value(), "")
            .map_err(llvm)?;
        let v = b
            .build_or(self.bits(v.into_float_value())?, sign, "")
            .map_err(llvm)?;
        self.float(v)
    }

    /// The 16 storage bits of `ty` for `x`, which is rounded to `ty` first. bf16: the top
    /// half of the (exact) f32. f16: sign, then a subnormal's fraction is |x| · 2^24 (an
    /// integer below 2^10), a normal's exponent rebiased 1023 → 15 over the top 10 fraction
    /// bits, ∞ 0x7c00, NaN 0x7e00.
    pub fn encode(&self, x: FloatValue<'c>, ty: Ty) -> R<IntValue<'c>> {
        let x = self.round(x, ty)?;
        let (b, i16t, i32t, f64t) = (
            self.b,
            self.ctx.i16_type(),
            self.ctx.i32_type(),
            self.ctx.f64_type(),
        );
        if ty == Ty::BF16 {
            let f = b
                .build_float_trunc(x, self.ctx.f32_type(), "")
                .map_err(llvm)?;
            let w = b
                .build_bit_cast(f, i32t, "")
                .map_err(llvm)?
                .into_int_value();
            let w = b
                .build_right_shift(w, i32t.const_int(16, false), false, "")
                .map_err(llvm)?;
            return b.build_int_truncate(w, i16t, "").map_err(llvm);
        }
        let bits = self.bits(x)?;
        let sign = b
            .build_right_shift(bits, self.i64c(48), false, "")
            .map_err(llvm)?;
        let sign = b.build_and(sign, self.i64c(0x8000), "").map_err(llvm)?;
        let a = self.intrinsic("llvm.fabs", &[x])?;
        let abits = self.bits(a)?;
        let normal = b
            .build_int_sub(abits, self.i64c((1023 - 15) << 52), "")
            .map_err(llvm)?;
        let normal = b
            .build_right_shift(normal, self.i64c(42), false, "")
            .map_err(llvm)?;
        let small = b
            .build_float_compare(FloatPredicate::OLT, a, f64t.const_float(2f64.powi(-14)), "")
            .map_err(llvm)?;
        let scaled = b
            .build_float_mul(a, f64t.const_float(2f64.powi(24)), "")
            .map_err(llvm)?;
        let sub = b
            .build_float_to_unsigned_int(scaled, self.ctx.i64_type(), "")
            .map_err(llvm)?;
        let v = b
            .build_select(small, sub, normal, "")
            .map_err(llvm)?
            .into_int_value();
        let inf = b
            .build_float_compare(FloatPredicate::OEQ, a, f64t.const_float(f64::INFINITY), "")
            .map_err(llvm)?;
        let v = b
            .build_select(inf, self.i64c(0x7c00), v, "")
            .map_err(llvm)?
            .into_int_value();
        let nan = b
            .build_float_compare(FloatPredicate::UNO, a, a, "")
            .map_err(llvm)?;
        let v = b
            .build_select(nan, self.i64c(0x7e00), v, "")
            .map_err(llvm)?
            .into_int_value();
        let v = b.build_or(v, sign, "").map_err(llvm)?;
        b.build_int_truncate(v, i16t, "").map_err(llvm)
    }
}
