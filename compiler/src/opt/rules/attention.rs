//! Attention rules (R1 and R2 in shared/notes/architectures.md): softmax attention with a
//! structured mask fused into one `attention` operator (ir/op.rs) that runs the
//! online-softmax tiled algorithm, skips tiles where the mask is all false and evaluates it
//! only in tiles where it is not all true; and the partial attentions of log-sum-exp merging
//! fused into `attention_lse` nodes that also give each row's log-sum-exp. The cost model
//! counts only the computed tiles (opt/attention_cost.rs), so a window mask makes attention
//! O(T·w) instead of O(T²).

use super::mask::{Recognised, recognise};
use super::{Arg, DynRule, Outcome, Plan, nodes_named, shape};
use crate::ir::mask::Mask;
use crate::ir::{BinaryOp, DimExpr, Literal, Op};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;
use std::sync::Arc;

/// Query and key tile sizes of the fused operator the rule creates.
pub const TILE_Q: usize = 64;
pub const TILE_K: usize = 64;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![Arc::new(SoftmaxAttention), Arc::new(LseAttention)]
}

/// `lse-attention`: the partial attention of log-sum-exp merging (LongNet's segments), with
/// X = select(M, einsum(Q, K)·c, −inf) as for `softmax-attention`, L = logsumexp(X) over the
/// last axis (kept), G = select(L > −inf, L, 0):
///   einsum(exp(X − G), V) ⇒ transpose(select(lse > −inf, out, 0)) and L ⇒ lse,
///   (out, lse) = attention_lse(Q′, K′, V′) mask=M scale=c
/// (a row with no visible key gives 0 as exp(−∞ − 0) does). Applies under the same
/// conditions as `softmax-attention`; the spec's merge of the partial results is kept.
struct LseAttention;

impl DynRule for LseAttention {
    fn name(&self) -> &'static str {
        "lse-attention"
    }
    fn root(&self) -> &'static str {
        "einsum"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(pv) = spec_of(node) else {
            return vec![];
        };
        if node.children.len() != 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for p_pos in 0..2 {
            let (p_cls, v_cls) = (node.children[p_pos], node.children[1 - p_pos]);
            let Some(t) = eg[p_cls].data.tensor() else {
                continue;
            };
            if t.rank() < 2 {
                continue;
            }
            for (x, l) in lse_inputs(eg, p_cls, t.rank() - 1) {
                for (scores, mask) in masked(eg, x) {
                    for (qk, scale) in scaled(eg, scores) {
                        let found = Found {
                            scores,
                            qk: &qk,
                            scale,
                            mask: mask.clone(),
                            pv: &pv,
                            p_pos,
                            v: v_cls,
                            lse: Some((l, t.dtype)),
                        };
                        out.extend(found.plans(eg).unwrap_or_default());
                    }
                }
            }
        }
        out
    }
}

/// The (X, L) such that `p` = exp(X − select(L > −inf, L, 0)) with L = logsumexp(X) over
/// `axis`, kept.
fn lse_inputs(eg: &EG, p: Id, axis: usize) -> Vec<(Id, Id)> {
    let mut out = Vec::new();
    for exp in nodes_named(eg, p, "exp") {
        for sub in nodes_named(eg, exp.children[0], "sub") {
            let (x, g) = (sub.children[0], sub.children[1]);
            for sel in nodes_named(eg, g, "select") {
                let (c, l, zero) = (sel.children[0], sel.children[1], sel.children[2]);
                let guard = nodes_named(eg, c, "gt").iter().any(|n| {
                    eg.find(n.children[0]) == eg.find(l)
                        && float_const(eg, n.children[1]) == Some(f64::NEG_INFINITY)
                });
                let zero = float_const(eg, zero) == Some(0.0);
                if guard && zero && has_reduce(eg, l, "logsumexp", x, axis) {
                    let pair = (eg.find(x), eg.find(l));
                    if !out.contains(&pair) {
                        out.push(pair);
                    }
                }
            }
        }
    }
    out
}

/// `softmax-attention`: with X = select(M, einsum(Q, K)·c, −inf) (or without the select, or
/// without the scale c), the prelude's softmax P = e / sum(e), e = exp(X − max(X)) over the
/// last axis, and an einsum contracting P's last axis with V:
///   einsum(P, V) ⇒ transpose(attention(Q′, K′, V′) mask=M scale=c)
/// where M is recognised as a predicate over (t, s) (`mask.rs`), Q′, K′, V′ are Q, K, V
/// transposed to [batch…, T, D], [batch…, S, D], [batch…, S, E] with size-1 axes for the
/// batch letters they lack, and the final transpose (if any) puts the einsum's output letters
/// back in order. Applies when the score einsum contracts exactly one letter D between an
/// operand holding T and one holding S, and the value einsum contracts exactly S.
struct SoftmaxAttention;

