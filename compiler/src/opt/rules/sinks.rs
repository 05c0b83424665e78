//! `sinks-window-attention`: softmax attention whose keys are rotated (RoPE) at per-query
//! positions of the form where(C, s, P[t] − (t − s)) — StreamingLLM's cache positions, the
//! query rotated at P[t] — split into two fused `attention_lse` nodes merged by log-sum-exp,
//! so that no [.., T, S, D] key tensor is ever built.
//!
//! The split rests on one identity of rotary embeddings: with R(p) the rotation of each
//! plane (x_i, x_{i+D/2}) by p·θ_i, R(a)ᵀR(b) depends on b − a only, so
//!   where C holds: rope(q, P[t])·rope(k, s)              (the "sinks" part, as written)
//!   elsewhere:     rope(q, P[t])·rope(k, P[t] − (t − s)) = rope(q, t)·rope(k, s)
//! (the "window" part: plain RoPE). Both hold for every P, C and mask M, so the rule needs
//! no bound on them; it proves from the e-nodes that the key positions have that form (a
//! linear form in t, s and P[t], `lin`), that the query is rotated at the same P, and that
//! both rotations are the prelude's `rope_at` (rotate_half, angles concat([A, A]) with
//! A = cast(pos)·inv) with the same frequency vector `inv` (same base and head dim). The
//! interleaved flavour, or different frequencies on the two sides, are not recognised.

use super::attention::{
    TILE_K, TILE_Q, arrange, arrange_arg, masked, scaled, softmax_inputs, spec_of, value_side,
};
use super::mask::recognise;
use super::{Arg, DynRule, Outcome, Plan, nodes_named, shape};
use crate::ir::mask::Mask;
use crate::ir::{BinaryOp, DimExpr, Literal, Op, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![Arc::new(SinksWindow)]
}

/// `sinks-window-attention`: with X = select(M, einsum(rope(Q, P), rope(K, pos))·c, −inf),
/// pos[t, s] = where(C, s, P[t] − (t − s)) (or where(C, P[t] − (t − s), s)), K with a
/// size-1 query axis, and P = softmax(X) as the prelude writes it:
///   einsum(P, V) ⇒ transpose((e₁·o₁′ + e₂·o₂′) / (e₁ + e₂)),
///   (o₁, l₁) = attention_lse(rope(Q, P), rope(K, s), V) mask = M ∧ C     (sinks)
///   (o₂, l₂) = attention_lse(rope(Q, t), rope(K, s), V) mask = M ∧ ¬C    (window)
///   g = max(l₁, l₂) (0 when −∞), eᵢ = exp(lᵢ − g), oᵢ′ = oᵢ where lᵢ > −∞, else 0;
/// a row where one part sees no key is exactly the other part; a row where neither does is
/// NaN, as the unfused softmax of −∞ everywhere is.
struct SinksWindow;

impl DynRule for SinksWindow {
    fn name(&self) -> &'static str {
        "sinks-window-attention"
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
            let (rank, dtype) = (t.rank(), t.dtype);
            if rank < 2 || !dtype.is_float() {
                continue;
            }
            for x in softmax_inputs(eg, p_cls, rank - 1) {
                for (scores, mask) in masked(eg, x) {
                    if !mask.operands.is_empty() {
                        // A mask reading operands (BigBird's table): not needed here.
                        continue;
                    }
                    for (qk, scale) in scaled(eg, scores) {
                        let m = Match {
                            scores,
                            qk: &qk,
                            scale,
                            mask: &mask.mask,
                            p_pos,
                            v: v_cls,
                            dtype,
                        };
                        out.extend(m.plan(eg, &pv).map(Outcome::Build));
                    }
                }
            }
        }
        out
    }
}

/// A candidate: the value einsum's operands and the masked, scaled scores.
struct Match<'a> {
    scores: Id,
    qk: &'a TNode,
    scale: f64,
    mask: &'a Mask,
    p_pos: usize,
    v: Id,
    dtype: DType,
}

/// A recognised rope(x, pos) = x·cos(E) + rotate_half(x)·sin(E), E = concat([A, A], −1),
/// A = reshape(cast(pos), pos's shape + [1]) · inv.
struct Rope {
    x: Id,
    pos: Id,
    inv: Id,
    /// The float type the positions are cast to.
    to: DType,
    /// The head dim D (even, constant).
    d: i64,
}

