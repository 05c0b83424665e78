//! cosFormer's reweighting split (R4 in shared/notes/architectures.md): scores reweighted by
//! the cosine of a scaled position difference are one contraction over twice the features,
//! by cos(a − b) = cos a cos b + sin a sin b. The reweighted scores then regroup like any
//! score matrix without a mask (`einsum-regroup`, `einsum-presum`: O(T·D²)) or, under a
//! causal mask, become chunked linear attention (`masked-attention-chunk`).
//!
//! The angle is proved to be f(t − s) for an f that is linear and homogeneous, so that
//! f(t − s) = f(t) − f(s): a chain of a cast of the integer difference `iota row − iota col`
//! (either order: cos is even) to float, then multiplications and divisions by values
//! constant in (t, s) (their shapes are all ones) and negations. Anything else (an offset
//! added to the angle, a product of two position-dependent factors, a non-float angle) is
//! refused.

use super::{Arg, DynRule, Outcome, Plan, nodes_named, shape};
use crate::ir::{BinaryOp, DimExpr, Op, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![Arc::new(CosDifference)]
}

/// How many operators deep the angle's recogniser looks.
const DEPTH: usize = 8;

/// `cos-difference`: with S = einsum(A, B) a two-operand contraction whose last two output
/// letters are t (A's only) and s (B's only), d a letter summed between A and B, and the
/// angle f(t − s) with f linear and homogeneous (see the module doc),
///   S ⊙ cos(f(t − s)) ⇒ einsum(concat(A ⊙ cos f(t), A ⊙ sin f(t), d),
///                               concat(B ⊙ cos f(s), B ⊙ sin f(s), d))
/// with the same letters: Σ_d A_td B_sd (cos f(t) cos f(s) + sin f(t) sin f(s)). The vectors
/// cos f(·) and sin f(·) are computed once over [T] by the angle's own operators applied to
/// `iota` instead of the difference, and broadcast along A's t axis and B's s axis. The
/// reweighting [.., T, T] (all ones before its last two axes) must broadcast to S's shape,
/// which is the product's.
struct CosDifference;

impl DynRule for CosDifference {
    fn name(&self) -> &'static str {
        "cos-difference"
    }
    fn root(&self) -> &'static str {
        "mul"
    }
    fn rewrite(&self, eg: &EG, class: Id, node: &TNode) -> Vec<Outcome> {
        if node.children.len() != 2 {
            return vec![];
        }
        let Some(out_shape) = shape(eg, class).map(<[DimExpr]>::to_vec) else {
            return vec![];
        };
        let rank = out_shape.len();
        if rank < 2 || out_shape[rank - 1] != out_shape[rank - 2] {
            return vec![];
        }
        let t = out_shape[rank - 1].clone();
        let mut out = Vec::new();
        for si in 0..2 {
            let (s, r) = (eg.find(node.children[si]), eg.find(node.children[1 - si]));
            if shape(eg, s) != Some(&out_shape[..]) || !reweighting_shape(eg, r, &t, rank) {
                continue;
            }
            let Some(angle) = cos_angle(eg, r, &t) else {
                continue;
            };
            for e in nodes_named(eg, s, "einsum") {
                if let Some(plan) = split(eg, &e, &angle, &t) {
                    out.push(Outcome::Build(plan));
                }
            }
        }
        out
    }
}

/// Whether `r` is a float [.., T, T] with only ones before its last two axes and a rank at
/// most `rank`.
fn reweighting_shape(eg: &EG, r: Id, t: &DimExpr, rank: usize) -> bool {
    let Some(ty) = eg[r].data.tensor() else {
        return false;
    };
    let n = ty.shape.len();
    ty.dtype.is_float()
        && (2..=rank).contains(&n)
        && ty.shape[n - 2] == *t
        && ty.shape[n - 1] == *t
        && ty.shape[..n - 2].iter().all(is_one)
}

fn is_one(d: &DimExpr) -> bool {
    d.as_const() == Some(1)
}

/// One operator of the angle between the position difference and the cosine: the operator
/// and, for a binary one, its other operand (constant in (t, s)) and which side it is on.
#[derive(Clone, Debug)]
struct Step {
    op: Op,
    other: Option<(Id, bool)>,
}

/// The angle θ of an e-class cos(θ), as the steps that make f(t − s) from t − s, innermost
/// first.
fn cos_angle(eg: &EG, r: Id, t: &DimExpr) -> Option<Vec<Step>> {
    eg[r].nodes.iter().find_map(|n| match n.op.op() {
        Op::Unary(UnaryOp::Cos) => {
            let theta = n.children[0];
            let float = eg[theta].data.tensor()?.dtype.is_float();
            let steps = linear(eg, theta, t, DEPTH)?;
            // The cast to float is part of the chain.
            (float && steps.iter().any(|s| matches!(s.op, Op::Cast { .. }))).then_some(steps)
        }
        _ => None,
    })
}

