//! Layout rules: transposes and reshapes fused, removed, or folded into einsum letters.
//! Views cost nothing in the cost model, so these rules change no cost by themselves; they
//! expose contraction chains to `contraction.rs` (e.g. `linear` lowers to
//! `einsum(x, transpose(w))`, and `q @ transpose(k)` to an einsum of a transpose).

use super::{Arg, DynRule, Outcome, Plan, nodes_named, shape};
use crate::ir::Op;
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![
        Arc::new(TransposeTranspose),
        Arc::new(TransposeIdentity),
        Arc::new(EinsumTransposeOperand),
        Arc::new(TransposeEinsum),
        Arc::new(ReshapeReshape),
        Arc::new(ReshapeIdentity),
    ]
}

fn perm_of(n: &TNode) -> Option<&[usize]> {
    match n.op.op() {
        Op::Transpose { perm } => Some(perm),
        _ => None,
    }
}

fn spec_of(n: &TNode) -> Option<Spec> {
    match n.op.op() {
        Op::Einsum { spec } => Spec::parse(spec),
        _ => None,
    }
}

/// `transpose-transpose`: transpose(transpose(x, p), q) ⇒ transpose(x, r), r[i] = p[q[i]];
/// when r is the identity, ⇒ x.
struct TransposeTranspose;

impl DynRule for TransposeTranspose {
    fn name(&self) -> &'static str {
        "transpose-transpose"
    }
    fn root(&self) -> &'static str {
        "transpose"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(q) = perm_of(node) else {
            return vec![];
        };
        let mut out = Vec::new();
        for inner in nodes_named(eg, node.children[0], "transpose") {
            let Some(p) = perm_of(&inner) else { continue };
            if p.len() != q.len() || q.iter().any(|&i| i >= p.len()) {
                continue;
            }
            let r: Vec<usize> = q.iter().map(|&i| p[i]).collect();
            let x = inner.children[0];
            if r.iter().enumerate().all(|(i, &j)| i == j) {
                out.push(Outcome::Same(x));
            } else {
                let mut plan = Plan::new();
                plan.push(Op::Transpose { perm: r }, vec![Arg::Class(x)]);
                out.push(Outcome::Build(plan));
            }
        }
        out
    }
}

/// `transpose-identity`: transpose(x, [0, 1, …, n−1]) ⇒ x.
struct TransposeIdentity;

impl DynRule for TransposeIdentity {
    fn name(&self) -> &'static str {
        "transpose-identity"
    }
    fn root(&self) -> &'static str {
        "transpose"
    }
    fn rewrite(&self, _eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        match perm_of(node) {
            Some(p) if p.iter().enumerate().all(|(i, &j)| i == j) => {
                vec![Outcome::Same(node.children[0])]
            }
            _ => vec![],
        }
    }
}

/// `einsum-transpose-operand`: einsum(…, transpose(x, p), …) with term L for that operand
/// ⇒ einsum(…, x, …) with term L′, L′[p[k]] = L[k].
struct EinsumTransposeOperand;

impl DynRule for EinsumTransposeOperand {
    fn name(&self) -> &'static str {
        "einsum-transpose-operand"
    }
    fn root(&self) -> &'static str {
        "einsum"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(spec) = spec_of(node) else {
            return vec![];
        };
        let mut out = Vec::new();
        for (i, &child) in node.children.iter().enumerate() {
            for t in nodes_named(eg, child, "transpose") {
                let Some(p) = perm_of(&t) else { continue };
                let Some(new) = spec.untranspose_operand(i, p) else {
                    continue;
                };
                let mut args: Vec<Arg> = node.children.iter().map(|c| Arg::Class(*c)).collect();
                args[i] = Arg::Class(t.children[0]);
                let mut plan = Plan::new();
                plan.push(
                    Op::Einsum {
                        spec: new.canonical().text(),
                    },
                    args,
                );
                out.push(Outcome::Build(plan));
            }
        }
        out
    }
}

/// `transpose-einsum`: transpose(einsum(S → O), p) ⇒ einsum(S → O′), O′[k] = O[p[k]].
struct TransposeEinsum;

impl DynRule for TransposeEinsum {
    fn name(&self) -> &'static str {
        "transpose-einsum"
    }
    fn root(&self) -> &'static str {
        "transpose"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(p) = perm_of(node) else {
            return vec![];
        };
        let mut out = Vec::new();
        for e in nodes_named(eg, node.children[0], "einsum") {
            let Some(new) = spec_of(&e).and_then(|s| s.permute_output(p)) else {
                continue;
            };
            let mut plan = Plan::new();
            plan.push(
                Op::Einsum {
                    spec: new.canonical().text(),
                },
                e.children.iter().map(|c| Arg::Class(*c)).collect(),
            );
            out.push(Outcome::Build(plan));
        }
        out
    }
}

/// `reshape-reshape`: reshape(reshape(x, s₁), s₂) ⇒ reshape(x, s₂) (row-major order is
/// kept by both); when s₂ is x's shape, ⇒ x.
struct ReshapeReshape;

impl DynRule for ReshapeReshape {
    fn name(&self) -> &'static str {
        "reshape-reshape"
    }
    fn root(&self) -> &'static str {
        "reshape"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Op::Reshape { shape: s2 } = node.op.op() else {
            return vec![];
        };
        let mut out = Vec::new();
        for inner in nodes_named(eg, node.children[0], "reshape") {
            let x = inner.children[0];
            if shape(eg, x) == Some(s2.as_slice()) {
                out.push(Outcome::Same(x));
            } else {
                let mut plan = Plan::new();
                plan.push(Op::Reshape { shape: s2.clone() }, vec![Arg::Class(x)]);
                out.push(Outcome::Build(plan));
            }
        }
        out
    }
}

/// `reshape-identity`: reshape(x, shape(x)) ⇒ x.
struct ReshapeIdentity;

impl DynRule for ReshapeIdentity {
    fn name(&self) -> &'static str {
        "reshape-identity"
    }
    fn root(&self) -> &'static str {
        "reshape"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Op::Reshape { shape: s } = node.op.op() else {
            return vec![];
        };
        let x = node.children[0];
        if shape(eg, x) == Some(s.as_slice()) {
            vec![Outcome::Same(x)]
        } else {
            vec![]
        }
    }
}
