//! Merge rules: contractions that share an operand become one contraction against the
//! concatenation of their weights (Q/K/V projections, SwiGLU's gate and up projections), read
//! back with slices; chunked linear attentions that differ only in their values become one. The weights' concatenation depends on parameters only, so it is a
//! load-time constant (see `cost.rs`): the merged form reads the shared operand once and runs
//! one kernel instead of n.

use super::{Arg, DynRule, Outcome, Plan, shape};
use crate::ir::{DimExpr, Op};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![
        Arc::new(EinsumMergeSiblings),
        Arc::new(LinearAttnMergeValues),
    ]
}

/// The most contractions one merge joins (a bound on the concatenation's size).
const MAX_GROUP: usize = 8;

/// `einsum-merge-siblings`: contractions of one operand X with weights W₁ … Wₙ under the same
/// spec, whose weights differ only along one axis k whose letter is an output letter that X
/// lacks (the projection's output features),
///   einsum(S; X, Wᵢ) ⇒ slice(einsum(S; X, concat(W₁ … Wₙ, k)), o, offᵢ, offᵢ + |Wᵢ|ₖ)
/// with o the letter's output axis and offᵢ = Σ_{j<i} |Wⱼ|ₖ. Every Wᵢ must be a weight (a
/// parameter, possibly through views), so the concatenation is computed once at load time.
/// The siblings are the einsum parents of X's e-class, ordered by their weight's e-class id,
/// so every member of a group proposes the same merged contraction. Only the whole group is
/// proposed, not its subsets: when another rule has made one sibling unnecessary (e.g. a sum
/// moved into it), the rest stay unmerged.
struct EinsumMergeSiblings;

impl DynRule for EinsumMergeSiblings {
    fn name(&self) -> &'static str {
        "einsum-merge-siblings"
    }
    fn root(&self) -> &'static str {
        "einsum"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Op::Einsum { spec: text } = node.op.op() else {
            return vec![];
        };
        let Some(spec) = Spec::parse(text) else {
            return vec![];
        };
        if node.children.len() != 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for shared in 0..2 {
            let weight = 1 - shared;
            let x = eg.find(node.children[shared]);
            let w = eg.find(node.children[weight]);
            if !is_weight(eg, w, 4) {
                continue;
            }
            // The merge axis: the one letter of W's term that is an output letter X lacks.
            let axes: Vec<usize> = spec.inputs[weight]
                .iter()
                .enumerate()
                .filter(|(_, c)| spec.output.contains(c) && !spec.inputs[shared].contains(c))
                .map(|(k, _)| k)
                .collect();
            let [k] = axes[..] else {
                continue;
            };
            let letter = spec.inputs[weight][k];
            let Some(o) = spec.output.iter().position(|c| *c == letter) else {
                continue;
            };
            let Some(w_shape) = shape(eg, w) else {
                continue;
            };
            let group = siblings(eg, x, text, shared, w_shape, k);
            if group.len() < 2 || group.len() > MAX_GROUP || !group.contains(&w) {
                continue;
            }
            let mut offset = DimExpr::constant(0);
            let mut mine = None;
            for &g in &group {
                let Some(size) = shape(eg, g).and_then(|s| s.get(k)).cloned() else {
                    break;
                };
                if g == w {
                    mine = Some((offset.clone(), offset.add(&size)));
                }
                offset = offset.add(&size);
            }
            let Some((start, end)) = mine else {
                continue;
            };
            let mut plan = Plan::new();
            let cat = plan.push(
                Op::Concat { axis: k },
                group.iter().map(|g| Arg::Class(*g)).collect(),
            );
            let mut operands = vec![Arg::Class(x), Arg::Class(x)];
            operands[weight] = cat;
            let merged = plan.push(Op::Einsum { spec: text.clone() }, operands);
            plan.push(
                Op::Slice {
                    axis: o,
                    start,
                    end,
                    step: 1,
                },
                vec![merged],
            );
            out.push(Outcome::Build(plan));
        }
        out
    }
}

