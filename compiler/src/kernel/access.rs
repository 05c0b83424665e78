//! Expression building for lowering: folding constructors for index arithmetic, symbolic
//! dims as expressions, row-major flattening and the index maps of views and broadcasting.

use super::{Expr, Ty};
use crate::ir::dim::Atom;
use crate::ir::{BinaryOp, DimExpr};

pub(super) fn int(v: i64) -> Expr {
    Expr::Int(v, Ty::I64)
}

fn bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary {
        op,
        ty: Ty::I64,
        a: Box::new(a),
        b: Box::new(b),
    }
}

pub(super) fn add(a: Expr, b: Expr) -> Expr {
    match (&a, &b) {
        (Expr::Int(0, Ty::I64), _) => b,
        (_, Expr::Int(0, Ty::I64)) => a,
        (Expr::Int(x, Ty::I64), Expr::Int(y, Ty::I64)) => int(x.wrapping_add(*y)),
        _ => bin(BinaryOp::Add, a, b),
    }
}

pub(super) fn sub(a: Expr, b: Expr) -> Expr {
    match (&a, &b) {
        (_, Expr::Int(0, Ty::I64)) => a,
        (Expr::Int(x, Ty::I64), Expr::Int(y, Ty::I64)) => int(x.wrapping_sub(*y)),
        _ => bin(BinaryOp::Sub, a, b),
    }
}

pub(super) fn mul(a: Expr, b: Expr) -> Expr {
    match (&a, &b) {
        (Expr::Int(0, Ty::I64), _) | (_, Expr::Int(0, Ty::I64)) => int(0),
        (Expr::Int(1, Ty::I64), _) => b,
        (_, Expr::Int(1, Ty::I64)) => a,
        (Expr::Int(x, Ty::I64), Expr::Int(y, Ty::I64)) => int(x.wrapping_mul(*y)),
        _ => bin(BinaryOp::Mul, a, b),
    }
}

/// Floor division of non-negative indices.
pub(super) fn div(a: Expr, b: Expr) -> Expr {
    match (&a, &b) {
        (_, Expr::Int(1, Ty::I64)) => a,
        (Expr::Int(0, Ty::I64), _) => a,
        (Expr::Int(x, Ty::I64), Expr::Int(y, Ty::I64)) if *y > 0 => int(x.div_euclid(*y)),
        _ => bin(BinaryOp::Div, a, b),
    }
}

pub(super) fn rem(a: Expr, b: Expr) -> Expr {
    match (&a, &b) {
        (_, Expr::Int(1, Ty::I64)) => int(0),
        (Expr::Int(0, Ty::I64), _) => a,
        (Expr::Int(x, Ty::I64), Expr::Int(y, Ty::I64)) if *y > 0 => int(x.rem_euclid(*y)),
        _ => bin(BinaryOp::Rem, a, b),
    }
}

/// The smaller of two indices (folded when both are constants).
pub(super) fn min(a: Expr, b: Expr) -> Expr {
    match (&a, &b) {
        (Expr::Int(x, Ty::I64), Expr::Int(y, Ty::I64)) => int(*x.min(y)),
        _ => bin(BinaryOp::Min, a, b),
    }
}

pub(super) fn lt(a: Expr, b: Expr) -> Expr {
    bin(BinaryOp::Lt, a, b)
}

pub(super) fn ge(a: Expr, b: Expr) -> Expr {
    bin(BinaryOp::Ge, a, b)
}

pub(super) fn and(a: Expr, b: Expr) -> Expr {
    Expr::Binary {
        op: BinaryOp::And,
        ty: Ty::Bool,
        a: Box::new(a),
        b: Box::new(b),
    }
}

/// A symbolic dim as an i64 expression over the program's dims (`dims` gives their order).
pub(super) fn dim(d: &DimExpr, dims: &[String]) -> Result<Expr, String> {
    let mut out = int(0);
    for (m, c) in d.terms() {
        let mut t = int(c);
        for (a, p) in m {
            let x = match a {
                Atom::Sym(s) => {
                    let n = dims
                        .iter()
                        .position(|x| x == s)
                        .ok_or_else(|| format!("dim `{s}` is not declared by the graph"))?;
                    Expr::Dim(n)
                }
                Atom::FloorDiv(e, k) => div(dim(e, dims)?, int(*k)),
                Atom::Mod(e, k) => rem(dim(e, dims)?, int(*k)),
            };
            for _ in 0..*p {
                t = mul(t, x.clone());
            }
        }
        out = add(out, t);
    }
    Ok(out)
}

/// The row-major flat index of `idx` in a tensor of `shape` (Horner form).
pub(super) fn flat(idx: &[Expr], shape: &[Expr]) -> Expr {
    let mut acc = int(0);
    for (i, d) in idx.iter().zip(shape) {
        acc = add(mul(acc, d.clone()), i.clone());
    }
    acc
}

/// The multi-index of flat position `f` in a tensor of `shape`.
pub(super) fn unflatten(f: Expr, shape: &[Expr]) -> Vec<Expr> {
    let mut out = Vec::with_capacity(shape.len());
    let mut stride = int(1);
    for (k, d) in shape.iter().enumerate().rev() {
        let q = div(f.clone(), stride.clone());
        out.push(if k == 0 { q } else { rem(q, d.clone()) });
        stride = mul(stride, d.clone());
    }
    out.reverse();
    out
}

/// The index into an operand of `shape` broadcast (NumPy, aligned right) to an output
/// indexed by `idx`: axes of constant size 1 read index 0.
pub(super) fn broadcast_index(idx: &[Expr], shape: &[DimExpr]) -> Vec<Expr> {
    let skip = idx.len().saturating_sub(shape.len());
    shape
        .iter()
        .zip(&idx[skip..])
        .map(|(d, i)| {
            if d.as_const() == Some(1) {
                int(0)
            } else {
                i.clone()
            }
        })
        .collect()
}
