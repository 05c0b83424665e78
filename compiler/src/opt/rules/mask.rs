//! Mask recognition: the predicate over (query t, key s) that a bool e-class of shape
//! [1, …, 1, T, S] computes, built from `iota`, i32 and bool constants, integer arithmetic
//! (add, sub, mul, div and rem by constants, minimum, maximum, neg), comparisons, and/or/not,
//! broadcasts and reshapes that only add or drop leading 1s. Axes are right-aligned as in
//! broadcasting: the last axis is s, the one before it t; an axis of size 1 contributes
//! index 0. Anything else (a data-dependent mask, a mask that differs per head) is not
//! recognised, and the attention rule leaves the graph alone.

use crate::ir::mask::{MAX_DEPTH, Mask};
use crate::ir::{BinaryOp, DimExpr, Literal, Op, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;

/// The predicate of a bool e-class, if it is a structured mask.
pub fn recognise(eg: &EG, class: Id) -> Option<Mask> {
    let m = rec(eg, eg.find(class), &mut Vec::new())?;
    m.check().ok()?;
    Some(m)
}

fn leading_ones(shape: &[DimExpr]) -> bool {
    let one = DimExpr::constant(1);
    shape[..shape.len().saturating_sub(2)]
        .iter()
        .all(|d| *d == one)
}

fn strip_leading_ones(shape: &[DimExpr]) -> &[DimExpr] {
    let one = DimExpr::constant(1);
    let n = shape.iter().take_while(|d| **d == one).count();
    &shape[n..]
}

/// The predicate of `class`; `path` holds the e-classes being recognised (the e-graph may
/// have cycles).
fn rec(eg: &EG, class: Id, path: &mut Vec<Id>) -> Option<Mask> {
    let class = eg.find(class);
    if path.len() > MAX_DEPTH || path.contains(&class) {
        return None;
    }
    let ty = eg[class].data.tensor()?;
    if !matches!(ty.dtype, DType::I32 | DType::Bool) || !leading_ones(&ty.shape) {
        return None;
    }
    path.push(class);
    let found = eg[class]
        .nodes
        .iter()
        .find_map(|n| node_pred(eg, n, path).filter(|m| m.kind().is_ok()));
    path.pop();
    found
}

/// The predicate of one e-node of a recognisable class.
fn node_pred(eg: &EG, n: &TNode, path: &mut Vec<Id>) -> Option<Mask> {
    let kids = &n.children;
    match n.op.op() {
        Op::Iota { shape, axis } => {
            if shape[*axis] == DimExpr::constant(1) {
                return Some(Mask::Int(0));
            }
            match shape.len().checked_sub(axis + 1)? {
                0 => Some(Mask::K),
                1 => Some(Mask::Q),
                _ => None,
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
        Op::Unary(UnaryOp::Not) => rec(eg, kids[0], path).map(|x| Mask::Not(Box::new(x))),
        Op::Unary(UnaryOp::Neg) => {
            rec(eg, kids[0], path).map(|x| Mask::bin(BinaryOp::Sub, Mask::Int(0), x))
        }
        Op::Binary(op) if *op != BinaryOp::Pow => {
            let a = rec(eg, kids[0], path)?;
            let b = rec(eg, kids[1], path)?;
            Some(Mask::bin(*op, a, b))
        }
        Op::Broadcast { .. } => rec(eg, kids[0], path),
        Op::Reshape { shape } => {
            let from = eg[eg.find(kids[0])].data.tensor()?;
            if strip_leading_ones(&from.shape) == strip_leading_ones(shape) {
                rec(eg, kids[0], path)
            } else {
                None
            }
        }
        _ => None,
    }
}
