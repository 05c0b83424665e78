//! sin, cos and pow, inline in f64 (what the CPU's loops vectorise and what the GPU, which
//! has no libm, runs).
//!
//! sin and cos reduce x = k·π/2 + r, |r| ≤ π/4, with π/2 in four parts (the first two of 33
//! bits, so k·part is exact for |k| < 2^20; fdlibm's split) and sum the Taylor series of
//! sin r or cos r, then pick by the quadrant k mod 4. The reduction is exact to within the
//! last part's rounding for |x| < 2^20·π/2 ≈ 1.6·10^6; beyond that the result stays in
//! [−1, 1] but loses accuracy as |x| grows, and from |x| = 2^50 on it is NaN rather than a
//! meaningless number (libm's Payne–Hanek reduction is not done).
//!
//! pow is e^{y·ln|x|} with the sign of x for odd integer y and C99's special cases (pow(x, 0)
//! = 1 and pow(1, y) = 1 even for NaN; x < 0 with non-integer y is NaN; pow(−1, ±∞) = 1).
//! Its relative error is about |y·ln x|·2^−52 (ample for f32 results; f64 results with a
//! large |y·ln x| lose that many ulps).

use super::Math;
use crate::codegen::cpu::build::{R, llvm};
use inkwell::values::{FloatValue, IntValue};
use inkwell::{FloatPredicate, IntPredicate};

/// From this |x| on, sin and cos are NaN.
const TRIG_LIMIT: f64 = 1_125_899_906_842_624.0;

/// π/2 = P1 + P2 + P3 + P4 (P1 and P2 have 33 significant bits). The literals keep the digits
/// of the expansions they were cut from (more than an f64 holds; each parses to its part).
#[allow(clippy::excessive_precision)]
const PIO2_1: f64 = 1.570_796_326_734_125_614_17;
#[allow(clippy::excessive_precision)]
const PIO2_2: f64 = 6.077_100_506_303_965_976_6e-11;
#[allow(clippy::excessive_precision)]
const PIO2_3: f64 = 2.022_266_248_711_166_455_8e-21;
#[allow(clippy::excessive_precision)]
const PIO2_4: f64 = 8.478_427_660_368_899_569_97e-32;

/// The Taylor coefficients of (sin r − r)/r³ and (cos r − 1)/r² in r², to 1/17! and 1/18!
/// (the next terms are below 2^−60 relative for |r| ≤ π/4).
fn sin_coef() -> Vec<f64> {
    series(3, 8)
}

fn cos_coef() -> Vec<f64> {
    series(2, 9)
}

/// (−1)^j / (first + 2j)! for j < n.
fn series(first: u32, n: u32) -> Vec<f64> {
    (0..n)
        .map(|j| {
            let m = first + 2 * j;
            let f: f64 = (1..=m).map(f64::from).product();
            if j % 2 == 0 { -1.0 / f } else { 1.0 / f }
        })
        .collect()
}