impl Match<'_> {
    fn plan(&self, eg: &EG, pv: &crate::opt::einsum::Spec) -> Option<Plan> {
        let qk = spec_of(self.qk)?;
        let r = qk.output.len();
        if qk.inputs.len() != 2 || r < 2 {
            return None;
        }
        let (t, s) = (qk.output[r - 2], qk.output[r - 1]);
        let batch = &qk.output[..r - 2];
        let sh = shape(eg, self.scores)?;
        // As `softmax-attention`: no keys at all would make fused rows NaN.
        let s_ok = sh[r - 1] == sh[r - 2] || sh[r - 1].as_const().is_some_and(|c| c > 0);
        if !s_ok {
            return None;
        }
        let (t_dim, s_dim) = (sh[r - 2].clone(), sh[r - 1].clone());
        let summed: Vec<char> = qk
            .letters()
            .into_iter()
            .filter(|c| !qk.output.contains(c))
            .collect();
        let [d] = summed[..] else { return None };
        // The query term ends in (t, d) without s; the key term ends in (t, s, d).
        let qi = qk.inputs.iter().position(|term| !term.contains(&s))?;
        let (qterm, kterm) = (&qk.inputs[qi], &qk.inputs[1 - qi]);
        let kr = kterm.len();
        if !qterm.ends_with(&[t, d]) || kr < 3 || !kterm.ends_with(&[t, s, d]) {
            return None;
        }
        let (q_cls, k_cls) = (self.qk.children[qi], self.qk.children[1 - qi]);
        let vs = value_side(pv, self.p_pos, r)?;
        for rq in ropes(eg, q_cls) {
            for rk in ropes(eg, k_cls) {
                let same_flavour =
                    eg.find(rq.inv) == eg.find(rk.inv) && rq.to == rk.to && rq.d == rk.d;
                if !same_flavour || shape(eg, rq.pos)? != [t_dim.clone()] {
                    continue;
                }
                if shape(eg, rk.pos)? != [t_dim.clone(), s_dim.clone()] {
                    continue;
                }
                // The unrotated key: its query axis is 1 and the other axes are the key's.
                let xk = shape(eg, rk.x)?;
                let ksh = shape(eg, k_cls)?;
                let qsh = shape(eg, q_cls)?;
                if xk.len() != kr
                    || xk[kr - 3] != DimExpr::constant(1)
                    || (0..kr).any(|i| i != kr - 3 && xk[i] != ksh[i])
                    || shape(eg, rq.x)? != qsh
                {
                    continue;
                }
                let Some(sinks) = key_positions(eg, rk.pos, rq.pos, r) else {
                    continue;
                };
                return self.build(
                    eg,
                    &Parts {
                        rq: &rq,
                        rk: &rk,
                        q_cls,
                        qterm,
                        kterm,
                        batch,
                        letters: (t, s, d),
                        dims: (t_dim.clone(), s_dim.clone()),
                        sinks,
                        vs: &vs,
                    },
                );
            }
        }
        None
    }

    fn build(&self, eg: &EG, p: &Parts) -> Option<Plan> {
        let (t, s, d) = p.letters;
        let mut plan = Plan::new();
        // Sinks: the query as written (rotated at P), keys rotated at s.
        let q_sinks = arrange(&mut plan, eg, p.q_cls, p.qterm, p.batch, t, d)?;
        // Window: the query rotated at t.
        let xq = arrange(&mut plan, eg, p.rq.x, p.qterm, p.batch, t, d)?;
        let q_window = rope(&mut plan, xq, p.batch.len() + 2, &p.dims.0, p.rq);
        // The key without its size-1 query axis, rotated at s.
        let kr = p.kterm.len();
        let mut ksh = shape(eg, p.rk.x)?.to_vec();
        ksh.remove(kr - 3);
        let mut kterm = p.kterm.clone();
        kterm.remove(kr - 3);
        let k4 = plan.push(Op::Reshape { shape: ksh.clone() }, vec![Arg::Class(p.rk.x)]);
        let k = arrange_arg(&mut plan, k4, &ksh, &kterm, p.batch, s, d)?;
        let k = rope(&mut plan, k, p.batch.len() + 2, &p.dims.1, p.rk);
        let vs = p.vs;
        let v = arrange(&mut plan, eg, self.v, &vs.lv, &vs.batch, vs.s, vs.e)?;
        let m = self.mask.clone();
        let (c_sinks, c_window) = (p.sinks.clone(), Mask::Not(Box::new(p.sinks.clone())));
        let part = |plan: &mut Plan, q: Arg, c: Mask| {
            let mask = Mask::bin(BinaryOp::And, m.clone(), c);
            let op = Op::AttentionLse {
                mask,
                scale: self.scale,
                tile_q: TILE_Q,
                tile_k: TILE_K,
            };
            let pair = plan.push(op, vec![q, k, v]);
            let o = plan.push(Op::Extract { index: 0 }, vec![pair]);
            let l = plan.push(Op::Extract { index: 1 }, vec![pair]);
            (o, l)
        };
        let (o1, l1) = part(&mut plan, q_sinks, c_sinks);
        let (o2, l2) = part(&mut plan, q_window, c_window);
        // The log-sum-exp merge.
        let dtype = self.dtype;
        let konst = |x: f64| Op::Const {
            value: Literal::Float(x),
            dtype,
        };
        let ninf = plan.push(konst(f64::NEG_INFINITY), vec![]);
        let zero = plan.push(konst(0.0), vec![]);
        let bin =
            |plan: &mut Plan, op: BinaryOp, a: Arg, b: Arg| plan.push(Op::Binary(op), vec![a, b]);
        let guard = |plan: &mut Plan, l: Arg, x: Arg| {
            let any = bin(plan, BinaryOp::Gt, l, ninf);
            plan.push(Op::Select, vec![any, x, zero])
        };
        let mx = bin(&mut plan, BinaryOp::Max, l1, l2);
        let g = guard(&mut plan, mx, mx);
        let mut terms = Vec::new();
        for (o, l) in [(o1, l1), (o2, l2)] {
            let dl = bin(&mut plan, BinaryOp::Sub, l, g);
            let e = plan.push(Op::Unary(UnaryOp::Exp), vec![dl]);
            let o = guard(&mut plan, l, o);
            terms.push((e, o));
        }
        let [(e1, p1), (e2, p2)] = terms[..] else {
            return None;
        };
        let w1 = bin(&mut plan, BinaryOp::Mul, e1, p1);
        let w2 = bin(&mut plan, BinaryOp::Mul, e2, p2);
        let num = bin(&mut plan, BinaryOp::Add, w1, w2);
        let z = bin(&mut plan, BinaryOp::Add, e1, e2);
        let out = bin(&mut plan, BinaryOp::Div, num, z);
        if vs.perm.iter().enumerate().any(|(i, &p)| i != p) {
            plan.push(
                Op::Transpose {
                    perm: vs.perm.clone(),
                },
                vec![out],
            );
        }
        Some(plan)
    }
}

