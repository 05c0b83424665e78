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
//! - The E experts are one function of shared inputs and per-expert weights ([`Template`]):
//!   matched in lockstep, equal operators with equal attributes, identical shared operands,
//!   and weights that are params (through views) of one shape.
//! - Rows are independent: elementwise operators and casts on rows, token-free operands
//!   broadcast along the rows, and einsums that contract each row's feature axis with a
//!   per-expert [O, I] or [I, O] weight.

use super::{Arg, DynRule, Outcome, Plan, shape};
use crate::ir::{BinaryOp, DimExpr, Literal, Op, ReduceOp};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
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
const SMALL_DEPTH: usize = 3;

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

/// Whether `c` holds a param, possibly through views (a weight: token-free, load-time).
fn is_weight(eg: &EG, c: Id, depth: usize) -> bool {
    eg[eg.find(c)].nodes.iter().any(|n| match n.op.op() {
        Op::Param { .. } => true,
        Op::Transpose { .. } | Op::Reshape { .. } if depth > 0 => {
            is_weight(eg, n.children[0], depth - 1)
        }
        _ => false,
    })
}

/// One node of the experts' common function.
#[derive(Clone, Debug)]
enum Node {
    /// An operand shared by every expert with a row per token ([.., T, D]).
    Row(Id),
    /// A shared operand broadcast along the rows (its token axes are 1 or absent).
    Free(Id),
    /// Expert e's weight, [A, B], for each e.
    Weights(Vec<Id>),
    /// An operator on rows.
    Op(Op, Vec<usize>),
}

/// The experts matched in lockstep into one function (see the module doc).
struct Template<'a> {
    eg: &'a EG,
    /// The token-indexed leading dims [.., T].
    prefix: Vec<DimExpr>,
    nodes: Vec<Node>,
    memo: BTreeMap<Vec<Id>, Option<usize>>,
}

