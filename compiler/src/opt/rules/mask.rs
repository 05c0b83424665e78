//! Mask recognition: the predicate over (query t, key s, batch indices b0, b1, …) that a bool
//! e-class broadcasting to the scores [batch…, T, S] computes, built from `iota`, i32 and bool
//! constants, integer arithmetic (add, sub, mul, div and rem by constants, minimum, maximum,
//! neg), comparisons, and/or/not, broadcasts and reshapes that only add or drop leading 1s.
//! Axes are right-aligned as in broadcasting: the last axis is s, the one before it t, the
//! others the scores' batch axes (a pattern per head reads the head axis); an axis of size 1
//! contributes index 0. Anything else (a data-dependent mask, a per-head table) is not
//! recognised, and the attention rule leaves the graph alone.

use crate::ir::mask::{MAX_DEPTH, Mask};
use crate::ir::{BinaryOp, DimExpr, Literal, Op, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;

/// The predicate of a bool e-class that broadcasts to scores of rank `rank`, if it is a
/// structured mask.
pub fn recognise(eg: &EG, class: Id, rank: usize) -> Option<Mask> {
    let m = rec(eg, eg.find(class), rank, &mut Vec::new())?;
    m.check().ok()?;
    Some(m)
}

fn strip_leading_ones(shape: &[DimExpr]) -> &[DimExpr] {
    let one = DimExpr::constant(1);
    let n = shape.iter().take_while(|d| **d == one).count();
    &shape[n..]
}

/// The predicate of `class`; `path` holds the e-classes being recognised (the e-graph may
/// have cycles).
fn rec(eg: &EG, class: Id, rank: usize, path: &mut Vec<Id>) -> Option<Mask> {
    let class = eg.find(class);
    if path.len() > MAX_DEPTH || path.contains(&class) {
        return None;
    }
    let ty = eg[class].data.tensor()?;
    if !matches!(ty.dtype, DType::I32 | DType::Bool) || ty.rank() > rank {
        return None;
    }
    if let Some(t) = table(eg, class, ty, rank) {
        return Some(t);
    }
    path.push(class);
    let found = eg[class]
        .nodes
        .iter()
        .find_map(|n| node_pred(eg, n, rank, path).filter(|m| m.kind().is_ok()));
    path.pop();
    found
}

/// The predicate of one e-node of a recognisable class.
fn node_pred(eg: &EG, n: &TNode, rank: usize, path: &mut Vec<Id>) -> Option<Mask> {
    let kids = &n.children;
    match n.op.op() {
        Op::Iota { shape, axis } => {
            if shape[*axis] == DimExpr::constant(1) {
                return Some(Mask::Int(0));
            }
            match shape.len().checked_sub(axis + 1)? {
                0 => Some(Mask::K),
                1 => Some(Mask::Q),
                j => Some(Mask::Batch(rank.checked_sub(j + 1)?)),
            }
        }
        Op::Const {
            value: Literal::Int(c),
            dtype: DType::I32,
        } => i32::try_from(*c).ok().map(|c| Mask::Int(c.into())),
        Op::Const {
            value: Literal::Bool(b),
            dtype: DType::Bool,
        } => Some(Mask::Bool(*b)),
        Op::Unary(UnaryOp::Not) => rec(eg, kids[0], rank, path).map(|x| Mask::Not(Box::new(x))),
        Op::Unary(UnaryOp::Abs) => {
            // |x| = max(x, 0 − x), also for i32::MIN (both wrap to itself).
            let x = rec(eg, kids[0], rank, path)?;
            let neg = Mask::bin(BinaryOp::Sub, Mask::Int(0), x.clone());
            Some(Mask::bin(BinaryOp::Max, x, neg))
        }
        Op::Unary(UnaryOp::Neg) => {
            rec(eg, kids[0], rank, path).map(|x| Mask::bin(BinaryOp::Sub, Mask::Int(0), x))
        }
        Op::Binary(op) if *op != BinaryOp::Pow => {
            let a = rec(eg, kids[0], rank, path)?;
            let b = rec(eg, kids[1], rank, path)?;
            Some(Mask::bin(*op, a, b))
        }
        Op::Broadcast { .. } => rec(eg, kids[0], rank, path),
        Op::Reshape { shape } => {
            let from = eg[eg.find(kids[0])].data.tensor()?;
            if strip_leading_ones(&from.shape) == strip_leading_ones(shape) {
                rec(eg, kids[0], rank, path)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Most values of a recognised table.
const MAX_TABLE: usize = 4096;

/// A constant i32 e-class that varies along one batch axis only (size > 1, every other axis
/// 1), as `table(bJ, [...])`.
fn table(eg: &EG, class: Id, ty: &crate::ir::TensorType, rank: usize) -> Option<Mask> {
    if ty.dtype != DType::I32 {
        return None;
    }
    let one = DimExpr::constant(1);
    let mut varying = ty.shape.iter().enumerate().filter(|(_, d)| **d != one);
    let (axis, d) = varying.next()?;
    if varying.next().is_some() {
        return None;
    }
    let n = usize::try_from(d.as_const()?).ok()?;
    let from_right = ty.rank() - 1 - axis;
    if from_right < 2 || n > MAX_TABLE {
        return None;
    }
    let vs = const_values(eg, class, 0)?;
    if vs.len() != n {
        return None;
    }
    Some(Mask::Table(rank.checked_sub(from_right + 1)?, vs))
}

/// The row-major values of a constant i32 e-class built from constants, broadcasts of a
/// single value, concatenations and reshapes.
fn const_values(eg: &EG, class: Id, depth: usize) -> Option<Vec<i64>> {
    let class = eg.find(class);
    let ty = eg[class].data.tensor()?;
    if depth > MAX_DEPTH || ty.dtype != DType::I32 {
        return None;
    }
    let n = ty
        .shape
        .iter()
        .map(|d| d.as_const().and_then(|c| usize::try_from(c).ok()))
        .product::<Option<usize>>()?;
    if n > MAX_TABLE {
        return None;
    }
    eg[class].nodes.iter().find_map(|node| {
        let kids = &node.children;
        let vs = match node.op.op() {
            Op::Const {
                value: Literal::Int(c),
                ..
            } => vec![*c],
            Op::Broadcast { .. } => {
                let v = const_values(eg, kids[0], depth + 1)?;
                match v[..] {
                    [x] => vec![x; n],
                    _ => return None,
                }
            }
            Op::Reshape { .. } => const_values(eg, kids[0], depth + 1)?,
            Op::Concat { axis } => {
                // Row-major concatenation is plain appending when the axes before `axis`
                // are all 1.
                let one = DimExpr::constant(1);
                if ty.shape[..*axis].iter().any(|d| *d != one) {
                    return None;
                }
                let mut all = Vec::new();
                for k in kids {
                    all.extend(const_values(eg, *k, depth + 1)?);
                }
                all
            }
            _ => return None,
        };
        (vs.len() == n).then_some(vs)
    })
}
