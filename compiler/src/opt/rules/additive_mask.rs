//! Additive masks (softmax(QKᵀ·s + M) with M = 0 where visible and −∞ elsewhere, as many
//! codebases write the mask) read as the select form the attention rules match.

use super::{Arg, DynRule, Outcome, Plan, shape};
use crate::ir::{Literal, Op, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![Arc::new(AdditiveMask)]
}

/// How many broadcasts deep a constant is looked for.
const DEPTH: usize = 3;

/// `additive-mask`: X + select(C, 0, −∞) ⇒ select(C, X, −∞), and X + select(C, −∞, 0) ⇒
/// select(¬C, X, −∞) (either operand order). Exact for every X but +∞ and NaN where the mask
/// hides (X + (−∞) is NaN there, the select −∞): scores are finite. The zero and −∞ may be
/// scalars or broadcasts of them (`zeros([T, T])`); the result must have the sum's shape.
struct AdditiveMask;

impl DynRule for AdditiveMask {
    fn name(&self) -> &'static str {
        "additive-mask"
    }
    fn root(&self) -> &'static str {
        "add"
    }
    fn rewrite(&self, eg: &EG, class: Id, node: &TNode) -> Vec<Outcome> {
        if node.children.len() != 2 {
            return vec![];
        }
        let Some(ty) = eg[class].data.tensor() else {
            return vec![];
        };
        if !ty.dtype.is_float() {
            return vec![];
        }
        let mut out = Vec::new();
        for mi in 0..2 {
            let (m, x) = (eg.find(node.children[mi]), eg.find(node.children[1 - mi]));
            if shape(eg, x).is_none() {
                continue;
            }
            for sel in eg[m]
                .nodes
                .iter()
                .filter(|n| matches!(n.op.op(), Op::Select))
            {
                let (c, a, b) = (sel.children[0], sel.children[1], sel.children[2]);
                let negate = if is_const(eg, a, 0.0, DEPTH)
                    && is_const(eg, b, f64::NEG_INFINITY, DEPTH)
                {
                    false
                } else if is_const(eg, a, f64::NEG_INFINITY, DEPTH) && is_const(eg, b, 0.0, DEPTH) {
                    true
                } else {
                    continue;
                };
                let mut plan = Plan::new();
                let cond = if negate {
                    plan.push(Op::Unary(UnaryOp::Not), vec![Arg::Class(c)])
                } else {
                    Arg::Class(c)
                };
                let minf = plan.push(
                    Op::Const {
                        value: Literal::Float(f64::NEG_INFINITY),
                        dtype: ty.dtype,
                    },
                    vec![],
                );
                plan.push(Op::Select, vec![cond, Arg::Class(x), minf]);
                out.push(Outcome::Build(plan));
            }
        }
        out
    }
}

/// Whether `id` holds the float constant `v`, directly or through broadcasts.
fn is_const(eg: &EG, id: Id, v: f64, depth: usize) -> bool {
    eg[id].nodes.iter().any(|n| match n.op.op() {
        Op::Const {
            value: Literal::Float(x),
            ..
        } => *x == v,
        Op::Broadcast { .. } => depth > 0 && is_const(eg, n.children[0], v, depth - 1),
        _ => false,
    })
}