impl DynRule for SoftmaxAttention {
    fn name(&self) -> &'static str {
        "softmax-attention"
    }
    fn root(&self) -> &'static str {
        "einsum"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Some(pv) = spec_of(node) else {
            return vec![];
        };
        if node.children.len() != 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for p_pos in 0..2 {
            let (p_cls, v_cls) = (node.children[p_pos], node.children[1 - p_pos]);
            let Some(rank) = shape(eg, p_cls).map(<[DimExpr]>::len) else {
                continue;
            };
            if rank < 2 {
                continue;
            }
            for x in softmax_inputs(eg, p_cls, rank - 1) {
                for (scores, mask) in masked(eg, x) {
                    for (qk, scale) in scaled(eg, scores) {
                        let found = Found {
                            scores,
                            qk: &qk,
                            scale,
                            mask: mask.clone(),
                            pv: &pv,
                            p_pos,
                            v: v_cls,
                            lse: None,
                        };
                        out.extend(found.plans(eg).unwrap_or_default());
                    }
                }
            }
        }
        out
    }
}

pub(super) fn spec_of(n: &TNode) -> Option<Spec> {
    match n.op.op() {
        Op::Einsum { spec } => Spec::parse(spec),
        _ => None,
    }
}

/// Whether `class` holds a `name` reduction of `of` over `[axis]` with `keepdim`.
fn has_reduce(eg: &EG, class: Id, name: &str, of: Id, axis: usize) -> bool {
    nodes_named(eg, class, name).iter().any(|n| {
        matches!(n.op.op(), Op::Reduce { axes, keepdim: true, .. } if axes == &[axis])
            && eg.find(n.children[0]) == eg.find(of)
    })
}

/// The e-classes X such that `p` = softmax(X) along `axis`, as the prelude writes it:
/// div(e, sum(e)), e = exp(sub(X, max(X))).
pub(super) fn softmax_inputs(eg: &EG, p: Id, axis: usize) -> Vec<Id> {
    let mut out = Vec::new();
    for div in nodes_named(eg, p, "div") {
        let (e, z) = (div.children[0], div.children[1]);
        if !has_reduce(eg, z, "sum", e, axis) {
            continue;
        }
        for exp in nodes_named(eg, e, "exp") {
            for sub in nodes_named(eg, exp.children[0], "sub") {
                let (x, m) = (sub.children[0], sub.children[1]);
                if has_reduce(eg, m, "max", x, axis) && !out.contains(&eg.find(x)) {
                    out.push(eg.find(x));
                }
            }
        }
    }
    out
}

/// The value of a float constant held by `class`, if any.
pub(super) fn float_const(eg: &EG, class: Id) -> Option<f64> {
    eg[eg.find(class)]
        .nodes
        .iter()
        .find_map(|n| match n.op.op() {
            Op::Const {
                value: Literal::Float(x),
                dtype,
            } if dtype.is_float() => Some(*x),
            _ => None,
        })
}

/// (scores, mask) pairs with X = select(mask, scores, −inf), plus (X, everywhere true).
pub(super) fn masked(eg: &EG, x: Id) -> Vec<(Id, Recognised)> {
    let all = Recognised {
        mask: Mask::all(),
        operands: vec![],
    };
    let mut out = vec![(x, all)];
    for sel in nodes_named(eg, x, "select") {
        let (c, sc, fill) = (sel.children[0], sel.children[1], sel.children[2]);
        if float_const(eg, fill) != Some(f64::NEG_INFINITY) || eg[sc].data != eg[x].data {
            continue;
        }
        let rank = shape(eg, x).map_or(0, <[DimExpr]>::len);
        if let Some(m) = recognise(eg, c, rank) {
            out.push((eg.find(sc), m));
        }
    }
    out
}

