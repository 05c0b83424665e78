//! Accuracy of the CPU backend's inline elementary functions (`codegen/cpu/math.rs`) against
//! Rust's f64 standard library (and the interpreter's erf, which has tests of its own against
//! published values), in f32 and in f64, over dense grids of every magnitude and the special
//! values (±0, ±∞, NaN, subnormals, the overflow and underflow thresholds).
//!
//! Bounds are in units in the last place of the type computed in (ulps of the exact result;
//! in f64 the reference itself may be 1 ulp off, which the bounds include).

use seqc::ir::UnaryOp;
use std::path::Path;

/// The functions, each with its reference in f64 and its bound in ulps (f32, f64); `tiny`
/// = (k, b): where |result| < k · the smallest normal number, the bound is instead b times
/// the subnormal spacing (an absolute error).
struct Case {
    op: UnaryOp,
    reference: fn(f64) -> f64,
    ulps: (f64, f64),
    tiny: Option<(f64, f64)>,
    /// Beyond this |x| the bound does not hold (sin and cos: the documented reduction
    /// range); there the result must still lie in [−1, 1], or be NaN from 2^50 on.
    domain: f64,
}

/// Where sin and cos reduce exactly (`math/trig.rs`): |x| < 2^20·π/2.
const TRIG_DOMAIN: f64 = 1_647_099.0;

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + seqc::interp::erf(x / std::f64::consts::SQRT_2))
}

fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

fn cases() -> Vec<Case> {
    let c = |op, reference, ulps: (f64, f64)| Case {
        op,
        reference,
        ulps,
        tiny: None,
        domain: f64::INFINITY,
    };
    vec![
        c(UnaryOp::Exp, f64::exp, (1.0, 2.0)),
        c(UnaryOp::Log, f64::ln, (1.0, 2.0)),
        c(UnaryOp::Log1p, f64::ln_1p, (2.0, 3.0)),
        c(UnaryOp::Tanh, f64::tanh, (3.0, 5.0)),
        // (The f64 reference, Cody's rational approximation, is itself a few ulps off.)
        c(UnaryOp::Erf, seqc::interp::erf, (1.0, 6.0)),
        c(UnaryOp::Sigmoid, sigmoid, (3.0, 3.0)),
        // x · sigmoid(x): where sigmoid(x) is subnormal (x < −87 in f32, so |result| < 128 ·
        // the smallest normal) its rounding error is multiplied by |x|.
        Case {
            tiny: Some((128.0, 128.0)),
            ..c(UnaryOp::Silu, |x| x * sigmoid(x), (4.0, 4.0))
        },
        c(
            UnaryOp::Softplus,
            |x| if x > 20.0 { x } else { x.exp().ln_1p() },
            (3.0, 4.0),
        ),
        // elu is expm1 below 0.
        c(
            UnaryOp::Elu,
            |x| if x > 0.0 { x } else { x.exp_m1() },
            (2.0, 3.0),
        ),
        // gelu and gelu_tanh work in f64 (1 + erf cancels for x < 0): in f32 they are near
        // correctly rounded; the cancellation magnifies the f64 reference's own error, so they
        // are checked for x ≥ −5 in f32 and x ≥ −1 in f64 (see `worst_ulps`).
        c(UnaryOp::Gelu, gelu, (1.0, 8.0)),
        c(UnaryOp::GeluTanh, gelu_tanh, (1.0, 8.0)),
        // In f64 whatever the type, so correctly rounded in f32.
        Case {
            domain: TRIG_DOMAIN,
            ..c(UnaryOp::Sin, f64::sin, (1.0, 3.0))
        },
        Case {
            domain: TRIG_DOMAIN,
            ..c(UnaryOp::Cos, f64::cos, (1.0, 3.0))
        },
    ]
}

/// The grid: every 2^`stride_log2`-th bit pattern of the type (all magnitudes, both signs),
/// a dense linear grid on [−lim, lim], and the special values.
fn grid(single: bool) -> Vec<f64> {
    let mut v = Vec::new();
    if single {
        for bits in (0..u32::MAX).step_by(1 << 13) {
            v.push(f32::from_bits(bits | 0x5a5) as f64);
        }
    } else {
        // A Weyl sequence over the 64-bit patterns.
        let mut b: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..400_000 {
            b = b.wrapping_add(0x9e37_79b9_7f4a_7c15);
            v.push(f64::from_bits(b));
        }
    }
    let n = 400_000;
    for i in 0..=n {
        let x = -50.0 + 100.0 * i as f64 / n as f64;
        v.push(if single { x as f32 as f64 } else { x });
    }
    for i in 0..=n {
        let x = -1.0 + 2.0 * i as f64 / n as f64;
        v.push(if single { x as f32 as f64 } else { x });
    }
    let special = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e-300,
        -1e-300,
        5e-324,
        1e-40,
        -1e-40,
        1.4e-45,
        f32::MIN_POSITIVE as f64,
        f64::MIN_POSITIVE,
        88.72,
        88.73,
        -87.3,
        -103.9,
        -104.0,
        709.78,
        709.79,
        -708.4,
        -745.1,
        -745.2,
        -1.0,
        -0.999_999,
        1e-8,
        -1e-8,
        0.5,
        -0.5,
        5.99,
        6.0,
        -6.0,
        9.5,
        19.5,
        20.0,
        f32::MAX as f64,
        f64::MAX,
        -f64::MAX,
        // Near multiples of π/2 (sin and cos cancel there), and the edge of their domain.
        std::f64::consts::PI,
        std::f64::consts::FRAC_PI_2,
        -std::f64::consts::PI,
        3.0 * std::f64::consts::FRAC_PI_2,
        1e5 * std::f64::consts::PI,
        355.0,
        103_993.0,
        1_647_000.0,
        -1_647_000.0,
    ];
    v.extend(
        special
            .iter()
            .map(|&x| if single { x as f32 as f64 } else { x }),
    );
    v
}