/// The weights of the einsum parents of `x` that compute `spec` with `x` at operand `shared`
/// and a weight of `w_shape` except along axis `k`; deduplicated, ordered by e-class id.
fn siblings(eg: &EG, x: Id, spec: &str, shared: usize, w_shape: &[DimExpr], k: usize) -> Vec<Id> {
    let mut out: Vec<Id> = Vec::new();
    for parent in eg[x].parents() {
        for n in &eg[eg.find(parent)].nodes {
            let same_spec = matches!(n.op.op(), Op::Einsum { spec: s } if s == spec);
            if !same_spec || n.children.len() != 2 || eg.find(n.children[shared]) != x {
                continue;
            }
            let w = eg.find(n.children[1 - shared]);
            let Some(s) = shape(eg, w) else {
                continue;
            };
            let fits = s.len() == w_shape.len()
                && s.iter()
                    .zip(w_shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == k || a == b);
            if fits && is_weight(eg, w, 4) && !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out.sort();
    out
}

/// Whether e-class `c` holds a parameter, or a view or cast of one (up to `depth` levels).
pub fn is_weight(eg: &EG, c: Id, depth: usize) -> bool {
    eg[c].nodes.iter().any(|n| match n.op.op() {
        Op::Param { .. } => true,
        Op::Reshape { .. } | Op::Transpose { .. } | Op::Slice { .. } | Op::Cast { .. } => {
            depth > 0 && is_weight(eg, n.children[0], depth - 1)
        }
        _ => false,
    })
}

/// `linear-attn-merge-values`: chunked linear attentions with the same queries, keys, decay,
/// chunk and strictness but different values (a numerator and its normaliser, whose values
/// are ones) become one over the values side by side,
///   linear_attn(q, k, vᵢ, g) ⇒ slice(linear_attn(q, k, concat(v₁ … vₙ, −1), g), −1, offᵢ, offᵢ + |vᵢ|)
/// (the value axis is the last; offᵢ = Σ_{j<i} |vⱼ|). Exact: each output column depends only on
/// its value column. Saves recomputing q·kᵀ and its decays per value set.
struct LinearAttnMergeValues;

impl DynRule for LinearAttnMergeValues {
    fn name(&self) -> &'static str {
        "linear-attn-merge-values"
    }
    fn root(&self) -> &'static str {
        "linear_attn"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let op = node.op.op();
        if !matches!(op, Op::LinearAttn { .. }) || node.children.len() < 3 {
            return vec![];
        }
        let kids: Vec<Id> = node.children.iter().map(|c| eg.find(*c)).collect();
        let Some(v_shape) = shape(eg, kids[2]) else {
            return vec![];
        };
        let axis = v_shape.len() - 1;
        // Siblings: linear_attn parents of q with the same attributes and operands but v.
        let mut values: Vec<Id> = Vec::new();
        for parent in eg[kids[0]].parents() {
            for n in &eg[eg.find(parent)].nodes {
                if n.op.op() != op || n.children.len() != kids.len() {
                    continue;
                }
                let theirs: Vec<Id> = n.children.iter().map(|c| eg.find(*c)).collect();
                let same_rest = theirs
                    .iter()
                    .zip(&kids)
                    .enumerate()
                    .all(|(i, (a, b))| i == 2 || a == b);
                let fits = shape(eg, theirs[2])
                    .is_some_and(|s| s.len() == v_shape.len() && s[..axis] == v_shape[..axis]);
                if same_rest && fits && !values.contains(&theirs[2]) {
                    values.push(theirs[2]);
                }
            }
        }
        values.sort();
        if values.len() < 2 || values.len() > MAX_GROUP {
            return vec![];
        }
        let mut offset = DimExpr::constant(0);
        let mut mine = None;
        for &v in &values {
            let Some(size) = shape(eg, v).and_then(|s| s.get(axis)).cloned() else {
                return vec![];
            };
            if v == kids[2] {
                mine = Some((offset.clone(), offset.add(&size)));
            }
            offset = offset.add(&size);
        }
        let Some((start, end)) = mine else {
            return vec![];
        };
        let mut plan = Plan::new();
        let cat = plan.push(
            Op::Concat { axis },
            values.iter().map(|v| Arg::Class(*v)).collect(),
        );
        let mut operands: Vec<Arg> = kids.iter().map(|c| Arg::Class(*c)).collect();
        operands[2] = cat;
        let merged = plan.push(op.clone(), operands);
        plan.push(
            Op::Slice {
                axis,
                start,
                end,
                step: 1,
            },
            vec![merged],
        );
        vec![Outcome::Build(plan)]
    }
}
