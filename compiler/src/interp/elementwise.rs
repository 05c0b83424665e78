//! Elementwise operators: constants, unary and binary functions with broadcasting, select
//! and cast, plus an f64 `erf` (W. J. Cody's rational approximations, |error| < 1e-15).

use super::value::{Data, Tensor, broadcast_offsets, broadcast_shape};
use crate::ir::{BinaryOp, Literal, UnaryOp};
use seqc_runtime::DType;

/// A scalar constant of `dtype`.
pub(crate) fn constant(value: Literal, dtype: DType) -> Result<Tensor, String> {
    let data = match (value, dtype) {
        (Literal::Float(f), d) if d.is_float() => Data::F(vec![f]),
        (Literal::Int(i), d) if d.is_float() => Data::F(vec![i as f64]),
        (Literal::Int(i), d) if d.is_int() => Data::I(vec![i]),
        (Literal::Bool(b), DType::Bool) => Data::B(vec![b]),
        _ => return Err(format!("literal {value:?} cannot have dtype {dtype}")),
    };
    Tensor::new(dtype, vec![], data)
}

fn unsupported(what: &str, dtype: DType) -> String {
    format!("`{what}` does not accept dtype {dtype}")
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The scalar semantics of a float unary op in f64 (`None` for `not`). The front end folds
/// compile-time constants with this same function, so folding never disagrees with the oracle.
pub fn unary_f(u: UnaryOp, x: f64) -> Option<f64> {
    Some(match u {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Log1p => x.ln_1p(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Softplus => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryOp::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        UnaryOp::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Erf => erf(x),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Not => return None,
    })
}

/// An elementwise unary function.
pub(crate) fn unary(u: UnaryOp, x: &Tensor) -> Result<Tensor, String> {
    let name = crate::ir::op::unary_name(u);
    let data = match &x.data {
        Data::F(v) => Data::F(
            v.iter()
                .map(|&a| unary_f(u, a).ok_or_else(|| unsupported(name, x.dtype)))
                .collect::<Result<_, _>>()?,
        ),
        Data::I(v) => {
            let f: fn(i64) -> i64 = match u {
                UnaryOp::Neg => i64::wrapping_neg,
                UnaryOp::Abs => i64::wrapping_abs,
                UnaryOp::Relu => |a| a.max(0),
                _ => return Err(unsupported(name, x.dtype)),
            };
            Data::I(v.iter().map(|&a| f(a)).collect())
        }
        Data::B(v) => match u {
            UnaryOp::Not => Data::B(v.iter().map(|&a| !a).collect()),
            _ => return Err(unsupported(name, x.dtype)),
        },
    };
    Tensor::new(x.dtype, x.shape.clone(), data)
}

fn compare<T: PartialOrd>(op: BinaryOp, x: T, y: T) -> bool {
    match op {
        BinaryOp::Lt => x < y,
        BinaryOp::Le => x <= y,
        BinaryOp::Gt => x > y,
        BinaryOp::Ge => x >= y,
        BinaryOp::Eq => x == y,
        _ => x != y,
    }
}

fn float_bin(op: BinaryOp, x: f64, y: f64) -> Option<f64> {
    let nan = x.is_nan() || y.is_nan();
    Some(match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        BinaryOp::Rem => x - y * (x / y).floor(),
        BinaryOp::Pow => x.powf(y),
        BinaryOp::Max if nan => f64::NAN,
        BinaryOp::Min if nan => f64::NAN,
        BinaryOp::Max => x.max(y),
        BinaryOp::Min => x.min(y),
        _ => return None,
    })
}

/// Python's floor division and modulo (the result of `%` has the divisor's sign).
pub(crate) fn int_bin(op: BinaryOp, x: i64, y: i64) -> Result<i64, String> {
    Ok(match op {
        BinaryOp::Add => x.wrapping_add(y),
        BinaryOp::Sub => x.wrapping_sub(y),
        BinaryOp::Mul => x.wrapping_mul(y),
        BinaryOp::Div | BinaryOp::Rem if y == 0 => {
            return Err(format!("integer division by zero ({x} / 0)"));
        }
        BinaryOp::Div => {
            let q = x.wrapping_div(y);
            if x.wrapping_rem(y) != 0 && ((x < 0) != (y < 0)) {
                q.wrapping_sub(1)
            } else {
                q
            }
        }
        BinaryOp::Rem => {
            let r = x.wrapping_rem(y);
            if r != 0 && ((r < 0) != (y < 0)) {
                r + y
            } else {
                r
            }
        }
        BinaryOp::Max => x.max(y),
        BinaryOp::Min => x.min(y),
        _ => {
            return Err(format!(
                "`{}` does not accept integers",
                crate::ir::op::binary_name(op)
            ));
        }
    })
}

fn bool_bin(op: BinaryOp, x: bool, y: bool) -> Option<bool> {
    Some(match op {
        BinaryOp::And | BinaryOp::Min => x && y,
        BinaryOp::Or | BinaryOp::Max => x || y,
        _ => return None,
    })
}

/// An elementwise binary function with NumPy broadcasting.
pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let name = crate::ir::op::binary_name(op);
    if a.dtype != b.dtype {
        return Err(format!("operands have dtypes {} and {}", a.dtype, b.dtype));
    }
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    let (oa, ob) = (
        broadcast_offsets(&a.shape, &shape)?,
        broadcast_offsets(&b.shape, &shape)?,
    );
    let pairs = oa.iter().zip(&ob);
    let cmp = op.is_comparison();
    let data = match (&a.data, &b.data) {
        (Data::F(x), Data::F(y)) if cmp => {
            Data::B(pairs.map(|(&i, &j)| compare(op, x[i], y[j])).collect())
        }
        (Data::I(x), Data::I(y)) if cmp => {
            Data::B(pairs.map(|(&i, &j)| compare(op, x[i], y[j])).collect())
        }
        (Data::B(x), Data::B(y)) if cmp => {
            Data::B(pairs.map(|(&i, &j)| compare(op, x[i], y[j])).collect())
        }
        (Data::F(x), Data::F(y)) => Data::F(
            pairs
                .map(|(&i, &j)| float_bin(op, x[i], y[j]).ok_or_else(|| unsupported(name, a.dtype)))
                .collect::<Result<_, _>>()?,
        ),
        (Data::I(x), Data::I(y)) => Data::I(
            pairs
                .map(|(&i, &j)| int_bin(op, x[i], y[j]))
                .collect::<Result<_, _>>()?,
        ),
        (Data::B(x), Data::B(y)) => Data::B(
            pairs
                .map(|(&i, &j)| bool_bin(op, x[i], y[j]).ok_or_else(|| unsupported(name, a.dtype)))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(format!(
                "internal: operands of {} stored differently",
                a.dtype
            ));
        }
    };
    Tensor::new(if cmp { DType::Bool } else { a.dtype }, shape, data)
}

