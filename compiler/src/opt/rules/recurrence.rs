//! Chunked linear-attention rules for the recurrent form (R5): a forward linear scan of
//! outer products k ⊗ v (the [K, V] state of linear attention, Mamba-2, RWKV-6, …) read by
//! an einsum with the queries, or a scan of k read by a dot product with q (the normaliser),
//! equals `linear_attn`. The time, key and value axes of the state may be in any order: the
//! einsum's letters say which is which, and the operands are transposed (views) into
//! `linear_attn`'s [lead..., T, ·] layout.

use super::decay::{self, Decay, Val};
use super::linear::{Chunked, distinct, normaliser, positions, transpose_to, with};
use super::{DynRule, Outcome, nodes_named};
use crate::ir::{DimExpr, Literal, Op, ReduceOp, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;

/// The log-decay of a scan whose decay `a` is 1 (none), e^x, or a reshape of e^x, in the
/// state's axis order with the axis `drop` (the value axis, where `a` must be 1) removed;
/// `key` is the key axis's position after that removal. Per step when `a` is 1 along the
/// key axis (the key axis is then removed too), per channel otherwise. `Some(None)`: no
/// decay.
fn scan_decay(
    eg: &EG,
    a: Id,
    rank: usize,
    drop: Option<usize>,
    key: usize,
) -> Option<Option<Decay>> {
    if decay::is_float_const(eg, a, 1.0) {
        return Some(None);
    }
    let logs = eg[a].nodes.iter().find_map(|n| match n.op.op() {
        Op::Unary(UnaryOp::Exp) => Val::class(eg, n.children[0]),
        Op::Reshape { shape } => nodes_named(eg, n.children[0], "exp")
            .first()
            .and_then(|e| Val::class(eg, e.children[0]))
            .map(|x| x.reshape(shape.clone())),
        _ => None,
    })?;
    let one = DimExpr::constant(1);
    if logs.shape.len() != rank || drop.is_some_and(|d| logs.shape[d] != one) {
        return None;
    }
    let la = match drop {
        Some(d) => logs.drop_axis(d),
        None => logs,
    };
    Some(Some(if la.shape[key] == one {
        Decay {
            g: la.drop_axis(key),
            per_channel: false,
        }
    } else {
        Decay {
            g: la,
            per_channel: true,
        }
    }))
}

/// The state e-classes an einsum operand reads: itself (not strict, any time axis), or a
/// state shifted one step along `axis` by slice(pad(S, before = 1, value = 0), 0..T)
/// (strict: S_{t−1}), with that axis.
fn read_state(eg: &EG, id: Id) -> Vec<(Id, Option<usize>)> {
    let mut out = vec![(id, None)];
    for s in nodes_named(eg, id, "slice") {
        let Op::Slice {
            axis,
            start,
            end,
            step,
        } = s.op.op()
        else {
            continue;
        };
        if *step != 1 || start.as_const() != Some(0) {
            continue;
        }
        for p in nodes_named(eg, s.children[0], "pad") {
            let Op::Pad {
                axis: pa,
                before,
                after,
                value,
            } = p.op.op()
            else {
                continue;
            };
            let len = eg[p.children[0]]
                .data
                .tensor()
                .and_then(|t| t.shape.get(*axis).cloned());
            if pa == axis
                && before.as_const() == Some(1)
                && after.as_const() == Some(0)
                && matches!(value, Literal::Float(z) if *z == 0.0)
                && len.as_ref() == Some(end)
            {
                out.push((p.children[0], Some(*axis)));
            }
        }
    }
    out
}

/// `ts` without the letter at `i`.
fn without(ts: &[char], i: usize) -> Vec<char> {
    let mut v = ts.to_vec();
    v.remove(i);
    v
}

/// `shape` without the dim at `i`.
fn without_dim(shape: &[DimExpr], i: usize) -> Vec<DimExpr> {
    let mut v = shape.to_vec();
    v.remove(i);
    v
}

/// `recurrence-chunk`: einsum(r, S′) ⇒ linear_attn(r, k, v, g, strict) where
/// S = scan(a, k ⊗ v) along T (S_t = a_t ⊙ S_{t−1} + k_t ⊗ v_t, forward, no initial state),
/// S′ = S (out_t = Σ_c r_tc S_t[c, ·]) or S shifted one step along T (strict:
/// out_t = Σ_c r_tc S_{t−1}[c, ·]). Letters: the key letter c is summed (in r and S′, not in
/// the output), the value letter e is in S′ and the output only, every other letter (the
/// time letter among them) is in all three. k ⊗ v is a `mul` of two operands of S's rank,
/// one of size 1 along e (k), the other along c (v); the decay a is 1 or e^x of S's rank,
/// 1 along e, per step (1 along c too) or per key channel (g = x).
pub(super) struct RecurrenceChunk;

impl DynRule for RecurrenceChunk {
    fn name(&self) -> &'static str {
        "recurrence-chunk"
    }
    fn root(&self) -> &'static str {
        "einsum"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Op::Einsum { spec } = node.op.op() else {
            return vec![];
        };
        let Some(spec) = Spec::parse(spec) else {
            return vec![];
        };
        if spec.inputs.len() != 2 || !distinct(&spec.output) {
            return vec![];
        }
        let mut out = Vec::new();
        for si in 0..2 {
            let (ts, tr, o) = (&spec.inputs[si], &spec.inputs[1 - si], &spec.output);
            if !distinct(ts) || !distinct(tr) {
                continue;
            }
            let only_s: Vec<char> = ts.iter().filter(|l| !tr.contains(l)).copied().collect();
            let summed: Vec<char> = ts.iter().filter(|l| !o.contains(l)).copied().collect();
            let ([e], [c]) = (&only_s[..], &summed[..]) else {
                continue;
            };
            let (Some(ei), Some(ci)) = (
                ts.iter().position(|l| l == e),
                ts.iter().position(|l| l == c),
            ) else {
                continue;
            };
            // r has S′'s letters but e; the output S′'s letters but c.
            let (Some(_), Some(_)) = (
                positions(tr, &without(ts, ei)),
                positions(o, &without(ts, ci)),
            ) else {
                continue;
            };
            let Some(r) = Val::class(eg, node.children[1 - si]) else {
                continue;
            };
            let letters = Letters { ts, ci, ei };
            for (state, shift) in read_state(eg, node.children[si]) {
                for (axis, k, v, g) in recurrence(eg, state, &letters, shift) {
                    let t = ts[axis];
                    let lead: Vec<char> = ts
                        .iter()
                        .filter(|l| **l != t && *l != c && *l != e)
                        .copied()
                        .collect();
                    let canon = |x: char| {
                        let mut v = lead.clone();
                        v.extend([t, x]);
                        v
                    };
                    let (Some(rp), Some(finish)) =
                        (positions(tr, &canon(*c)), transpose_to(&canon(*e), o))
                    else {
                        continue;
                    };
                    out.extend(
                        Chunked {
                            q: r.clone().transpose(rp),
                            k,
                            v,
                            g,
                            strict: shift.is_some(),
                            finish,
                        }
                        .outcomes(),
                    );
                }
            }
        }
        out
    }
}