/// Steps making `id` from the integer t − s (or s − t), innermost first; `None` unless every
/// step is linear and homogeneous.
fn linear(eg: &EG, id: Id, t: &DimExpr, depth: usize) -> Option<Vec<Step>> {
    if depth == 0 {
        return None;
    }
    let ty = eg[id].data.tensor()?;
    let float = ty.dtype.is_float();
    eg[id].nodes.iter().find_map(|n| {
        let step = |op: Op, other: Option<(Id, bool)>, inner: Id| {
            let mut v = linear(eg, inner, t, depth - 1)?;
            v.push(Step { op, other });
            Some(v)
        };
        match n.op.op() {
            Op::Binary(BinaryOp::Sub) if ty.dtype.is_int() => {
                let (a, b) = (index(eg, n.children[0], t)?, index(eg, n.children[1], t)?);
                (a != b).then(Vec::new)
            }
            Op::Cast { to } if to.is_float() => {
                let inner = eg[n.children[0]].data.tensor()?;
                inner.dtype.is_int().then_some(())?;
                step(n.op.op().clone(), None, n.children[0])
            }
            Op::Unary(UnaryOp::Neg) if float => step(n.op.op().clone(), None, n.children[0]),
            Op::Binary(BinaryOp::Mul) if float => (0..2).find_map(|i| {
                let other = n.children[1 - i];
                constant(eg, other)
                    .then(|| step(n.op.op().clone(), Some((other, i == 0)), n.children[i]))
                    .flatten()
            }),
            Op::Binary(BinaryOp::Div) if float && constant(eg, n.children[1]) => step(
                n.op.op().clone(),
                Some((n.children[1], true)),
                n.children[0],
            ),
            _ => None,
        }
    })
}

/// Whether `id` is constant in (t, s): a tensor whose dims are all 1 (or a scalar).
fn constant(eg: &EG, id: Id) -> bool {
    eg[id]
        .data
        .tensor()
        .is_some_and(|ty| ty.shape.iter().all(is_one))
}

/// Whether `id` is an `iota` [.., T, T] along its row axis (`Some(true)`) or its column
/// axis (`Some(false)`).
fn index(eg: &EG, id: Id, t: &DimExpr) -> Option<bool> {
    eg[id].nodes.iter().find_map(|n| match n.op.op() {
        Op::Iota { shape, axis } if shape.len() >= 2 => {
            let r = shape.len();
            let square = shape[r - 2] == *t && shape[r - 1] == *t;
            let ones = shape[..r - 2].iter().all(is_one);
            (square && ones && *axis >= r - 2).then_some(*axis == r - 2)
        }
        _ => None,
    })
}

/// The split contraction for one einsum e-node of S, or `None` when its letters do not fit.
fn split(eg: &EG, e: &TNode, angle: &[Step], t: &DimExpr) -> Option<Plan> {
    let Op::Einsum { spec } = e.op.op() else {
        return None;
    };
    let spec = Spec::parse(spec)?;
    if spec.inputs.len() != 2 {
        return None;
    }
    let n = spec.output.len();
    let (lt, ls) = (spec.output[n - 2], spec.output[n - 1]);
    let has = |i: usize, c: char| spec.inputs[i].contains(&c);
    let ia = (0..2).find(|&i| has(i, lt) && !has(i, ls) && has(1 - i, ls) && !has(1 - i, lt))?;
    let ib = 1 - ia;
    let d = *spec.inputs[ia]
        .iter()
        .find(|&&c| spec.is_summed(c) && has(ib, c))?;
    let mut plan = Plan::new();
    // f(i) over i < T as a [T, 1] column, then its cosine and sine.
    let mut x = plan.push(
        Op::Iota {
            shape: vec![t.clone(), DimExpr::constant(1)],
            axis: 0,
        },
        vec![],
    );
    for s in angle {
        let args = match s.other {
            None => vec![x],
            Some((o, true)) => vec![x, Arg::Class(o)],
            Some((o, false)) => vec![Arg::Class(o), x],
        };
        x = plan.push(s.op.clone(), args);
    }
    let cos = plan.push(Op::Unary(UnaryOp::Cos), vec![x]);
    let sin = plan.push(Op::Unary(UnaryOp::Sin), vec![x]);
    let mut operands = [Arg::Class(e.children[0]), Arg::Class(e.children[1])];
    for (i, letter) in [(ia, lt), (ib, ls)] {
        let term = &spec.inputs[i];
        let p = term.iter().position(|&c| c == letter)?;
        let dims = shape(eg, e.children[i])?;
        if dims[p] != *t {
            return None;
        }
        // [T, 1, …, 1]: T along the operand's position axis, broadcast over the later axes.
        let mut along = vec![t.clone()];
        along.extend((p + 1..term.len()).map(|_| DimExpr::constant(1)));
        let halves: Vec<Arg> = [cos, sin]
            .into_iter()
            .map(|w| {
                let w = plan.push(
                    Op::Reshape {
                        shape: along.clone(),
                    },
                    vec![w],
                );
                plan.push(Op::Binary(BinaryOp::Mul), vec![operands[i], w])
            })
            .collect();
        let axis = term.iter().position(|&c| c == d)?;
        operands[i] = plan.push(Op::Concat { axis }, halves);
    }
    plan.push(
        Op::Einsum {
            spec: spec.canonical().text(),
        },
        operands.to_vec(),
    );
    Some(plan)
}