/// What [`Match::build`] needs once every side condition holds.
struct Parts<'a> {
    rq: &'a Rope,
    rk: &'a Rope,
    q_cls: Id,
    qterm: &'a [char],
    kterm: &'a Vec<char>,
    batch: &'a [char],
    /// The query, key and contracted letters of the score einsum.
    letters: (char, char, char),
    /// The query and key lengths.
    dims: (DimExpr, DimExpr),
    /// C: where the key is rotated at its own index s.
    sinks: Mask,
    vs: &'a super::attention::ValueSide,
}

/// Plans rope(x, iota([n])) for x: [.., n, D] of rank `rank`, with `like`'s frequencies and
/// cast, written as the prelude's `rope_at` writes it (so that equal ropes share e-nodes).
fn rope(plan: &mut Plan, x: Arg, rank: usize, n: &DimExpr, like: &Rope) -> Arg {
    let (h, d) = (DimExpr::constant(like.d / 2), DimExpr::constant(like.d));
    let pos = plan.push(
        Op::Iota {
            shape: vec![n.clone()],
            axis: 0,
        },
        vec![],
    );
    let c = plan.push(Op::Cast { to: like.to }, vec![pos]);
    let col = plan.push(
        Op::Reshape {
            shape: vec![n.clone(), DimExpr::constant(1)],
        },
        vec![c],
    );
    let a = plan.push(Op::Binary(BinaryOp::Mul), vec![col, Arg::Class(like.inv)]);
    let e = plan.push(Op::Concat { axis: 1 }, vec![a, a]);
    let last = rank - 1;
    let slice = |plan: &mut Plan, start: &DimExpr, end: &DimExpr| {
        let op = Op::Slice {
            axis: last,
            start: start.clone(),
            end: end.clone(),
            step: 1,
        };
        plan.push(op, vec![x])
    };
    let hi = slice(plan, &h, &d);
    let neg = plan.push(Op::Unary(UnaryOp::Neg), vec![hi]);
    let lo = slice(plan, &DimExpr::constant(0), &h);
    let rot = plan.push(Op::Concat { axis: last }, vec![neg, lo]);
    let cos = plan.push(Op::Unary(UnaryOp::Cos), vec![e]);
    let m1 = plan.push(Op::Binary(BinaryOp::Mul), vec![x, cos]);
    let sin = plan.push(Op::Unary(UnaryOp::Sin), vec![e]);
    let m2 = plan.push(Op::Binary(BinaryOp::Mul), vec![rot, sin]);
    plan.push(Op::Binary(BinaryOp::Add), vec![m1, m2])
}

