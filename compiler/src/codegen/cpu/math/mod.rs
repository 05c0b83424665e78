//! Elementary functions emitted inline as LLVM IR (range reduction + polynomial), so that
//! LLVM's loop vectoriser can widen the loops that use them (a libm call stays scalar).
//! Each function works in one float type, f32 or f64, with polynomials long enough for that
//! precision; `erf` always works in f64. Special values follow libm: NaN stays NaN, ±0 keeps
//! its sign where the function is odd, overflow gives ±∞ and underflow 0 (or −1 for expm1).
//!
//! The methods: exp and expm1 reduce x = k·ln2 + r with |r| ≤ ln2/2 (ln2 split in two parts
//! so that k·hi is exact) and sum the Taylor series of e^r (or e^r − 1); log splits off the
//! binary exponent, keeps the mantissa m in [√½, √2) and sums log m = 2·atanh(s),
//! s = (m − 1)/(m + 1); log1p corrects the rounding of 1 + x; tanh is e/(e + 2) with
//! e = expm1(2|x|) and x's sign; erf sums its odd series below ½ and, on [½, 6), a Taylor
//! expansion about the middle of the interval of width ½ that holds x (coefficients from
//! the Hermite polynomials, computed here, read from a constant table).

use super::CodegenError;
use crate::ir::UnaryOp;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{FloatType, IntType};
use inkwell::values::{BasicValue, FloatValue, IntValue};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};

use super::build::{R, llvm};

mod trig;

pub(super) use trig::emit_pow_probe;

/// ln 2 as hi + lo: hi has few significant bits (k·hi is exact for every k used), lo is the
/// rest of ln 2 rounded to the working precision.
const LN2_HI_64: f64 = 0.693_146_705_627_441_4;
const LN2_LO_64: f64 = 4.749_325_039_031_672_6e-7;
const LN2_HI_32: f64 = 0.693_115_234_375;
const LN2_LO_32: f64 = 3.194_618_329_871_446e-5;

/// erf's Taylor pieces: centres 0.75, 1.25, …, 5.75 (width ½), `ERF_DEG` + 1 coefficients.
const ERF_PIECES: usize = 11;
const ERF_DEG: usize = 18;

/// Emits elementary functions in one float type with a builder positioned in a function.
pub(super) struct Math<'a, 'c> {
    pub ctx: &'c Context,
    pub module: &'a Module<'c>,
    pub b: &'a Builder<'c>,
    /// The working type (f32 or f64) and the integer type of its bits.
    t: FloatType<'c>,
    it: IntType<'c>,
    single: bool,
}

impl<'a, 'c> Math<'a, 'c> {
    /// A generator working in f32 (`single`) or f64.
    pub fn new(ctx: &'c Context, module: &'a Module<'c>, b: &'a Builder<'c>, single: bool) -> Self {
        let (t, it) = if single {
            (ctx.f32_type(), ctx.i32_type())
        } else {
            (ctx.f64_type(), ctx.i64_type())
        };
        Math {
            ctx,
            module,
            b,
            t,
            it,
            single,
        }
    }