impl Template<'_> {
    fn is_row(&self, s: &[DimExpr]) -> bool {
        s.len() == self.prefix.len() + 1 && s[..self.prefix.len()] == self.prefix[..]
    }

    /// Right-aligned against a row, 1 or absent along every token axis.
    fn is_free(&self, s: &[DimExpr]) -> bool {
        s.len() <= self.prefix.len() + 1
            && s.iter()
                .take(s.len().saturating_sub(1))
                .all(|d| d.as_const() == Some(1))
    }

    fn push(&mut self, n: Node) -> Option<usize> {
        self.nodes.push(n);
        Some(self.nodes.len() - 1)
    }

    /// The common function of the e-classes `cs` (one per expert).
    fn matched(&mut self, cs: &[Id], depth: usize) -> Option<usize> {
        let cs: Vec<Id> = cs.iter().map(|c| self.eg.find(*c)).collect();
        if let Some(r) = self.memo.get(&cs) {
            return *r;
        }
        let r = self.match_new(&cs, depth);
        self.memo.insert(cs, r);
        r
    }

    fn match_new(&mut self, cs: &[Id], depth: usize) -> Option<usize> {
        let eg = self.eg;
        let ty = eg[cs[0]].data.tensor()?;
        if cs.iter().any(|c| eg[*c].data.tensor() != Some(ty)) {
            return None;
        }
        if cs.iter().all(|c| *c == cs[0]) {
            return if self.is_row(&ty.shape) {
                self.push(Node::Row(cs[0]))
            } else if self.is_free(&ty.shape) {
                self.push(Node::Free(cs[0]))
            } else {
                None
            };
        }
        if ty.shape.len() == 2 && cs.iter().all(|c| is_weight(eg, *c, SMALL_DEPTH)) {
            return self.push(Node::Weights(cs.to_vec()));
        }
        if depth == 0 || !self.is_row(&ty.shape) {
            return None;
        }
        for n0 in &eg[cs[0]].nodes {
            let op = n0.op.op();
            let known = matches!(
                op,
                Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast { .. } | Op::Einsum { .. }
            );
            if !known {
                continue;
            }
            let same: Vec<&TNode> = cs[1..]
                .iter()
                .filter_map(|&c| {
                    eg[c]
                        .nodes
                        .iter()
                        .find(|n| n.op.op() == op && n.children.len() == n0.children.len())
                })
                .collect();
            if same.len() + 1 != cs.len() {
                continue;
            }
            let mut kids = Vec::with_capacity(n0.children.len());
            for j in 0..n0.children.len() {
                let tuple: Vec<Id> = std::iter::once(n0)
                    .chain(same.iter().copied())
                    .map(|n| n.children[j])
                    .collect();
                match self.matched(&tuple, depth - 1) {
                    Some(k) => kids.push(k),
                    None => break,
                }
            }
            if kids.len() != n0.children.len() || !self.row_wise(op, &kids) {
                continue;
            }
            return self.push(Node::Op(op.clone(), kids));
        }
        None
    }

    fn is_rows(&self, k: usize) -> bool {
        matches!(self.nodes[k], Node::Row(_) | Node::Op(..))
    }

    /// Whether `op` on these operands computes row t from row t only.
    fn row_wise(&self, op: &Op, kids: &[usize]) -> bool {
        match op {
            Op::Unary(_) | Op::Cast { .. } => self.is_rows(kids[0]),
            Op::Binary(_) | Op::Select => {
                kids.iter().any(|k| self.is_rows(*k))
                    && kids
                        .iter()
                        .all(|k| self.is_rows(*k) || matches!(self.nodes[*k], Node::Free(_)))
            }
            Op::Einsum { spec } => self.linear(spec, kids).is_some(),
            _ => false,
        }
    }

    /// For an einsum of rows [.., T, I] and per-expert weights: (the rows' operand, the
    /// weights' operand, whether the weight is laid out [O, I]).
    fn linear(&self, spec: &str, kids: &[usize]) -> Option<(usize, usize, bool)> {
        let spec = Spec::parse(spec)?;
        if kids.len() != 2 || spec.inputs.len() != 2 {
            return None;
        }
        let p = self.prefix.len();
        let ri = (0..2).find(|&j| self.is_rows(kids[j]))?;
        let wi = 1 - ri;
        if !matches!(self.nodes[kids[wi]], Node::Weights(_)) {
            return None;
        }
        let (rt, wt, out) = (&spec.inputs[ri], &spec.inputs[wi], &spec.output);
        if rt.len() != p + 1 || out.len() != p + 1 || wt.len() != 2 || rt[..p] != out[..p] {
            return None;
        }
        let (i, o) = (rt[p], out[p]);
        if i == o || out[..p].contains(&i) || out[..p].contains(&o) {
            return None;
        }
        match wt[..] {
            [a, b] if a == o && b == i => Some((kids[ri], kids[wi], true)),
            [a, b] if a == i && b == o => Some((kids[ri], kids[wi], false)),
            _ => None,
        }
    }
}

/// The plan's operands for the template's nodes, on N = (leading dims)·K rows.
struct Emit<'a> {
    t: &'a Template<'a>,
    k: DimExpr,
    n: DimExpr,
    group: Arg,
    memo: BTreeMap<usize, Arg>,
    stacks: BTreeMap<(usize, bool), Arg>,
    /// The grouped product of the einsums reading one rows node, by that node.
    merged: BTreeMap<usize, Arg>,
}