/// The letters of a state operand: its term, and the positions of its key and value letters.
struct Letters<'a> {
    ts: &'a [char],
    ci: usize,
    ei: usize,
}

/// For every scan(a, k ⊗ v) e-node in `state` (along `shift`'s axis, if shifted): the time
/// axis and k [lead..., T, K], v [lead..., T, V], g [lead..., T] or [lead..., T, K], with
/// lead the other letters of the state in its order.
fn recurrence(
    eg: &EG,
    state: Id,
    l: &Letters,
    shift: Option<usize>,
) -> Vec<(usize, Val, Val, Option<Val>)> {
    let Some(ss) = eg[state].data.tensor().map(|t| t.shape.clone()) else {
        return vec![];
    };
    let (ts, ci, ei) = (l.ts, l.ci, l.ei);
    let rank = ts.len();
    if ss.len() != rank {
        return vec![];
    }
    let one = DimExpr::constant(1);
    let mut out = Vec::new();
    for s in nodes_named(eg, state, "scan") {
        let Op::Scan {
            axis,
            reverse: false,
        } = *s.op.op()
        else {
            continue;
        };
        if s.children.len() != 2 || axis == ci || axis == ei || shift.is_some_and(|x| x != axis) {
            continue;
        }
        let t = ts[axis];
        let lead: Vec<char> = ts
            .iter()
            .enumerate()
            .filter(|(i, _)| ![axis, ci, ei].contains(i))
            .map(|(_, l)| *l)
            .collect();
        // Where the key axis is once the value axis is removed, and the layouts wanted.
        let key_after = if ci > ei { ci - 1 } else { ci };
        let canon_k: Vec<char> = with_letters(&lead, &[t, ts[ci]]);
        let canon_v: Vec<char> = with_letters(&lead, &[t, ts[ei]]);
        let no_e = without(ts, ei);
        let no_c = without(ts, ci);
        let (Some(kp), Some(vp)) = (positions(&no_e, &canon_k), positions(&no_c, &canon_v)) else {
            continue;
        };
        let Some(gp) = positions(&without(&no_e, key_after), &with_letters(&lead, &[t])) else {
            continue;
        };
        let Some(d) = scan_decay(eg, s.children[0], rank, Some(ei), key_after) else {
            continue;
        };
        let g = d.map(|d| {
            if d.per_channel {
                d.g.broadcast(without_dim(&ss, ei)).transpose(kp.clone())
            } else {
                d.g.broadcast(without_dim(&without_dim(&ss, ei), key_after))
                    .transpose(gp)
            }
        });
        for m in nodes_named(eg, s.children[1], "mul") {
            for ki in 0..2 {
                let (Some(x), Some(y)) = (
                    Val::class(eg, m.children[ki]),
                    Val::class(eg, m.children[1 - ki]),
                ) else {
                    continue;
                };
                if x.shape.len() != rank || y.shape.len() != rank {
                    continue;
                }
                if x.shape[ei] != one || y.shape[ci] != one {
                    continue;
                }
                let k = x
                    .drop_axis(ei)
                    .broadcast(without_dim(&ss, ei))
                    .transpose(kp.clone());
                let v = y
                    .drop_axis(ci)
                    .broadcast(without_dim(&ss, ci))
                    .transpose(vp.clone());
                out.push((axis, k, v, g.clone()));
            }
        }
    }
    out
}