impl<'c> Math<'_, 'c> {
    /// sin x (`shift` = 0) or cos x = sin(x + π/2) (`shift` = 1), in f64.
    fn sin_shifted(&self, x: FloatValue<'c>, shift: u64) -> R<FloatValue<'c>> {
        debug_assert!(!self.single, "sin and cos work in f64");
        // k = rint(x·2/π), clamped so that its integer conversion is defined.
        let kx = self.mul(x, self.c(std::f64::consts::FRAC_2_PI))?;
        let kx = self.clamp(kx, -1.0e15, 1.0e15)?;
        let kf = self.intr("llvm.rint", &[kx])?;
        let mut r = x;
        for p in [PIO2_1, PIO2_2, PIO2_3, PIO2_4] {
            r = self.fma(kf, self.c(-p), r)?;
        }
        let r2 = self.mul(r, r)?;
        let s = self.fma(self.mul(r, r2)?, self.poly(r2, &sin_coef())?, r)?;
        let c = self.fma(r2, self.poly(r2, &cos_coef())?, self.c(1.0))?;
        // The quadrant q = (k + shift) mod 4: sin, cos, −sin, −cos.
        let k = self
            .b
            .build_float_to_signed_int(kf, self.it, "")
            .map_err(llvm)?;
        let q = self
            .b
            .build_int_add(k, self.ic(shift as i64), "")
            .map_err(llvm)?;
        let bit = |m: i64| -> R<IntValue<'c>> {
            let a = self.b.build_and(q, self.ic(m), "").map_err(llvm)?;
            self.b
                .build_int_compare(IntPredicate::NE, a, self.ic(0), "")
                .map_err(llvm)
        };
        let v = self.sel(bit(1)?, c, s)?;
        let neg = self.b.build_float_neg(v, "").map_err(llvm)?;
        let y = self.sel(bit(2)?, neg, v)?;
        // ±∞, NaN and |x| ≥ 2^50 give NaN.
        let fin = self.cmp(
            FloatPredicate::OLT,
            self.intr("llvm.fabs", &[x])?,
            self.c(TRIG_LIMIT),
        )?;
        self.sel(fin, y, self.c(f64::NAN))
    }

    /// sin x in f64.
    pub fn sin(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let y = self.sin_shifted(x, 0)?;
        self.keep_nan_zero(x, y)
    }

    /// cos x in f64.
    pub fn cos(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        self.sin_shifted(x, 1)
    }

    /// x^y in f64 (C99 `pow`).
    pub fn pow(&self, x: FloatValue<'c>, y: FloatValue<'c>) -> R<FloatValue<'c>> {
        debug_assert!(!self.single, "pow works in f64");
        let ax = self.intr("llvm.fabs", &[x])?;
        let mag = self.exp(self.mul(y, self.log(ax)?)?)?;
        // y an integer (±∞ counts as an even one), and odd.
        let fy = self.intr("llvm.floor", &[y])?;
        let int = self.cmp(FloatPredicate::OEQ, fy, y)?;
        let half = self.intr("llvm.floor", &[self.mul(y, self.c(0.5))?])?;
        let odd_half = self.cmp(FloatPredicate::ONE, self.add(half, half)?, y)?;
        let odd = self.b.build_and(int, odd_half, "").map_err(llvm)?;
        let x_neg = self.cmp(
            FloatPredicate::OLT,
            self.intr("llvm.copysign", &[self.c(1.0), x])?,
            self.c(0.0),
        )?;
        let flip = self.b.build_and(x_neg, odd, "").map_err(llvm)?;
        let v = self.sel(flip, self.b.build_float_neg(mag, "").map_err(llvm)?, mag)?;
        // A finite x < 0 (not −0) with a finite non-integer y: NaN.
        let below = self
            .b
            .build_and(
                self.cmp(FloatPredicate::OLT, x, self.c(0.0))?,
                self.cmp(FloatPredicate::OGT, x, self.c(f64::NEG_INFINITY))?,
                "",
            )
            .map_err(llvm)?;
        let frac = self.cmp(FloatPredicate::ONE, fy, y)?;
        let bad = self.b.build_and(below, frac, "").map_err(llvm)?;
        let v = self.sel(bad, self.c(f64::NAN), v)?;
        // |x| = 1 with y = ±∞: 1.
        let one = self.cmp(FloatPredicate::OEQ, ax, self.c(1.0))?;
        let yinf = self.cmp(
            FloatPredicate::OEQ,
            self.intr("llvm.fabs", &[y])?,
            self.c(f64::INFINITY),
        )?;
        let v = self.sel(
            self.b.build_and(one, yinf, "").map_err(llvm)?,
            self.c(1.0),
            v,
        )?;
        // NaN operands: NaN, except pow(x, 0) = pow(1, y) = 1.
        let nan = self.cmp(FloatPredicate::UNO, x, y)?;
        let v = self.sel(nan, self.add(x, y)?, v)?;
        let y0 = self.cmp(FloatPredicate::OEQ, y, self.c(0.0))?;
        let x1 = self.cmp(FloatPredicate::OEQ, x, self.c(1.0))?;
        let unit = self.b.build_or(y0, x1, "").map_err(llvm)?;
        self.sel(unit, self.c(1.0), v)
    }
}

/// Adds `void seqc_math_pow(const double *x, const double *y, double *out, i64 n)` to
/// `module`: out[i] = pow(x[i], y[i]) with [`Math::pow`], for the accuracy tests.
pub(in crate::codegen::cpu) fn emit_pow_probe<'c>(
    ctx: &'c inkwell::context::Context,
    module: &inkwell::module::Module<'c>,
) -> R<()> {
    use inkwell::AddressSpace;
    let (ptr, i64t, f64t) = (
        ctx.ptr_type(AddressSpace::default()),
        ctx.i64_type(),
        ctx.f64_type(),
    );
    let fty = ctx
        .void_type()
        .fn_type(&[ptr.into(), ptr.into(), ptr.into(), i64t.into()], false);
    let f = module.add_function(
        "seqc_math_pow",
        fty,
        Some(inkwell::module::Linkage::External),
    );
    let arg = |i: u32| f.get_nth_param(i).expect("declared");
    let (xp, yp, op, n) = (
        arg(0).into_pointer_value(),
        arg(1).into_pointer_value(),
        arg(2).into_pointer_value(),
        arg(3).into_int_value(),
    );
    let b = ctx.create_builder();
    let (entry, head, body, exit) = (
        ctx.append_basic_block(f, "entry"),
        ctx.append_basic_block(f, "head"),
        ctx.append_basic_block(f, "body"),
        ctx.append_basic_block(f, "exit"),
    );
    b.position_at_end(entry);
    b.build_unconditional_branch(head).map_err(llvm)?;
    b.position_at_end(head);
    let phi = b.build_phi(i64t, "i").map_err(llvm)?;
    let i = phi.as_basic_value().into_int_value();
    let go = b
        .build_int_compare(IntPredicate::SLT, i, n, "")
        .map_err(llvm)?;
    b.build_conditional_branch(go, body, exit).map_err(llvm)?;
    b.position_at_end(body);
    let m = Math::new(ctx, module, &b, false);
    let load = |p| -> R<FloatValue<'c>> {
        let at = crate::codegen::cpu::emit::gep(&b, f64t.into(), p, i)?;
        Ok(b.build_load(f64t, at, "").map_err(llvm)?.into_float_value())
    };
    let v = m.pow(load(xp)?, load(yp)?)?;
    let at = crate::codegen::cpu::emit::gep(&b, f64t.into(), op, i)?;
    b.build_store(at, v).map_err(llvm)?;
    let next = b
        .build_int_add(i, i64t.const_int(1, false), "")
        .map_err(llvm)?;
    b.build_unconditional_branch(head).map_err(llvm)?;
    phi.add_incoming(&[(&i64t.const_zero(), entry), (&next, body)]);
    b.position_at_end(exit);
    b.build_return(None).map_err(llvm)?;
    Ok(())
}