impl Emit<'_> {
    fn emit(&mut self, i: usize, plan: &mut Plan) -> Option<Arg> {
        if let Some(a) = self.memo.get(&i) {
            return Some(*a);
        }
        let eg = self.t.eg;
        let a = match &self.t.nodes[i] {
            Node::Row(c) => {
                let d = shape(eg, *c)?.last()?.clone();
                let mut one = self.t.prefix.clone();
                one.extend([DimExpr::constant(1), d.clone()]);
                let mut slots = self.t.prefix.clone();
                slots.extend([self.k.clone(), d.clone()]);
                let r = plan.push(Op::Reshape { shape: one }, vec![Arg::Class(*c)]);
                let b = plan.push(Op::Broadcast { shape: slots }, vec![r]);
                plan.push(
                    Op::Reshape {
                        shape: vec![self.n.clone(), d],
                    },
                    vec![b],
                )
            }
            Node::Free(c) => {
                let s = shape(eg, *c)?;
                if s.len() <= 1 {
                    Arg::Class(*c)
                } else {
                    let last = s.last()?.clone();
                    plan.push(Op::Reshape { shape: vec![last] }, vec![Arg::Class(*c)])
                }
            }
            Node::Weights(_) => return None,
            Node::Op(Op::Einsum { spec }, kids) => {
                let (x, _, _) = self.t.linear(spec, kids)?;
                // Every einsum reading the same rows (SwiGLU's gate and up projections): one
                // grouped product over their weights side by side, read back by slices, so
                // the rows are sorted and moved once.
                let sibs: Vec<(usize, usize, bool)> = (0..self.t.nodes.len())
                    .filter_map(|j| match &self.t.nodes[j] {
                        Node::Op(Op::Einsum { spec }, kids) => self
                            .t
                            .linear(spec, kids)
                            .filter(|l| l.0 == x)
                            .map(|(_, w, oi)| (j, w, oi)),
                        _ => None,
                    })
                    .collect();
                let rows = self.emit(x, plan)?;
                let mut stacks = Vec::with_capacity(sibs.len());
                let mut range = None;
                let mut offset = DimExpr::constant(0);
                for &(j, w, oi) in &sibs {
                    let Node::Weights(ws) = &self.t.nodes[w] else {
                        return None;
                    };
                    let ws0 = shape(eg, *ws.first()?)?;
                    let o = if oi { ws0[0].clone() } else { ws0[1].clone() };
                    if j == i {
                        range = Some((offset.clone(), offset.add(&o)));
                    }
                    offset = offset.add(&o);
                    stacks.push(self.stack(w, oi, plan)?);
                }
                let (start, end) = range?;
                if stacks.len() == 1 {
                    plan.push(Op::GroupedMatmul, vec![rows, stacks[0], self.group])
                } else {
                    let merged = match self.merged.get(&x) {
                        Some(a) => *a,
                        None => {
                            let cat = plan.push(Op::Concat { axis: 1 }, stacks);
                            let m = plan.push(Op::GroupedMatmul, vec![rows, cat, self.group]);
                            self.merged.insert(x, m);
                            m
                        }
                    };
                    plan.push(
                        Op::Slice {
                            axis: 1,
                            start,
                            end,
                            step: 1,
                        },
                        vec![merged],
                    )
                }
            }
            Node::Op(op, kids) => {
                let args = kids
                    .iter()
                    .map(|k| self.emit(*k, plan))
                    .collect::<Option<Vec<_>>>()?;
                plan.push(op.clone(), args)
            }
        };
        self.memo.insert(i, a);
        Some(a)
    }

    /// The per-expert weights stacked as [E, O, I] (`oi`: each is [O, I], else [I, O]).
    fn stack(&mut self, i: usize, oi: bool, plan: &mut Plan) -> Option<Arg> {
        if let Some(a) = self.stacks.get(&(i, oi)) {
            return Some(*a);
        }
        let Node::Weights(ws) = &self.t.nodes[i] else {
            return None;
        };
        let mut parts = Vec::with_capacity(ws.len());
        for w in ws {
            let s = shape(self.t.eg, *w)?;
            let mut one = vec![DimExpr::constant(1)];
            one.extend(s.iter().cloned());
            parts.push(plan.push(Op::Reshape { shape: one }, vec![Arg::Class(*w)]));
        }
        let mut a = plan.push(Op::Concat { axis: 0 }, parts);
        if !oi {
            a = plan.push(
                Op::Transpose {
                    perm: vec![0, 2, 1],
                },
                vec![a],
            );
        }
        self.stacks.insert((i, oi), a);
        Some(a)
    }
}

/// The grouped form of the chain, when the experts match (see [`MoeTopK`]).
fn grouped(eg: &EG, class: Id, chain: &Chain, route: &Route) -> Option<Plan> {
    let out = shape(eg, class)?;
    let r = out.len();
    let prefix = out[..r - 1].to_vec();
    let mut t = Template {
        eg,
        prefix: prefix.clone(),
        nodes: Vec::new(),
        memo: BTreeMap::new(),
    };
    let root = t.matched(&chain.experts, MAX_DEPTH)?;
    if !matches!(t.nodes[root], Node::Op(..)) {
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
    let mut em = Emit {
        t: &t,
        k: route.k.clone(),
        n: n.clone(),
        group,
        memo: BTreeMap::new(),
        stacks: BTreeMap::new(),
        merged: BTreeMap::new(),
    };
    let rows = em.emit(root, &mut plan)?;
    if em.stacks.is_empty() {
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