/// `cond ? a : b`, broadcasting all three.
pub(crate) fn select(c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let Data::B(cv) = &c.data else {
        return Err(format!("the condition must be bool, found {}", c.dtype));
    };
    if a.dtype != b.dtype {
        return Err(format!("branches have dtypes {} and {}", a.dtype, b.dtype));
    }
    let shape = broadcast_shape(&broadcast_shape(&c.shape, &a.shape)?, &b.shape)?;
    let oc = broadcast_offsets(&c.shape, &shape)?;
    let oa = broadcast_offsets(&a.shape, &shape)?;
    let ob = broadcast_offsets(&b.shape, &shape)?;
    let mut both = a.data.clone();
    both.append(&b.data)?;
    let n = a.data.len();
    let idx: Vec<usize> = (0..oc.len())
        .map(|k| if cv[oc[k]] { oa[k] } else { n + ob[k] })
        .collect();
    Tensor::new(a.dtype, shape, both.pick(&idx)?)
}

/// Converts each element: float→int truncates toward zero (saturating at the int's range,
/// NaN → 0); bool→number is 0/1; number→bool is x ≠ 0; int→i32 wraps.
pub(crate) fn cast(x: &Tensor, to: DType) -> Result<Tensor, String> {
    let data = match &x.data {
        Data::F(v) if to.is_float() => Data::F(v.clone()),
        Data::F(v) if to == DType::I32 => Data::I(v.iter().map(|&a| a as i32 as i64).collect()),
        Data::F(v) if to.is_int() => Data::I(v.iter().map(|&a| a as i64).collect()),
        Data::F(v) => Data::B(v.iter().map(|&a| a != 0.0).collect()),
        Data::I(v) if to.is_float() => Data::F(v.iter().map(|&a| a as f64).collect()),
        Data::I(v) if to.is_int() => Data::I(v.clone()),
        Data::I(v) => Data::B(v.iter().map(|&a| a != 0).collect()),
        Data::B(v) if to.is_float() => Data::F(v.iter().map(|&a| f64::from(u8::from(a))).collect()),
        Data::B(v) if to.is_int() => Data::I(v.iter().map(|&a| i64::from(a)).collect()),
        Data::B(v) => Data::B(v.clone()),
    };
    Tensor::new(to, x.shape.clone(), data)
}