/// (score einsum, scale) pairs with `scores` = einsum(Q, K) · scale, einsum(Q, K) / (1 /
/// scale), or the einsum itself.
pub(super) fn scaled(eg: &EG, scores: Id) -> Vec<(TNode, f64)> {
    let mut out: Vec<(TNode, f64)> = nodes_named(eg, scores, "einsum")
        .into_iter()
        .map(|n| (n, 1.0))
        .collect();
    for mul in nodes_named(eg, scores, "mul") {
        for i in 0..2 {
            let (a, c) = (mul.children[i], mul.children[1 - i]);
            let scalar = shape(eg, c).is_some_and(|s| s.is_empty());
            if let Some(scale) = float_const(eg, c).filter(|x| scalar && x.is_finite()) {
                for n in nodes_named(eg, a, "einsum") {
                    out.push((n, scale));
                }
            }
        }
    }
    // einsum(Q, K) / c, as `x / sqrt(D)` writes the scale: the fused node multiplies by
    // 1 / c instead, which differs from dividing by c by the rounding of 1 / c.
    for div in nodes_named(eg, scores, "div") {
        let (a, c) = (div.children[0], div.children[1]);
        let scalar = shape(eg, c).is_some_and(|s| s.is_empty());
        let scale = float_const(eg, c)
            .filter(|x| scalar && *x != 0.0)
            .map(|x| 1.0 / x)
            .filter(|x| x.is_finite());
        if let Some(scale) = scale {
            for n in nodes_named(eg, a, "einsum") {
                out.push((n, scale));
            }
        }
    }
    out.retain(|(n, _)| n.children.len() == 2);
    out
}

/// A matched softmax attention.
struct Found<'a> {
    /// The e-class of the scores einsum(Q, K)·c.
    scores: Id,
    qk: &'a TNode,
    scale: f64,
    mask: Recognised,
    pv: &'a Spec,
    p_pos: usize,
    v: Id,
    /// For the log-sum-exp form: the e-class of logsumexp(X).
    lse: Option<(Id, DType)>,
}

impl Found<'_> {
    /// The plans of the fused form: the value einsum's and, for the log-sum-exp form, that
    /// of logsumexp(X) (sharing the fused node); `None` when the letters do not have the
    /// attention shape.
    fn plans(&self, eg: &EG) -> Option<Vec<Outcome>> {
        let qk = spec_of(self.qk)?;
        let r = qk.output.len();
        if qk.inputs.len() != 2 || r < 2 {
            return None;
        }
        let (t, s) = (qk.output[r - 2], qk.output[r - 1]);
        let batch = &qk.output[..r - 2];
        // With no keys at all (S = 0 < T) the fused rows would be NaN where the unfused
        // einsum sums nothing to 0: require S = T or a positive constant.
        let sh = shape(eg, self.scores)?;
        let s_ok = sh[r - 1] == sh[r - 2] || sh[r - 1].as_const().is_some_and(|c| c > 0);
        if !s_ok {
            return None;
        }
        // Exactly one contracted letter, in both operands.
        let summed: Vec<char> = qk
            .letters()
            .into_iter()
            .filter(|c| !qk.output.contains(c))
            .collect();
        let [d] = summed[..] else { return None };
        let qi = qk.inputs.iter().position(|term| term.contains(&t))?;
        let vs = value_side(self.pv, self.p_pos, r)?;
        let mut plan = Plan::new();
        let q = arrange(
            &mut plan,
            eg,
            self.qk.children[qi],
            &qk.inputs[qi],
            batch,
            t,
            d,
        )?;
        let k = arrange(
            &mut plan,
            eg,
            self.qk.children[1 - qi],
            &qk.inputs[1 - qi],
            batch,
            s,
            d,
        )?;
        let v = arrange(&mut plan, eg, self.v, &vs.lv, &vs.batch, vs.s, vs.e)?;
        let (mask, scale) = (self.mask.mask.clone(), self.scale);
        let mut ins = vec![q, k, v];
        ins.extend(self.mask.operands.iter().map(|c| Arg::Class(*c)));
        let (tile_q, tile_k) = (TILE_Q, TILE_K);
        let mut outcomes = Vec::new();
        let att = match self.lse {
            None => plan.push(
                Op::Attention {
                    mask,
                    scale,
                    tile_q,
                    tile_k,
                },
                ins,
            ),
            Some((l_cls, dtype)) => {
                let pair = plan.push(
                    Op::AttentionLse {
                        mask,
                        scale,
                        tile_q,
                        tile_k,
                    },
                    ins,
                );
                let mut for_l = plan.clone();
                for_l.push(Op::Extract { index: 1 }, vec![pair]);
                outcomes.push(Outcome::BuildFor(l_cls, for_l));
                // Rows with no visible key: the unfused exp(−∞ − 0) gives 0.
                let o = plan.push(Op::Extract { index: 0 }, vec![pair]);
                let lse = plan.push(Op::Extract { index: 1 }, vec![pair]);
                let konst = |x: f64| Op::Const {
                    value: Literal::Float(x),
                    dtype,
                };
                let ninf = plan.push(konst(f64::NEG_INFINITY), vec![]);
                let any = plan.push(Op::Binary(BinaryOp::Gt), vec![lse, ninf]);
                let zero = plan.push(konst(0.0), vec![]);
                plan.push(Op::Select, vec![any, o, zero])
            }
        };
        if vs.perm.iter().enumerate().any(|(i, &p)| i != p) {
            plan.push(Op::Transpose { perm: vs.perm }, vec![att]);
        }
        outcomes.insert(0, Outcome::Build(plan));
        Some(outcomes)
    }
}

