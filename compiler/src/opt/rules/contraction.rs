//! Contraction rules (R4 in shared/notes/architectures.md): einsum chains regrouped and sums
//! moved into and out of einsums. These change complexity, e.g. the non-causal linear
//! attention (φQ·φKᵀ)·V, O(T²), becomes φQ·(φKᵀ·V), O(T), and its normaliser
//! Σ_s (φQ·φKᵀ)[…, t, s] becomes φQ·(Σ_s φK). The cost model picks which form is extracted.

use super::{Arg, DynRule, Outcome, Plan, nodes_named};
use crate::ir::{Op, ReduceOp};
use crate::opt::analysis::EG;
use crate::opt::einsum::{Spec, flatten, split};
use crate::opt::lang::TNode;
use egg::Id;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![
        Arc::new(EinsumRegroup),
        Arc::new(SumEinsum),
        Arc::new(EinsumPresum),
    ]
}

fn spec_of(n: &TNode) -> Option<Spec> {
    match n.op.op() {
        Op::Einsum { spec } => Spec::parse(spec),
        _ => None,
    }
}

fn einsum(spec: &Spec) -> Op {
    Op::Einsum {
        spec: spec.canonical().text(),
    }
}

/// `einsum-regroup`: a two-operand einsum with a two-operand einsum as an operand,
/// einsum(einsum(A, B), C) ⇒ einsum(A, einsum(B, C)) and ⇒ einsum(B, einsum(A, C)) (the
/// nested einsum may be either operand; operand order inside a spec is immaterial, so these
/// two cover every bracketing of the three operands). The specs come from the letters:
/// flatten to one three-operand contraction, then contract the new pair first, keeping
/// exactly the letters that occur outside the pair (`einsum::split`). A new pair must sum at
/// least one letter: an outer product is never proposed.
struct EinsumRegroup;

impl DynRule for EinsumRegroup {
    fn name(&self) -> &'static str {
        "einsum-regroup"
    }
    fn root(&self) -> &'static str {
        "einsum"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(outer) = spec_of(node) else {
            return vec![];
        };
        if node.children.len() != 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for pos in 0..2 {
            for inner_node in nodes_named(eg, node.children[pos], "einsum") {
                let Some(inner) = spec_of(&inner_node) else {
                    continue;
                };
                if inner_node.children.len() != 2 {
                    continue;
                }
                let Some(flat) = flatten(&outer, pos, &inner) else {
                    continue;
                };
                // Operands of the flat contraction: the inner pair at pos, pos + 1.
                let mut operands = node.children.clone();
                operands.splice(pos..pos + 1, inner_node.children.iter().copied());
                let other = if pos == 0 { 2 } else { 0 };
                for keep in [pos, pos + 1] {
                    let mut group = vec![keep, other];
                    group.sort();
                    let Some((inner_s, outer_s)) = split(&flat, &group) else {
                        continue;
                    };
                    // A pair that contracts nothing is an outer product (batched or not):
                    // never cheaper, and allowing it makes the number of e-classes grow
                    // exponentially with the length of a chain.
                    if inner_s.output.len() == inner_s.letters().len() {
                        continue;
                    }
                    let mut plan = Plan::new();
                    let grouped = plan.push(
                        einsum(&inner_s),
                        group.iter().map(|&g| Arg::Class(operands[g])).collect(),
                    );
                    // The outer operands: the rest in order, the intermediate at group[0].
                    let mut args = Vec::new();
                    for (j, &c) in operands.iter().enumerate() {
                        if j == group[0] {
                            args.push(grouped);
                        } else if !group.contains(&j) {
                            args.push(Arg::Class(c));
                        }
                    }
                    plan.push(einsum(&outer_s), args);
                    out.push(Outcome::Build(plan));
                }
            }
        }
        out
    }
}

/// `sum-einsum`: sum(einsum(S → O), axes) ⇒ einsum(S → O ∖ axes) (the summed output letters
/// become contracted letters); with `keepdim`, followed by a reshape to the kept shape.
struct SumEinsum;

impl DynRule for SumEinsum {
    fn name(&self) -> &'static str {
        "sum-einsum"
    }
    fn root(&self) -> &'static str {
        "sum"
    }
    fn rewrite(&self, eg: &EG, class: Id, node: &TNode) -> Vec<Outcome> {
        let Op::Reduce {
            op: ReduceOp::Sum,
            axes,
            keepdim,
        } = node.op.op()
        else {
            return vec![];
        };
        let mut out = Vec::new();
        for e in nodes_named(eg, node.children[0], "einsum") {
            let Some(spec) = spec_of(&e) else { continue };
            if axes.iter().any(|&a| a >= spec.output.len()) {
                continue;
            }
            let mut plan = Plan::new();
            let summed = plan.push(
                einsum(&spec.drop_output_axes(axes)),
                e.children.iter().map(|c| Arg::Class(*c)).collect(),
            );
            if *keepdim {
                let Some(t) = eg[class].data.tensor() else {
                    continue;
                };
                plan.push(
                    Op::Reshape {
                        shape: t.shape.clone(),
                    },
                    vec![summed],
                );
            }
            out.push(Outcome::Build(plan));
        }
        out
    }
}

/// `einsum-presum`: in an einsum of two or more operands, letters that occur in one operand
/// only and not in the output are summed in that operand first:
/// einsum(…, X, …) ⇒ einsum(…, sum(X, axes), …) with those axes dropped from X's term.
struct EinsumPresum;

impl DynRule for EinsumPresum {
    fn name(&self) -> &'static str {
        "einsum-presum"
    }
    fn root(&self) -> &'static str {
        "einsum"
    }
    fn rewrite(&self, _eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(spec) = spec_of(node) else {
            return vec![];
        };
        if node.children.len() < 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for i in 0..node.children.len() {
            let axes = spec.private_summed_axes(i);
            if axes.is_empty() {
                continue;
            }
            let mut plan = Plan::new();
            let reduced = plan.push(
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axes: axes.clone(),
                    keepdim: false,
                },
                vec![Arg::Class(node.children[i])],
            );
            let mut args: Vec<Arg> = node.children.iter().map(|c| Arg::Class(*c)).collect();
            args[i] = reduced;
            plan.push(einsum(&spec.drop_operand_axes(i, &axes)), args);
            out.push(Outcome::Build(plan));
        }
        out
    }
}