fn with_letters(a: &[char], b: &[char]) -> Vec<char> {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

/// `recurrence-normaliser-chunk`: sum(q ⊙ z, axes = [K]) ⇒ linear_attn(q, k, 1, g) where
/// z = scan(a, k) along T (z_t = a_t ⊙ z_{t−1} + k_t, [lead..., T, K], forward, no initial
/// state) and q has z's shape: Σ_c q_tc z_tc = Σ_{s≤t} Σ_c q_tc k_sc e^{G_tc − G_sc}. The
/// normaliser of recurrent linear attention; a as in `recurrence-chunk` (1 along K for a
/// per-step decay).
pub(super) struct RecurrenceNormaliserChunk;

impl DynRule for RecurrenceNormaliserChunk {
    fn name(&self) -> &'static str {
        "recurrence-normaliser-chunk"
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
        for m in nodes_named(eg, node.children[0], "mul") {
            for zi in 0..2 {
                let (Some(q), Some(zs)) = (
                    Val::class(eg, m.children[1 - zi]),
                    eg[m.children[zi]].data.tensor().map(|t| t.shape.clone()),
                ) else {
                    continue;
                };
                let r = zs.len();
                if r < 2 || q.shape != zs || axes.as_slice() != [r - 1] {
                    continue;
                }
                let (lead, t, kd) = (&zs[..r - 2], &zs[r - 2], &zs[r - 1]);
                for s in nodes_named(eg, m.children[zi], "scan") {
                    let want = Op::Scan {
                        axis: r - 2,
                        reverse: false,
                    };
                    if *s.op.op() != want || s.children.len() != 2 {
                        continue;
                    }
                    let (Some(d), Some(k)) = (
                        scan_decay(eg, s.children[0], r, None, r - 1),
                        Val::class(eg, s.children[1]),
                    ) else {
                        continue;
                    };
                    let g = d.map(|d| {
                        let mut gs = with(lead.to_vec(), std::slice::from_ref(t));
                        if d.per_channel {
                            gs.push(kd.clone());
                        }
                        d.g.broadcast(gs)
                    });
                    out.extend(normaliser(
                        eg,
                        class,
                        q.clone(),
                        k,
                        g,
                        lead.to_vec(),
                        t.clone(),
                        *keepdim,
                    ));
                }
            }
        }
        out
    }
}