/// The children of a binary node `name` of `class`, in both orders (`mul`, `add` commute).
fn pairs(eg: &EG, class: Id, name: &str) -> Vec<(Id, Id)> {
    nodes_named(eg, class, name)
        .iter()
        .flat_map(|n| {
            [
                (n.children[0], n.children[1]),
                (n.children[1], n.children[0]),
            ]
        })
        .collect()
}

/// The child of a unary node `op` of `class`, if any.
fn unary_child(eg: &EG, class: Id, op: UnaryOp) -> Vec<Id> {
    eg[eg.find(class)]
        .nodes
        .iter()
        .filter(|n| matches!(n.op.op(), Op::Unary(u) if *u == op))
        .map(|n| n.children[0])
        .collect()
}

/// The recognised ropes of `class`.
fn ropes(eg: &EG, class: Id) -> Vec<Rope> {
    let mut out = Vec::new();
    for (a, b) in pairs(eg, class, "add") {
        for (x, cos) in pairs(eg, a, "mul") {
            for (rot, sin) in pairs(eg, b, "mul") {
                for e in unary_child(eg, cos, UnaryOp::Cos) {
                    let same_angle = unary_child(eg, sin, UnaryOp::Sin)
                        .iter()
                        .any(|e2| eg.find(*e2) == eg.find(e));
                    if !same_angle || !is_rotate_half(eg, rot, x) {
                        continue;
                    }
                    if let Some(r) = angles(eg, e, x) {
                        out.push(r);
                    }
                }
            }
        }
    }
    out
}

/// Whether `rot` = concat([−slice(x, −1, D/2, D), slice(x, −1, 0, D/2)], −1).
fn is_rotate_half(eg: &EG, rot: Id, x: Id) -> bool {
    let Some(sh) = shape(eg, x) else {
        return false;
    };
    let Some(d) = sh.last().and_then(DimExpr::as_const) else {
        return false;
    };
    let last = sh.len() - 1;
    let half = DimExpr::constant(d / 2);
    let is_slice = |cls: Id, from: &DimExpr, to: &DimExpr| {
        nodes_named(eg, cls, "slice").iter().any(|n| {
            eg.find(n.children[0]) == eg.find(x)
                && matches!(n.op.op(), Op::Slice { axis, start, end, step: 1 }
                    if *axis == last && start == from && end == to)
        })
    };
    d % 2 == 0
        && nodes_named(eg, rot, "concat").iter().any(|n| {
            matches!(n.op.op(), Op::Concat { axis } if *axis == last)
                && n.children.len() == 2
                && unary_child(eg, n.children[0], UnaryOp::Neg)
                    .iter()
                    .any(|hi| is_slice(*hi, &half, &DimExpr::constant(d)))
                && is_slice(n.children[1], &DimExpr::constant(0), &half)
        })
}

/// The rope of angles `e` = concat([A, A], −1), A = reshape(cast(pos)) · inv, for `x`.
fn angles(eg: &EG, e: Id, x: Id) -> Option<Rope> {
    let esh = shape(eg, e)?;
    let d = shape(eg, x)?.last()?.as_const()?;
    if esh.last()?.as_const()? != d {
        return None;
    }
    let last = esh.len() - 1;
    for cat in nodes_named(eg, e, "concat") {
        let two = cat.children.len() == 2 && eg.find(cat.children[0]) == eg.find(cat.children[1]);
        if !two || !matches!(cat.op.op(), Op::Concat { axis } if *axis == last) {
            continue;
        }
        for (col, inv) in pairs(eg, cat.children[0], "mul") {
            if shape(eg, inv)? != [DimExpr::constant(d / 2)] {
                continue;
            }
            for re in nodes_named(eg, col, "reshape") {
                for cast in nodes_named(eg, re.children[0], "cast") {
                    let Op::Cast { to } = cast.op.op() else {
                        continue;
                    };
                    let pos = eg.find(cast.children[0]);
                    let pt = eg[pos].data.tensor()?;
                    let mut want = pt.shape.clone();
                    want.push(DimExpr::constant(1));
                    if pt.dtype == DType::I32 && to.is_float() && shape(eg, col)? == want {
                        return Some(Rope {
                            x,
                            pos,
                            inv,
                            to: *to,
                            d,
                        });
                    }
                }
            }
        }
    }
    None
}

