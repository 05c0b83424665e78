//! Rounding an f64 to f16 or bf16: one correct rounding (to nearest, ties to even) from the
//! f64 value, the semantics the kernels' `round` emits too (`codegen/cpu/half.rs`).
//!
//! The `half` crate's `from_f64` is not this: its fallback drops the low 32 bits of the f64
//! before rounding (a value just above a half-way point rounds as a tie), and with F16C it
//! rounds to f32 first (double rounding), so its result depends on the machine.

use seqc_runtime::DType;

/// The format of a 16-bit float: fraction bits, least normal exponent, largest finite.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HalfFormat {
    pub frac: i64,
    pub emin: i64,
    pub max: f64,
}

pub(crate) const F16: HalfFormat = HalfFormat {
    frac: 10,
    emin: -14,
    max: 65504.0,
};

pub(crate) const BF16: HalfFormat = HalfFormat {
    frac: 7,
    emin: -126,
    // (2 − 2^−7) · 2^127
    max: 3.3895313892515355e38,
};

/// The format of a 16-bit float dtype (`None` for the others).
pub(crate) fn format(d: DType) -> Option<HalfFormat> {
    match d {
        DType::F16 => Some(F16),
        DType::BF16 => Some(BF16),
        _ => None,
    }
}

/// `x` rounded to the format, as an f64. Scales |x| so that the format's last fraction bit
/// has weight 1, rounds to an integer by adding and subtracting 2^52 (exact, ties to even),
/// scales back (exact: powers of two); a result above the largest finite is +∞. Zero, ±∞
/// and NaN pass through the same steps unchanged; the sign is copied back.
pub(crate) fn round_half(f: HalfFormat, x: f64) -> f64 {
    let a = x.abs();
    let e = ((a.to_bits() >> 52) as i64 - 1023).max(f.emin);
    let scale = f64::from_bits(((1023 + f.frac - e) as u64) << 52);
    let unscale = f64::from_bits(((1023 - f.frac + e) as u64) << 52);
    let big = 4503599627370496.0; // 2^52
    let r = ((a * scale + big) - big) * unscale;
    let r = if r > f.max { f64::INFINITY } else { r };
    r.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f64) -> f64 {
        round_half(F16, x)
    }

    fn b(x: f64) -> f64 {
        round_half(BF16, x)
    }

    const U: f64 = 1.0 / 1024.0; // the f16 ulp at 1
    const BU: f64 = 1.0 / 128.0; // the bf16 ulp at 1

    #[test]
    fn ties_go_to_even_and_anything_above_a_tie_rounds_up() {
        // 1 + u/2 is a tie between 1 (even) and 1 + u (odd): 1.
        assert_eq!(h(1.0 + U / 2.0), 1.0);
        // 1 + 3u/2 is a tie between 1 + u (odd) and 1 + 2u (even): 1 + 2u.
        assert_eq!(h(1.0 + 1.5 * U), 1.0 + 2.0 * U);
        // Just above a tie by a bit the `half` crate drops (2^−40): up.
        assert_eq!(h(1.0 + U / 2.0 + 2f64.powi(-40)), 1.0 + U);
        // Just below a tie: down.
        assert_eq!(h(1.0 + U / 2.0 - 2f64.powi(-40)), 1.0);
        assert_eq!(b(1.0 + BU / 2.0), 1.0);
        assert_eq!(b(1.0 + 1.5 * BU), 1.0 + 2.0 * BU);
        assert_eq!(b(1.0 + BU / 2.0 + 2f64.powi(-40)), 1.0 + BU);
        // Via f32 this would be a tie (2^−40 is lost) and round to 1: no double rounding.
        assert_eq!(b(1.0 + BU / 2.0 + 2f64.powi(-45)), 1.0 + BU);
        assert_eq!(h(-(1.0 + U / 2.0 + 2f64.powi(-40))), -(1.0 + U));
    }

    #[test]
    fn subnormals_overflow_zero_and_specials() {
        let tiny = 2f64.powi(-24); // the least f16 subnormal
        assert_eq!(h(tiny / 2.0), 0.0); // a tie with 0 (even)
        assert_eq!(h(tiny / 2.0 + 2f64.powi(-60)), tiny);
        assert_eq!(h(1.5 * tiny), 2.0 * tiny); // tie between 1 and 2 units: even
        assert_eq!(h(2.5 * tiny), 2.0 * tiny);
        assert_eq!(h(3.0 * tiny), 3.0 * tiny);
        assert_eq!(h(1e-30), 0.0);
        assert!(h(-1e-30) == 0.0 && h(-1e-30).is_sign_negative());
        assert_eq!(h(65504.0), 65504.0);
        assert_eq!(h(65519.99), 65504.0);
        assert_eq!(h(65520.0), f64::INFINITY); // the tie above the largest finite
        assert_eq!(h(-1e300), f64::NEG_INFINITY);
        assert_eq!(h(f64::INFINITY), f64::INFINITY);
        assert!(h(f64::NAN).is_nan() && b(f64::NAN).is_nan());
        assert_eq!(b(BF16.max), BF16.max);
        assert_eq!(b(f32::MAX as f64), f64::INFINITY);
        assert_eq!(b(2f64.powi(-133)), 2f64.powi(-133)); // the least bf16 subnormal
        assert_eq!(b(2f64.powi(-134)), 0.0);
        assert_eq!(b(f64::from_bits(1)), 0.0);
        assert_eq!(h(0.1), 0.0999755859375);
        assert_eq!(b(0.1), 0.10009765625);
    }

    #[test]
    fn agrees_with_the_half_crate_where_it_sees_the_whole_value() {
        // With no bits below the 20th fraction bit, nothing is dropped by the crate's
        // fallback and one rounding from f32 is exact too: both must give the same bits.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = f32::from_bits((s as u32) & 0xffff_f000) as f64;
            for (d, f) in [(DType::F16, F16), (DType::BF16, BF16)] {
                let want = seqc_runtime::HostTensor::from_f64(d, vec![1], &[x]).to_f64_vec()[0];
                let got = round_half(f, x);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{d} of {x:e}: {got:e}, the crate {want:e}"
                );
            }
        }
    }
}
