//! Top-k mixture of experts (Mixtral) as repeat → grouped matmul → sum over the slots: the
//! dense sum of all E experts, each weighted by a gate column of g that is zero outside the
//! K experts a top-k router picked for the token, becomes every token repeated once per slot
//! (N = rows·K rows), each row through the expert its slot names (`grouped_matmul`), weighted
//! by its gate and summed over the K slots. The experts' cost grows with K·T, not E·T.
//!
//! What the rule relies on is proved from e-nodes and refused otherwise:
//! - g is zero outside idx = topk(p, K, indices) along E ([`topk_route`]): g = a ⊙ chosen,
//!   (a ⊙ chosen) / s or chosen, with chosen = Σ_k cast(reshape(idx, [.., K, 1]) = iota(E)).
//!   Top-k positions are distinct and lie in 0..E when topk's axis has length E, so
//!   Σ_e F_e ⊙ g_e = Σ_k F_{idx_k} ⊙ g_{idx_k} (for finite a and finite expert outputs, as
//!   every dispatch: the dense form's 0 · ∞ is not reproduced).
//! - The E experts are one function of shared inputs and per-expert weights (`Template` in
//!   `moe_experts.rs`):
//!   matched in lockstep, equal operators with equal attributes, identical shared operands,
//!   and weights that are params (through views) of one shape.
//! - Rows are independent: elementwise operators and casts on rows, token-free operands
//!   broadcast along the rows, and einsums that contract each row's feature axis with a
//!   per-expert [O, I] or [I, O] weight.

use super::moe_experts::{Emit, Template};
use super::{Arg, DynRule, Outcome, Plan, shape};
use crate::ir::{BinaryOp, DimExpr, Literal, Op, ReduceOp};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![Arc::new(MoeTopK)]
}

/// The deepest expert matched, in operators below its output.
const MAX_DEPTH: usize = 12;

/// Depth of the recognisers through views, broadcasts and the gate's products.
pub(super) const SMALL_DEPTH: usize = 3;

/// `moe-topk-grouped`: with idx = topk(p, K, indices) ([.., T, K] along p's E axis), g zero
/// outside idx (see [`topk_route`]) and F_e = f(x; W_e) the same row-wise function of
/// per-expert weights,
///   base + Σ_{e<E} F_e ⊙ slice(g, −1, e, e + 1)
///     ⇒ base + Σ_k reshape(f_G(rows(x); stack(W)) ⊙ reshape(gather(g, idx), [N, 1]), [.., K, D])
/// where rows(x) = reshape(broadcast(x, [.., T, K, D]), [N, D]) repeats each token K times
/// (a view), N = (leading dims)·K, G = reshape(idx, [N]), every einsum of f with a weight is
/// `grouped_matmul(rows, stack(W), G)` with stack(W) = concat_e(W_e) as [E, O, I] (a
/// load-time node), and f's elementwise operators run on the rows. Einsums that read the same
/// rows (SwiGLU's gate and up projections) become one grouped product over their stacks side
/// by side along O, read back by slices: the rows are sorted and moved once for both.
struct MoeTopK;

impl DynRule for MoeTopK {
    fn name(&self) -> &'static str {
        "moe-topk-grouped"
    }
    fn root(&self) -> &'static str {
        "add"
    }
    fn rewrite(&self, eg: &EG, class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(chain) = chain(eg, class, node) else {
            return vec![];
        };
        let Some(route) = topk_route(eg, chain.g, SMALL_DEPTH) else {
            return vec![];
        };
        grouped(eg, class, &chain, &route)
            .map(Outcome::Build)
            .into_iter()
            .collect()
    }
}

/// base + Σ_e F_e ⊙ slice(g, −1, e, e + 1) over every e in 0..E.
struct Chain {
    g: Id,
    /// F_e, indexed by e.
    experts: Vec<Id>,
    base: Option<Id>,
}

/// (F, g, e) when `c` holds F ⊙ slice(g, −1, e, e + 1) (either operand order) with F of
/// `c`'s shape and g the given one, if any.
fn term(eg: &EG, c: Id, want_g: Option<Id>) -> Option<(Id, Id, i64)> {
    let c = eg.find(c);
    for n in &eg[c].nodes {
        if !matches!(n.op.op(), Op::Binary(BinaryOp::Mul)) || n.children.len() != 2 {
            continue;
        }
        for gi in 0..2 {
            let f = eg.find(n.children[1 - gi]);
            let Some((g, e)) = gate_column(eg, n.children[gi]) else {
                continue;
            };
            if want_g.is_none_or(|w| eg.find(w) == g) && shape(eg, f) == shape(eg, c) {
                return Some((f, g, e));
            }
        }
    }
    None
}