/// The spacing of the type's numbers at `y` (its ulp; the subnormal spacing below them).
fn ulp(y: f64, single: bool) -> f64 {
    let (p, emin) = if single { (24, -126) } else { (53, -1022) };
    let e = if y == 0.0 {
        emin
    } else {
        (y.abs().log2().floor() as i32).max(emin)
    };
    f64::from(e - p + 1).exp2()
}

type Fun = unsafe extern "C" fn(*const u8, *mut u8, i64);

/// Runs `seqc_math_<op>` of the shared object over `xs` in the type.
fn run(lib: &libloading::Library, op: UnaryOp, xs: &[f64], single: bool) -> Vec<f64> {
    let name = format!("seqc_math_{}", seqc::ir::op::unary_name(op));
    // unsafe: calling into the generated shared object (see the SAFETY notes).
    #[allow(unsafe_code)] // (why: calls generated machine code through a raw symbol)
    // SAFETY: the symbol has the signature `Fun` (math_shared_object's contract); x and y
    // hold n elements of the type.
    unsafe {
        let f: libloading::Symbol<Fun> = lib.get(name.as_bytes()).expect("symbol");
        if single {
            let x: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
            let mut y = vec![0f32; x.len()];
            f(x.as_ptr().cast(), y.as_mut_ptr().cast(), x.len() as i64);
            y.iter().map(|&v| v as f64).collect()
        } else {
            let mut y = vec![0f64; xs.len()];
            f(xs.as_ptr().cast(), y.as_mut_ptr().cast(), xs.len() as i64);
            y
        }
    }
}

/// The largest error in ulps over the grid; panics on a wrong special value.
fn worst_ulps(c: &Case, xs: &[f64], ys: &[f64], single: bool) -> (f64, f64) {
    let (mut worst, mut at) = (0.0f64, 0.0);
    let name = seqc::ir::op::unary_name(c.op);
    for (&x, &y) in xs.iter().zip(ys) {
        // The references' 1 + erf (tanh) cancels below: f32 keeps 6 digits of it down to −5.
        let cancels = if single { x < -5.0 } else { x < -1.0 };
        if matches!(c.op, UnaryOp::Gelu | UnaryOp::GeluTanh) && cancels {
            continue;
        }
        if x.abs() > c.domain {
            let ok = if x.abs() >= 2f64.powi(50) {
                y.is_nan()
            } else {
                y.abs() <= 1.0
            };
            assert!(
                ok,
                "{name}({x:e}) = {y:e}, outside [−1, 1] (or not NaN from 2^50)"
            );
            continue;
        }
        let want = (c.reference)(x);
        // The exact result rounded to the type: its special values must match exactly.
        let w = if single { want as f32 as f64 } else { want };
        if w.is_nan() || y.is_nan() {
            assert!(
                w.is_nan() && y.is_nan(),
                "{name}({x:e}) = {y:e}, want {w:e}"
            );
            continue;
        }
        let max = if single { f32::MAX as f64 } else { f64::MAX };
        if w.is_infinite() || y.is_infinite() {
            // (Right at the overflow threshold either side may round over.)
            let edge = (want.abs() - max).abs() <= 4.0 * ulp(max, single);
            assert!(edge || w == y, "{name}({x:e}) = {y:e}, want {w:e}");
            continue;
        }
        if w == 0.0 {
            assert!(
                y.abs() <= c.ulps.0.max(c.ulps.1) * ulp(0.0, single),
                "{name}({x:e}) = {y:e}, want {w:e}"
            );
            if x == 0.0 {
                assert_eq!(
                    y.is_sign_negative(),
                    w.is_sign_negative(),
                    "{name}({x:e}) = {y:e}: the sign of zero"
                );
            }
            continue;
        }
        let mut e = (y - want).abs() / ulp(want, single);
        let min_normal = if single {
            f32::MIN_POSITIVE as f64
        } else {
            f64::MIN_POSITIVE
        };
        if let Some((k, b)) = c.tiny
            && want.abs() < k * min_normal
        {
            // Scaled so that it compares with the normal bound.
            let bound = if single { c.ulps.0 } else { c.ulps.1 };
            e = (y - want).abs() / ulp(0.0, single) * bound / b;
        }
        if e > worst {
            (worst, at) = (e, x);
        }
    }
    (worst, at)
}