// W. J. Cody's coefficients, verbatim from SPECFUN's CALERF (more digits than f64 holds).
#[allow(clippy::excessive_precision)] // (why: Cody's published digits, kept verbatim)
const ERF_A: [f64; 5] = [
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
];
#[allow(clippy::excessive_precision)] // (why: Cody's published digits, kept verbatim)
const ERF_B: [f64; 4] = [
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
];
#[allow(clippy::excessive_precision)] // (why: Cody's published digits, kept verbatim)
const ERF_C: [f64; 9] = [
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
];
#[allow(clippy::excessive_precision)] // (why: Cody's published digits, kept verbatim)
const ERF_D: [f64; 8] = [
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
];
#[allow(clippy::excessive_precision)] // (why: Cody's published digits, kept verbatim)
const ERF_P: [f64; 6] = [
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
];
#[allow(clippy::excessive_precision)] // (why: Cody's published digits, kept verbatim)
const ERF_Q: [f64; 5] = [
    2.56852019228982242e00,
    1.87295284992346725e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
];

/// The error function, by W. J. Cody's rational Chebyshev approximations (Math. Comp. 1969,
/// as in SPECFUN's CALERF); accurate to a few ulps in f64.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let y = x.abs();
    if y <= 0.46875 {
        let ysq = if y > 1.11e-16 { y * y } else { 0.0 };
        let (mut num, mut den) = (ERF_A[4] * ysq, ysq);
        for i in 0..3 {
            num = (num + ERF_A[i]) * ysq;
            den = (den + ERF_B[i]) * ysq;
        }
        return x * (num + ERF_A[3]) / (den + ERF_B[3]);
    }
    // erfc(y) = exp(−y²) · R(y) for y > 0.46875.
    let r = if y <= 4.0 {
        let (mut num, mut den) = (ERF_C[8] * y, y);
        for i in 0..7 {
            num = (num + ERF_C[i]) * y;
            den = (den + ERF_D[i]) * y;
        }
        (num + ERF_C[7]) / (den + ERF_D[7])
    } else if y >= 26.543 {
        0.0
    } else {
        let ysq = 1.0 / (y * y);
        let (mut num, mut den) = (ERF_P[5] * ysq, ysq);
        for i in 0..4 {
            num = (num + ERF_P[i]) * ysq;
            den = (den + ERF_Q[i]) * ysq;
        }
        let r = ysq * (num + ERF_P[4]) / (den + ERF_Q[4]);
        (1.0 / std::f64::consts::PI.sqrt() - r) / y
    };
    let erfc = if r == 0.0 {
        0.0
    } else {
        // exp(−y²) split to keep the exponent exact.
        let ysq = (y * 16.0).trunc() / 16.0;
        let del = (y - ysq) * (y + ysq);
        (-ysq * ysq).exp() * (-del).exp() * r
    };
    let v = (0.5 - erfc) + 0.5;
    if x < 0.0 { -v } else { v }
}