/// (g, e) when `c` holds slice(g, last axis, e, e + 1) with a constant e.
fn gate_column(eg: &EG, c: Id) -> Option<(Id, i64)> {
    eg[eg.find(c)].nodes.iter().find_map(|n| {
        let Op::Slice {
            axis,
            start,
            end,
            step: 1,
        } = n.op.op()
        else {
            return None;
        };
        let g = eg.find(n.children[0]);
        let e = start.as_const()?;
        let last = shape(eg, g)?.len().checked_sub(1)?;
        (*axis == last && end.as_const() == Some(e + 1)).then_some((g, e))
    })
}

/// The chain of terms below the `add` node `node` of `class`: each step is an `add` of a term
/// and the rest; it ends at a term (no base) or at anything else (the base). Every e in 0..E
/// (E = g's last dim) must appear once.
fn chain(eg: &EG, class: Id, node: &TNode) -> Option<Chain> {
    let ty = eg[class].data.tensor()?;
    if !ty.dtype.is_float() || node.children.len() != 2 {
        return None;
    }
    let mut terms: BTreeMap<i64, Id> = BTreeMap::new();
    let split = |n: &TNode, g: Option<Id>| -> Option<((Id, Id, i64), Id)> {
        if !matches!(n.op.op(), Op::Binary(BinaryOp::Add)) || n.children.len() != 2 {
            return None;
        }
        (0..2).find_map(|ti| {
            let rest = eg.find(n.children[1 - ti]);
            let t = term(eg, n.children[ti], g)?;
            (shape(eg, rest) == Some(&ty.shape[..])).then_some((t, rest))
        })
    };
    let ((f, g, e), mut rest) = split(node, None)?;
    terms.insert(e, f);
    let e_len = shape(eg, g)?.last()?.as_const()?;
    let mut base = None;
    for _ in 0..e_len {
        let next = eg[rest].nodes.iter().find_map(|n| split(n, Some(g)));
        match next {
            Some(((f, _, e), r)) => {
                if terms.insert(e, f).is_some() {
                    return None;
                }
                rest = r;
            }
            None => {
                match term(eg, rest, Some(g)) {
                    Some((f, _, e)) => {
                        if terms.insert(e, f).is_some() {
                            return None;
                        }
                    }
                    None => base = Some(rest),
                }
                break;
            }
        }
    }
    let all = terms.keys().copied().eq(0..e_len);
    let g_ty = eg[g].data.tensor()?;
    let r = ty.shape.len();
    let fits =
        g_ty.dtype == ty.dtype && g_ty.shape.len() == r && g_ty.shape[..r - 1] == ty.shape[..r - 1];
    (all && fits).then(|| Chain {
        g,
        experts: terms.into_values().collect(),
        base: base.filter(|b| !float_zero(eg, *b, SMALL_DEPTH)),
    })
}

/// The routing that makes g zero outside K experts per token.
struct Route {
    /// The top-k indices, int [.., T, K].
    idx: Id,
    k: DimExpr,
}

/// The top-k route when g ([.., T, E]) is zero wherever e is not among idx = topk(p, K,
/// indices) along E: g = chosen, a ⊙ chosen (either order, a of g's shape or broadcast to
/// it) or z / s with z such a product, where chosen = sum_k(cast(eq(reshape(idx, [.., T, K,
/// 1]), iota([E])), float)) counts the slots that picked e.
fn topk_route(eg: &EG, g: Id, depth: usize) -> Option<Route> {
    let g = eg.find(g);
    let g_shape = shape(eg, g)?;
    let rank = g_shape.len();
    if rank < 2 {
        return None;
    }
    eg[g].nodes.iter().find_map(|n| match n.op.op() {
        Op::Binary(BinaryOp::Mul) if depth > 0 => n.children.iter().find_map(|&c| {
            (shape(eg, c) == Some(g_shape))
                .then(|| topk_route(eg, c, depth - 1))
                .flatten()
        }),
        Op::Binary(BinaryOp::Div) if depth > 0 => {
            let z = n.children[0];
            (shape(eg, z) == Some(g_shape))
                .then(|| topk_route(eg, z, depth - 1))
                .flatten()
        }
        Op::Reduce {
            op: ReduceOp::Sum,
            axes,
            keepdim: false,
        } if axes[..] == [rank - 1] => chosen(eg, n.children[0], g_shape),
        _ => None,
    })
}