    /// The working type.
    pub fn ty(&self) -> FloatType<'c> {
        self.t
    }

    fn c(&self, v: f64) -> FloatValue<'c> {
        self.t.const_float(v)
    }

    fn ic(&self, v: i64) -> IntValue<'c> {
        self.it.const_int(v as u64, true)
    }

    fn add(&self, a: FloatValue<'c>, b: FloatValue<'c>) -> R<FloatValue<'c>> {
        self.b.build_float_add(a, b, "").map_err(llvm)
    }

    fn sub(&self, a: FloatValue<'c>, b: FloatValue<'c>) -> R<FloatValue<'c>> {
        self.b.build_float_sub(a, b, "").map_err(llvm)
    }

    fn mul(&self, a: FloatValue<'c>, b: FloatValue<'c>) -> R<FloatValue<'c>> {
        self.b.build_float_mul(a, b, "").map_err(llvm)
    }

    fn div(&self, a: FloatValue<'c>, b: FloatValue<'c>) -> R<FloatValue<'c>> {
        self.b.build_float_div(a, b, "").map_err(llvm)
    }

    fn cmp(&self, p: FloatPredicate, a: FloatValue<'c>, b: FloatValue<'c>) -> R<IntValue<'c>> {
        self.b.build_float_compare(p, a, b, "").map_err(llvm)
    }

    fn sel(&self, c: IntValue<'c>, a: FloatValue<'c>, b: FloatValue<'c>) -> R<FloatValue<'c>> {
        Ok(self
            .b
            .build_select(c, a, b, "")
            .map_err(llvm)?
            .into_float_value())
    }

    fn isel(&self, c: IntValue<'c>, a: IntValue<'c>, b: IntValue<'c>) -> R<IntValue<'c>> {
        Ok(self
            .b
            .build_select(c, a, b, "")
            .map_err(llvm)?
            .into_int_value())
    }

    /// A call of the LLVM intrinsic `name` overloaded on the working type.
    fn intr(&self, name: &str, args: &[FloatValue<'c>]) -> R<FloatValue<'c>> {
        let f = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[self.t.into()]))
            .ok_or_else(|| CodegenError::Llvm(format!("no intrinsic {name}")))?;
        let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
        self.b
            .build_call(f, &args, "")
            .map_err(llvm)?
            .try_as_basic_value()
            .basic()
            .map(|v| v.into_float_value())
            .ok_or_else(|| CodegenError::Llvm(format!("{name} returned nothing")))
    }

    /// a·b + c, fused where the target has FMA.
    fn fma(&self, a: FloatValue<'c>, b: FloatValue<'c>, c: FloatValue<'c>) -> R<FloatValue<'c>> {
        self.intr("llvm.fmuladd", &[a, b, c])
    }

    /// Σ coef[i]·x^i by Horner's rule.
    fn poly(&self, x: FloatValue<'c>, coef: &[f64]) -> R<FloatValue<'c>> {
        let mut acc = self.c(coef[coef.len() - 1]);
        for &a in coef[..coef.len() - 1].iter().rev() {
            acc = self.fma(acc, x, self.c(a))?;
        }
        Ok(acc)
    }

    fn is_nan(&self, x: FloatValue<'c>) -> R<IntValue<'c>> {
        self.cmp(FloatPredicate::UNO, x, x)
    }

    /// `x` where `x` is NaN or ±0, else `r` (keeps NaN payloads and the sign of zero).
    fn keep_nan_zero(&self, x: FloatValue<'c>, r: FloatValue<'c>) -> R<FloatValue<'c>> {
        let z = self.cmp(FloatPredicate::UEQ, x, self.c(0.0))?;
        self.sel(z, x, r)
    }

    /// Mantissa bits of the working type.
    fn mant(&self) -> i64 {
        if self.single { 23 } else { 52 }
    }

    fn bias(&self) -> i64 {
        if self.single { 127 } else { 1023 }
    }

    /// 2^k for an integer k in the normal exponent range.
    fn pow2(&self, k: IntValue<'c>) -> R<FloatValue<'c>> {
        let e = self
            .b
            .build_int_add(k, self.ic(self.bias()), "")
            .map_err(llvm)?;
        let bits = self
            .b
            .build_left_shift(e, self.ic(self.mant()), "")
            .map_err(llvm)?;
        Ok(self
            .b
            .build_bit_cast(bits, self.t, "")
            .map_err(llvm)?
            .into_float_value())
    }

    /// x = k·ln2 + r: (k as float, k as int, r), with x already clamped to a finite range.
    fn reduce(&self, x: FloatValue<'c>) -> R<(FloatValue<'c>, IntValue<'c>, FloatValue<'c>)> {
        let (hi, lo) = if self.single {
            (LN2_HI_32, LN2_LO_32)
        } else {
            (LN2_HI_64, LN2_LO_64)
        };
        let kx = self.mul(x, self.c(std::f64::consts::LOG2_E))?;
        let kf = self.intr("llvm.rint", &[kx])?;
        let r = self.fma(kf, self.c(-hi), x)?;
        let r = self.fma(kf, self.c(-lo), r)?;
        let ki = self
            .b
            .build_float_to_signed_int(kf, self.it, "")
            .map_err(llvm)?;
        Ok((kf, ki, r))
    }

    /// 1/n! for n in 0..=deg.
    fn inv_fact(deg: usize) -> Vec<f64> {
        let mut v = vec![1.0f64];
        for n in 1..=deg {
            v.push(v[n - 1] / n as f64);
        }
        v
    }

    /// The degree of e^r's series for |r| ≤ ln2/2 in the working precision.
    fn exp_deg(&self) -> usize {
        if self.single { 7 } else { 13 }
    }

    /// `x` clamped to [lo, hi] with selects (a NaN passes through).
    fn clamp(&self, x: FloatValue<'c>, lo: f64, hi: f64) -> R<FloatValue<'c>> {
        let big = self.cmp(FloatPredicate::OGT, x, self.c(hi))?;
        let x = self.sel(big, self.c(hi), x)?;
        let small = self.cmp(FloatPredicate::OLT, x, self.c(lo))?;
        self.sel(small, self.c(lo), x)
    }

    /// e^x.
    pub fn exp(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        // Beyond these e^x is ∞ or 0 in the working type; within them k stays in range.
        let (lo, hi) = if self.single {
            (-104.0, 89.0)
        } else {
            (-746.0, 710.0)
        };
        let xc = self.clamp(x, lo, hi)?;
        let (_, k, r) = self.reduce(xc)?;
        let p = self.poly(r, &Self::inv_fact(self.exp_deg()))?;
        // 2^k as 2^k1 · 2^k2, both normal, so that results near overflow and subnormal
        // results come out right.
        let k1 = self
            .b
            .build_right_shift(k, self.ic(1), true, "")
            .map_err(llvm)?;
        let k2 = self.b.build_int_sub(k, k1, "").map_err(llvm)?;
        let y = self.mul(self.mul(p, self.pow2(k1)?)?, self.pow2(k2)?)?;
        // A NaN x made k poison; the select takes x instead.
        let nan = self.is_nan(x)?;
        self.sel(nan, x, y)
    }

    /// e^x − 1, accurate near 0.
    pub fn expm1(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        // Below lo the result rounds to −1; above hi it overflows.
        let (lo, hi, kmax) = if self.single {
            (-20.0, 89.0, 24)
        } else {
            (-40.0, 710.0, 53)
        };
        let xc = self.clamp(x, lo, hi)?;
        let (_, k, r) = self.reduce(xc)?;
        // q = e^r − 1 = r · Σ r^n/(n+1)!.
        let c: Vec<f64> = Self::inv_fact(self.exp_deg() + 1)[1..].to_vec();
        let q = self.mul(r, self.poly(r, &c)?)?;
        // Small k: 2^k·q + (2^k − 1), both exact steps; large k: (q + 1)·2^k1·2^k2 − 1.
        let small = self
            .b
            .build_int_compare(IntPredicate::SLE, k, self.ic(kmax), "")
            .map_err(llvm)?;
        let ks = self.isel(small, k, self.ic(0))?;
        let s = self.pow2(ks)?;
        let a = self.fma(s, q, self.sub(s, self.c(1.0))?)?;
        let kb = self.isel(small, self.ic(kmax), k)?;
        let k1 = self
            .b
            .build_right_shift(kb, self.ic(1), true, "")
            .map_err(llvm)?;
        let k2 = self.b.build_int_sub(kb, k1, "").map_err(llvm)?;
        let e = self.mul(
            self.mul(self.add(q, self.c(1.0))?, self.pow2(k1)?)?,
            self.pow2(k2)?,
        )?;
        let bg = self.sub(e, self.c(1.0))?;
        let y = self.sel(small, a, bg)?;
        self.keep_nan_zero(x, y)
    }

    /// log(m) for m in [√½, √2]: f − s·(f − R), f = m − 1, s = f/(2 + f),
    /// R = Σ_{j≥1} 2·s^{2j}/(2j + 1) (so that 2·atanh(s) = 2s + s·R and 2s = f − s·f).
    fn log_mantissa(&self, m: FloatValue<'c>) -> R<FloatValue<'c>> {
        let f = self.sub(m, self.c(1.0))?;
        let s = self.div(f, self.add(f, self.c(2.0))?)?;
        let s2 = self.mul(s, s)?;
        let terms = if self.single { 6 } else { 11 };
        let mut c = vec![0.0];
        c.extend((1..=terms).map(|j| 2.0 / (2 * j + 1) as f64));
        let rr = self.poly(s2, &c)?;
        let corr = self.mul(s, self.sub(f, rr)?)?;
        self.sub(f, corr)
    }

    /// ln x.
    pub fn log(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let mant = self.mant();
        // Subnormals: scale up by 2^scale first.
        let scale = if self.single { 24 } else { 54 };
        let min_normal = if self.single {
            f32::MIN_POSITIVE as f64
        } else {
            f64::MIN_POSITIVE
        };
        let sub = self.cmp(FloatPredicate::OLT, x, self.c(min_normal))?;
        let xs = self.sel(sub, self.mul(x, self.c((scale as f64).exp2()))?, x)?;
        let bits = self
            .b
            .build_bit_cast(xs, self.it, "")
            .map_err(llvm)?
            .into_int_value();
        let ex = self
            .b
            .build_right_shift(bits, self.ic(mant), false, "")
            .map_err(llvm)?;
        let ex = self
            .b
            .build_int_sub(ex, self.ic(self.bias()), "")
            .map_err(llvm)?;
        let ex = self
            .b
            .build_int_sub(ex, self.isel(sub, self.ic(scale), self.ic(0))?, "")
            .map_err(llvm)?;
        let frac = self
            .b
            .build_and(bits, self.ic((1i64 << mant) - 1), "")
            .map_err(llvm)?;
        let mbits = self
            .b
            .build_or(frac, self.ic(self.bias() << mant), "")
            .map_err(llvm)?;
        let m = self
            .b
            .build_bit_cast(mbits, self.t, "")
            .map_err(llvm)?
            .into_float_value();
        // m in [1, 2); above √2 use m/2 and one more power of 2.
        let big = self.cmp(FloatPredicate::OGT, m, self.c(std::f64::consts::SQRT_2))?;
        let m = self.sel(big, self.mul(m, self.c(0.5))?, m)?;
        let ex = self
            .b
            .build_int_add(ex, self.isel(big, self.ic(1), self.ic(0))?, "")
            .map_err(llvm)?;
        let e = self
            .b
            .build_signed_int_to_float(ex, self.t, "")
            .map_err(llvm)?;
        let lm = self.log_mantissa(m)?;
        let (hi, lo) = if self.single {
            (LN2_HI_32, LN2_LO_32)
        } else {
            (LN2_HI_64, LN2_LO_64)
        };
        let y = self.fma(e, self.c(hi), self.fma(e, self.c(lo), lm)?)?;
        // Special values: NaN and x < 0 → NaN, 0 → −∞, +∞ → +∞.
        let neg = self.cmp(FloatPredicate::OLT, x, self.c(0.0))?;
        let y = self.sel(neg, self.c(f64::NAN), y)?;
        let zero = self.cmp(FloatPredicate::OEQ, x, self.c(0.0))?;
        let y = self.sel(zero, self.c(f64::NEG_INFINITY), y)?;
        let inf = self.cmp(FloatPredicate::OEQ, x, self.c(f64::INFINITY))?;
        let y = self.sel(inf, x, y)?;
        let nan = self.is_nan(x)?;
        self.sel(nan, x, y)
    }

    /// ln(1 + x), accurate near 0: log(u) + (x − (u − 1))/u with u = 1 + x rounded.
    pub fn log1p(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let u = self.add(x, self.c(1.0))?;
        let l = self.log(u)?;
        let c = self.div(self.sub(x, self.sub(u, self.c(1.0))?)?, u)?;
        let y = self.add(l, c)?;
        // u = 0, ∞ or negative: log(u) is already the answer (−∞, ∞, NaN).
        let fin = self.cmp(
            FloatPredicate::ONE,
            self.intr("llvm.fabs", &[l])?,
            self.c(f64::INFINITY),
        )?;
        let y = self.sel(fin, y, l)?;
        self.keep_nan_zero(x, y)
    }

    /// tanh x = sign(x) · e/(e + 2) with e = expm1(2|x|).
    pub fn tanh(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let a = self.intr("llvm.fabs", &[x])?;
        // Beyond this tanh rounds to ±1.
        let sat = if self.single { 9.5 } else { 19.5 };
        let ac = self.clamp(a, 0.0, sat)?;
        let e = self.expm1(self.add(ac, ac)?)?;
        let t = self.div(e, self.add(e, self.c(2.0))?)?;
        let big = self.cmp(FloatPredicate::OGE, a, self.c(sat))?;
        let t = self.sel(big, self.c(1.0), t)?;
        let y = self.intr("llvm.copysign", &[t, x])?;
        self.keep_nan_zero(x, y)
    }

    /// 1/(1 + e^−x), with one exponential of −|x| (never overflows).
    pub fn sigmoid(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let a = self.intr("llvm.fabs", &[x])?;
        let e = self.exp(self.b.build_float_neg(a, "").map_err(llvm)?)?;
        let d = self.add(self.c(1.0), e)?;
        let pos = self.div(self.c(1.0), d)?;
        let neg = self.div(e, d)?;
        let ge = self.cmp(FloatPredicate::OGE, x, self.c(0.0))?;
        self.sel(ge, pos, neg)
    }

    /// erf x, computed in f64 whatever the working type (the result is rounded to it).
    /// `op` applied to `x`, or `None` when `op` is not one of these functions.
    /// gelu and gelu_tanh work in f64 whatever the working type: 1 + erf (tanh) cancels for
    /// negative x, where f32 would lose the result's leading digits; sin and cos work in f64
    /// too (`trig.rs`: the reduction needs f64's digits of π/2).
    pub fn unary(&self, op: UnaryOp, x: FloatValue<'c>) -> R<Option<FloatValue<'c>>> {
        if self.single
            && matches!(
                op,
                UnaryOp::Gelu | UnaryOp::GeluTanh | UnaryOp::Sin | UnaryOp::Cos
            )
        {
            let d = Math::new(self.ctx, self.module, self.b, false);
            let xd = self.b.build_float_ext(x, d.t, "").map_err(llvm)?;
            let Some(y) = d.unary(op, xd)? else {
                return Ok(None);
            };
            return Ok(Some(self.b.build_float_trunc(y, self.t, "").map_err(llvm)?));
        }
        Ok(Some(match op {
            UnaryOp::Exp => self.exp(x)?,
            UnaryOp::Log => self.log(x)?,
            UnaryOp::Log1p => self.log1p(x)?,
            UnaryOp::Tanh => self.tanh(x)?,
            UnaryOp::Erf => self.erf(x)?,
            UnaryOp::Sigmoid => self.sigmoid(x)?,
            UnaryOp::Silu => self.mul(x, self.sigmoid(x)?)?,
            UnaryOp::Sin => self.sin(x)?,
            UnaryOp::Cos => self.cos(x)?,
            // As the interpreter: x above 20, else log1p(e^x).
            UnaryOp::Softplus => {
                let l = self.log1p(self.exp(x)?)?;
                let big = self.cmp(FloatPredicate::OGT, x, self.c(20.0))?;
                self.sel(big, x, l)?
            }
            UnaryOp::Elu => {
                let m = self.expm1(x)?;
                let pos = self.cmp(FloatPredicate::OGT, x, self.c(0.0))?;
                self.sel(pos, x, m)?
            }
            UnaryOp::Gelu => {
                let z = self.div(x, self.c(std::f64::consts::SQRT_2))?;
                let e = self.erf(z)?;
                self.half_x_one_plus(x, e)?
            }
            UnaryOp::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let x3 = self.mul(self.mul(x, x)?, x)?;
                let t = self.add(x, self.mul(self.c(0.044715), x3)?)?;
                let th = self.tanh(self.mul(self.c(c), t)?)?;
                self.half_x_one_plus(x, th)?
            }
            _ => return Ok(None),
        }))
    }

    /// ½ · x · (1 + e).
    fn half_x_one_plus(&self, x: FloatValue<'c>, e: FloatValue<'c>) -> R<FloatValue<'c>> {
        let t = self.add(self.c(1.0), e)?;
        self.mul(self.mul(self.c(0.5), x)?, t)
    }

    pub fn erf(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let d = Math::new(self.ctx, self.module, self.b, false);
        let xd = if self.single {
            self.b.build_float_ext(x, d.t, "").map_err(llvm)?
        } else {
            x
        };
        let y = d.erf64(xd)?;
        if self.single {
            self.b.build_float_trunc(y, self.t, "").map_err(llvm)
        } else {
            Ok(y)
        }
    }

    fn erf64(&self, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let a = self.intr("llvm.fabs", &[x])?;
        // |x| < ½: erf x = 2/√π · Σ (−1)^n x^{2n+1} / (n!·(2n + 1)).
        let mut c = Vec::new();
        let mut f = 1.0f64;
        for n in 0..=13usize {
            if n > 0 {
                f *= n as f64;
            }
            let s = if n % 2 == 0 { 1.0 } else { -1.0 };
            c.push(s * std::f64::consts::FRAC_2_SQRT_PI / (f * (2 * n + 1) as f64));
        }
        let x2 = self.mul(a, a)?;
        let near0 = self.mul(a, self.poly(x2, &c)?)?;
        // ½ ≤ |x| < 6: piece i = ⌊2|x|⌋ − 1, centre 0.75 + i/2, coefficients from the table.
        let table = self.erf_table()?;
        let ac = self.clamp(a, 0.5, 5.99)?;
        let fi = self.intr("llvm.floor", &[self.mul(ac, self.c(2.0))?])?;
        let fi = self.sub(fi, self.c(1.0))?;
        let h = self.sub(ac, self.fma(fi, self.c(0.5), self.c(0.75))?)?;
        let i = self
            .b
            .build_float_to_signed_int(fi, self.it, "")
            .map_err(llvm)?;
        let row = self
            .b
            .build_int_mul(i, self.ic((ERF_DEG + 1) as i64), "")
            .map_err(llvm)?;
        let mut acc = self.c(0.0);
        for j in (0..=ERF_DEG).rev() {
            let at = self
                .b
                .build_int_add(row, self.ic(j as i64), "")
                .map_err(llvm)?;
            let p = super::emit::gep(self.b, self.t.into(), table, at)?;
            let cj = self.b.build_load(self.t, p, "").map_err(llvm)?;
            if let Some(inst) = cj.as_instruction_value() {
                inst.set_alignment(8).map_err(llvm)?;
            }
            acc = self.fma(acc, h, cj.into_float_value())?;
        }
        let mid = self.sel(
            self.cmp(FloatPredicate::OGE, a, self.c(6.0))?,
            self.c(1.0),
            acc,
        )?;
        let small = self.cmp(FloatPredicate::OLT, a, self.c(0.5))?;
        let y = self.sel(small, near0, mid)?;
        let y = self.intr("llvm.copysign", &[y, x])?;
        let nan = self.is_nan(x)?;
        self.sel(nan, x, y)
    }

    /// The module's constant table of erf's Taylor coefficients, added on first use.
    fn erf_table(&self) -> R<inkwell::values::PointerValue<'c>> {
        const NAME: &str = "seqc_erf_taylor";
        if let Some(g) = self.module.get_global(NAME) {
            return Ok(g.as_pointer_value());
        }
        let vals: Vec<FloatValue> = erf_taylor()
            .iter()
            .flatten()
            .map(|v| self.t.const_float(*v))
            .collect();
        let arr = self.t.const_array(&vals);
        let g = self
            .module
            .add_global(arr.get_type(), Some(AddressSpace::default()), NAME);
        g.set_initializer(&arr);
        g.set_constant(true);
        g.set_linkage(Linkage::Private);
        g.set_alignment(64);
        Ok(g.as_pointer_value())
    }
}

/// Taylor coefficients of erf about c = 0.75, 1.25, …: erf(c + h) = Σ a_n h^n with
/// a_0 = erf(c) and a_n = 2/√π · e^{−c²} · (−1)^{n−1} H_{n−1}(c) / n! for n ≥ 1 (H the
/// physicists' Hermite polynomials: dⁿ/dxⁿ e^{−x²} = (−1)ⁿ Hₙ(x) e^{−x²}).
fn erf_taylor() -> Vec<[f64; ERF_DEG + 1]> {
    (0..ERF_PIECES)
        .map(|i| {
            let c = 0.75 + 0.5 * i as f64;
            let mut h = vec![1.0, 2.0 * c];
            for k in 1..ERF_DEG {
                let next = 2.0 * c * h[k] - 2.0 * k as f64 * h[k - 1];
                h.push(next);
            }
            let g = std::f64::consts::FRAC_2_SQRT_PI * (-c * c).exp();
            let mut a = [0.0; ERF_DEG + 1];
            a[0] = crate::interp::erf(c);
            let mut fact = 1.0;
            for n in 1..=ERF_DEG {
                fact *= n as f64;
                let s = if (n - 1) % 2 == 0 { 1.0 } else { -1.0 };
                a[n] = g * s * h[n - 1] / fact;
            }
            a
        })
        .collect()
}

/// Adds `void seqc_math_<op>(const T *x, T *y, i64 n)` to `module`, computing y[i] = op(x[i])
/// in T = f32 (`single`) or f64 with the functions above: what the accuracy tests call, and a
/// loop small enough to read the vectorised machine code of.
pub(super) fn emit_probe<'c>(
    ctx: &'c Context,
    module: &Module<'c>,
    op: UnaryOp,
    single: bool,
) -> R<()> {
    let name = format!("seqc_math_{}", crate::ir::op::unary_name(op));
    emit_probe_loop(ctx, module, &name, 1, single, |m, x| {
        m.unary(op, x[0])?
            .ok_or_else(|| CodegenError::Unsupported(format!("`{name}` as an inline function")))
    })
}

/// Adds `void name(const T *x0, …, const T *x{arity−1}, T *y, i64 n)` to `module`, computing
/// y[i] = f(x0[i], …) with a [`Math`] in T = f32 (`single`) or f64.
fn emit_probe_loop<'c>(
    ctx: &'c Context,
    module: &Module<'c>,
    name: &str,
    arity: u32,
    single: bool,
    f: impl FnOnce(&Math<'_, 'c>, &[FloatValue<'c>]) -> R<FloatValue<'c>>,
) -> R<()> {
    let (ptr, i64t) = (ctx.ptr_type(AddressSpace::default()), ctx.i64_type());
    let mut params = vec![ptr.into(); arity as usize + 1];
    params.push(i64t.into());
    let fty = ctx.void_type().fn_type(&params, false);
    let func = module.add_function(name, fty, Some(Linkage::External));
    let arg = |i: u32| func.get_nth_param(i).expect("declared");
    let (yp, n) = (
        arg(arity).into_pointer_value(),
        arg(arity + 1).into_int_value(),
    );
    let b = ctx.create_builder();
    let (entry, head, body, exit) = (
        ctx.append_basic_block(func, "entry"),
        ctx.append_basic_block(func, "head"),
        ctx.append_basic_block(func, "body"),
        ctx.append_basic_block(func, "exit"),
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
    let m = Math::new(ctx, module, &b, single);
    let mut xs = Vec::with_capacity(arity as usize);
    for a in 0..arity {
        let at = super::emit::gep(&b, m.t.into(), arg(a).into_pointer_value(), i)?;
        xs.push(b.build_load(m.t, at, "").map_err(llvm)?.into_float_value());
    }
    let y = f(&m, &xs)?;
    let at_y = super::emit::gep(&b, m.t.into(), yp, i)?;
    b.build_store(at_y, y).map_err(llvm)?;
    let next = b
        .build_int_add(i, i64t.const_int(1, false), "")
        .map_err(llvm)?;
    b.build_unconditional_branch(head).map_err(llvm)?;
    phi.add_incoming(&[(&i64t.const_zero(), entry), (&next, body)]);
    b.position_at_end(exit);
    b.build_return(None).map_err(llvm)?;
    Ok(())
}