/// Most nested e-classes `lin` follows.
const MAX_LIN_DEPTH: usize = 16;

/// An i32 value a·t + b·s + c·P[t] + k over the (t, s) frame: [a, b, c, k].
type Lin = [i64; 4];

/// C such that the [T, S] key positions `pos` = where(C, s, P[t] − (t − s)) (or the
/// branches the other way round, C negated), with P the query's positions; C is a
/// recognised mask reading no operand (in the frame of scores of rank `rank`).
fn key_positions(eg: &EG, pos: Id, p: Id, rank: usize) -> Option<Mask> {
    const S: Lin = [0, 1, 0, 0];
    const SHIFTED: Lin = [-1, 1, 1, 0];
    for sel in nodes_named(eg, pos, "select") {
        let (c, a, b) = (sel.children[0], sel.children[1], sel.children[2]);
        let (la, lb) = (lin(eg, a, p, 0), lin(eg, b, p, 0));
        let sinks_when = if la == Some(S) && lb == Some(SHIFTED) {
            true
        } else if la == Some(SHIFTED) && lb == Some(S) {
            false
        } else {
            continue;
        };
        let Some(m) = recognise(eg, c, rank).filter(|m| m.operands.is_empty()) else {
            continue;
        };
        return Some(if sinks_when {
            m.mask
        } else {
            Mask::Not(Box::new(m.mask))
        });
    }
    None
}

/// The linear form of an i32 e-class of rank ≤ 2 in the (t, s) frame (right-aligned: the last
/// axis is s, the one before t), built from `iota`, i32 constants, add, sub, neg, broadcasts,
/// reshapes adding leading 1s, and P read at t (`reshape(P, [T, 1])`); `None` otherwise.
fn lin(eg: &EG, class: Id, p: Id, depth: usize) -> Option<Lin> {
    let class = eg.find(class);
    let ty = eg[class].data.tensor()?;
    if depth > MAX_LIN_DEPTH || ty.dtype != DType::I32 || ty.rank() > 2 || class == eg.find(p) {
        return None;
    }
    let one = DimExpr::constant(1);
    eg[class].nodes.iter().find_map(|n| {
        let kid = |i: usize| lin(eg, n.children[i], p, depth + 1);
        match n.op.op() {
            Op::Iota { shape, axis } if shape[*axis] == one => Some([0; 4]),
            Op::Iota { shape, axis } => match shape.len() - 1 - axis {
                0 => Some([0, 1, 0, 0]),
                1 => Some([1, 0, 0, 0]),
                _ => None,
            },
            Op::Const {
                value: Literal::Int(c),
                dtype: DType::I32,
            } => Some([0, 0, 0, *c]),
            Op::Binary(BinaryOp::Add) => combine(kid(0)?, kid(1)?, 1),
            Op::Binary(BinaryOp::Sub) => combine(kid(0)?, kid(1)?, -1),
            Op::Unary(UnaryOp::Neg) => combine([0; 4], kid(0)?, -1),
            Op::Broadcast { .. } => kid(0),
            Op::Reshape { shape } => {
                let from = shape_of(eg, n.children[0])?;
                if shape.len() == 2 && from.len() == 1 && shape[0] == from[0] && shape[1] == one {
                    // A column: the operand's index becomes t.
                    if eg.find(n.children[0]) == eg.find(p) {
                        return Some([0, 0, 1, 0]);
                    }
                    let [a, b, c, k] = kid(0)?;
                    return (a == 0 && c == 0).then_some([b, 0, 0, k]);
                }
                let lead = |s: &[DimExpr]| s.iter().skip_while(|d| **d == one).count();
                let same = lead(shape) == lead(&from)
                    && shape[shape.len() - lead(shape)..] == from[from.len() - lead(&from)..];
                if same { kid(0) } else { None }
            }
            _ => None,
        }
    })
}

fn shape_of(eg: &EG, class: Id) -> Option<Vec<DimExpr>> {
    shape(eg, class).map(<[DimExpr]>::to_vec)
}

/// a + sign·b, coefficient by coefficient; `None` on overflow.
fn combine(a: Lin, b: Lin, sign: i64) -> Option<Lin> {
    let mut out = [0; 4];
    for i in 0..4 {
        out[i] = a[i].checked_add(b[i].checked_mul(sign)?)?;
    }
    Some(out)
}