/// The route when `h` ([.., T, K, E]) is cast(eq(reshape(idx, [.., T, K, 1]), iota([E])))
/// (eq's operands in either order) with idx = topk(p, K, indices) along p's E axis, possibly
/// through a cast to an int type.
fn chosen(eg: &EG, h: Id, g_shape: &[DimExpr]) -> Option<Route> {
    let rank = g_shape.len();
    let e_len = g_shape[rank - 1].clone();
    let h = eg.find(h);
    let h_shape = shape(eg, h)?;
    if h_shape.len() != rank + 1 {
        return None;
    }
    let k = h_shape[rank - 1].clone();
    let mut idx_shape = g_shape[..rank - 1].to_vec();
    idx_shape.push(k.clone());
    let mut col_shape = idx_shape.clone();
    col_shape.push(DimExpr::constant(1));
    let eqs = eg[h].nodes.iter().filter_map(|n| match n.op.op() {
        Op::Cast { to } if to.is_float() => Some(eg.find(n.children[0])),
        _ => None,
    });
    for q in eqs {
        for n in &eg[q].nodes {
            if !matches!(n.op.op(), Op::Binary(BinaryOp::Eq)) || n.children.len() != 2 {
                continue;
            }
            for ci in 0..2 {
                let (col, iota) = (n.children[ci], n.children[1 - ci]);
                if !is_iota(eg, iota, &e_len) {
                    continue;
                }
                let idx = eg[eg.find(col)].nodes.iter().find_map(|r| match r.op.op() {
                    Op::Reshape { shape } if *shape == col_shape => Some(eg.find(r.children[0])),
                    _ => None,
                });
                if let Some(idx) = idx
                    && shape(eg, idx) == Some(&idx_shape[..])
                    && is_topk(eg, idx, rank - 1, &e_len, SMALL_DEPTH)
                {
                    return Some(Route { idx, k });
                }
            }
        }
    }
    None
}

/// Whether `c` is iota([E]) along its only axis.
fn is_iota(eg: &EG, c: Id, e_len: &DimExpr) -> bool {
    eg[eg.find(c)]
        .nodes
        .iter()
        .any(|n| matches!(n.op.op(), Op::Iota { shape, axis: 0 } if shape[..] == [e_len.clone()]))
}

/// Whether `c` holds the indices of a top-k along `axis` of a tensor whose `axis` has length
/// `e_len` (distinct positions in 0..E), possibly through casts to int types.
fn is_topk(eg: &EG, c: Id, axis: usize, e_len: &DimExpr, depth: usize) -> bool {
    eg[eg.find(c)].nodes.iter().any(|n| match n.op.op() {
        Op::TopK {
            axis: a,
            indices: true,
            ..
        } => *a == axis && shape(eg, n.children[0]).and_then(|s| s.get(axis)) == Some(e_len),
        Op::Cast { to } if to.is_int() && depth > 0 => {
            eg[eg.find(n.children[0])]
                .data
                .tensor()
                .is_some_and(|t| t.dtype.is_int())
                && is_topk(eg, n.children[0], axis, e_len, depth - 1)
        }
        _ => false,
    })
}

/// A scalar 0.0, possibly broadcast.
fn float_zero(eg: &EG, c: Id, depth: usize) -> bool {
    eg[eg.find(c)].nodes.iter().any(|n| match n.op.op() {
        Op::Const {
            value: Literal::Float(x),
            ..
        } => *x == 0.0,
        Op::Broadcast { .. } if depth > 0 => float_zero(eg, n.children[0], depth - 1),
        _ => false,
    })
}

/// The grouped form of the chain, when the experts match (see [`MoeTopK`]).
fn grouped(eg: &EG, class: Id, chain: &Chain, route: &Route) -> Option<Plan> {
    let out = shape(eg, class)?;
    let r = out.len();
    let prefix = out[..r - 1].to_vec();
    let mut t = Template::new(eg, prefix.clone());
    let root = t.matched(&chain.experts, MAX_DEPTH)?;
    if !t.is_op(root) {
        return None;
    }
    let n = prefix.iter().fold(route.k.clone(), |acc, d| acc.mul(d));
    let mut plan = Plan::new();
    let group = plan.push(
        Op::Reshape {
            shape: vec![n.clone()],
        },
        vec![Arg::Class(route.idx)],
    );
    let mut em = Emit::new(&t, route.k.clone(), n.clone(), group);
    let rows = em.emit(root, &mut plan)?;
    if !em.has_weights() {
        return None;
    }
    let gate = plan.push(
        Op::Gather { axis: r - 1 },
        vec![Arg::Class(chain.g), Arg::Class(route.idx)],
    );
    let gate = plan.push(
        Op::Reshape {
            shape: vec![n, DimExpr::constant(1)],
        },
        vec![gate],
    );
    let weighted = plan.push(Op::Binary(BinaryOp::Mul), vec![rows, gate]);
    let mut slots = prefix;
    slots.extend([route.k.clone(), out[r - 1].clone()]);
    let per_slot = plan.push(Op::Reshape { shape: slots }, vec![weighted]);
    let y = plan.push(
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![r - 1],
            keepdim: false,
        },
        vec![per_slot],
    );
    if let Some(b) = chain.base {
        plan.push(Op::Binary(BinaryOp::Add), vec![Arg::Class(b), y]);
    }
    Some(plan)
}