fn check(single: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let so = dir.path().join("math.so");
    let ops: Vec<UnaryOp> = cases().iter().map(|c| c.op).collect();
    seqc::codegen::cpu::math_shared_object(&ops, single, Path::new(&so)).expect("compiles");
    // SAFETY: loading the shared object just written (no initialisers run).
    #[allow(unsafe_code)] // (why: dlopen is unsafe in libloading)
    let lib = unsafe { libloading::Library::new(&so) }.expect("loads");
    let xs = grid(single);
    let mut failures = Vec::new();
    for c in cases() {
        let ys = run(&lib, c.op, &xs, single);
        let (w, at) = worst_ulps(&c, &xs, &ys, single);
        let bound = if single { c.ulps.0 } else { c.ulps.1 };
        let name = seqc::ir::op::unary_name(c.op);
        eprintln!("{name}: {w:.2} ulps (at {at:e})");
        if w > bound {
            failures.push(format!("{name}: {w:.2} ulps at x = {at:e} (bound {bound})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn f32_functions_are_within_their_ulp_bounds() {
    check(true);
}

#[test]
fn f64_functions_are_within_their_ulp_bounds() {
    check(false);
}

#[test]
fn an_operator_without_an_inline_form_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = seqc::codegen::cpu::math_shared_object(
        &[UnaryOp::Floor],
        true,
        &dir.path().join("math.so"),
    )
    .expect_err("floor has no inline form");
    let msg = err.to_string();
    assert!(
        msg.contains("seqc_math_floor") && msg.contains("inline function"),
        "{msg}"
    );
}

type PowFun = unsafe extern "C" fn(*const f64, *const f64, *mut f64, i64);

/// The inline pow against Rust's (libm's) on the special cases of C99 and on a grid of
/// bases and exponents whose results stay in range: within 2 ulps plus |y·ln x| · 2^−52
/// relative (the error `math/trig.rs` documents).
#[test]
fn pow_matches_libm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let so = dir.path().join("pow.so");
    seqc::codegen::cpu::pow_shared_object(&so).expect("compiles");
    // SAFETY: loading the shared object just written (no initialisers run).
    #[allow(unsafe_code)] // (why: dlopen is unsafe in libloading)
    let lib = unsafe { libloading::Library::new(&so) }.expect("loads");
    let special = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        -2.0,
        3.0,
        -3.0,
        2.5,
        -2.5,
        1e-310,
        1e300,
        -1e300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        9_007_199_254_740_993.0,
    ];
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for &x in &special {
        for &y in &special {
            xs.push(x);
            ys.push(y);
        }
    }
    let specials = xs.len(); // (results ±1 and ±½ among them must be exact)
    for i in 0..200 {
        for j in 0..200 {
            let x = (f64::from(i) - 100.0) * 0.173 + 0.011;
            let y = (f64::from(j) - 100.0) * 0.061;
            xs.push(x);
            ys.push(y);
            // Integer exponents of negative bases.
            xs.push(-x.abs() - 0.01);
            ys.push((f64::from(j) - 100.0).round());
        }
    }
    let mut out = vec![0.0f64; xs.len()];
    // SAFETY: `seqc_math_pow` has the signature `PowFun`; the slices hold n elements.
    #[allow(unsafe_code)] // (why: calls generated machine code through a raw symbol)
    unsafe {
        let f: libloading::Symbol<PowFun> = lib.get(b"seqc_math_pow").expect("symbol");
        f(xs.as_ptr(), ys.as_ptr(), out.as_mut_ptr(), xs.len() as i64);
    }
    let mut worst = 0.0f64;
    for (i, ((&x, &y), &got)) in xs.iter().zip(&ys).zip(&out).enumerate() {
        let want = x.powf(y);
        let exact = i < specials && (want.abs() == 1.0 || want.abs() == 0.5);
        if exact || !want.is_finite() || !got.is_finite() || want == 0.0 {
            let same = want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan());
            assert!(same, "pow({x:e}, {y:e}) = {got:e}, libm says {want:e}");
            continue;
        }
        if want.abs() < f64::MIN_POSITIVE {
            continue;
        }
        let rel = ((got - want) / want).abs();
        let allowed = (2.0 + (y * x.abs().ln()).abs()) * f64::EPSILON;
        worst = worst.max(rel / allowed);
        assert!(
            rel <= allowed,
            "pow({x:e}, {y:e}) = {got:e}, libm says {want:e} (relative error {rel:e})"
        );
    }
    eprintln!("pow: worst error {worst:.3} of its bound");
}