/// The value einsum einsum(P, V) of an attention whose probabilities P have rank `r`:
/// V's term, P's batch letters and key letter, V's value letter, and the permutation from
/// the fused result's [batch…, T, E] to the einsum's output order.
pub(super) struct ValueSide {
    pub lv: Vec<char>,
    pub batch: Vec<char>,
    pub s: char,
    pub e: char,
    pub perm: Vec<usize>,
}

/// The [`ValueSide`] of `pv` with P as operand `p_pos`; `None` unless the einsum contracts
/// exactly P's last letter and keeps P's others and one letter of V.
pub(super) fn value_side(pv: &Spec, p_pos: usize, r: usize) -> Option<ValueSide> {
    let lp = &pv.inputs[p_pos];
    let lv = &pv.inputs[1 - p_pos];
    if lp.len() != r || r < 2 {
        return None;
    }
    let (t2, s2) = (lp[r - 2], lp[r - 1]);
    let batch2 = &lp[..r - 2];
    let o2 = &pv.output;
    if o2.contains(&s2) || !lv.contains(&s2) {
        return None;
    }
    let new_in_v: Vec<char> = lv.iter().filter(|c| !lp.contains(c)).copied().collect();
    let [e] = new_in_v[..] else { return None };
    let mut order: Vec<char> = batch2.to_vec();
    order.extend([t2, e]);
    if o2.len() != order.len() || order.iter().any(|c| !o2.contains(c)) {
        return None;
    }
    let perm: Vec<usize> = o2
        .iter()
        .map(|c| order.iter().position(|x| x == c))
        .collect::<Option<_>>()?;
    Some(ValueSide {
        lv: lv.clone(),
        batch: batch2.to_vec(),
        s: s2,
        e,
        perm,
    })
}

/// Brings operand `cls` (einsum term `term`) to [batch…, a, b]: a transpose to (its batch
/// letters in `batch` order, a, b), then a reshape inserting size-1 axes for the batch
/// letters it lacks. `None` if the term has other letters or lacks `a` or `b`.
pub(super) fn arrange(
    plan: &mut Plan,
    eg: &EG,
    cls: Id,
    term: &[char],
    batch: &[char],
    a: char,
    b: char,
) -> Option<Arg> {
    let sh = shape(eg, cls)?.to_vec();
    arrange_arg(plan, Arg::Class(cls), &sh, term, batch, a, b)
}

/// As [`arrange`], for an operand `arg` of shape `sh` (a planned node or an e-class).
pub(super) fn arrange_arg(
    plan: &mut Plan,
    arg: Arg,
    sh: &[DimExpr],
    term: &[char],
    batch: &[char],
    a: char,
    b: char,
) -> Option<Arg> {
    if term.len() != sh.len()
        || term
            .iter()
            .any(|c| !batch.contains(c) && *c != a && *c != b)
    {
        return None;
    }
    let mut order: Vec<char> = batch.iter().filter(|c| term.contains(c)).copied().collect();
    order.extend([a, b]);
    if order.len() != term.len() || a == b {
        return None;
    }
    let pos = |c: &char| term.iter().position(|x| x == c);
    let perm: Vec<usize> = order.iter().map(pos).collect::<Option<_>>()?;
    let mut arg = arg;
    if perm.iter().enumerate().any(|(i, &p)| i != p) {
        arg = plan.push(Op::Transpose { perm }, vec![arg]);
    }
    if order.len() != batch.len() + 2 {
        let mut new_shape: Vec<DimExpr> = batch
            .iter()
            .map(|c| pos(c).map_or(DimExpr::constant(1), |i| sh[i].clone()))
            .collect();
        new_shape.extend([sh[pos(&a)?].clone(), sh[pos(&b)?].clone()]);
        arg = plan.push(Op::Reshape { shape: new_shape }, vec![arg]);
    }
    Some(arg)
}
