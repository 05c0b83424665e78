//! Chunked linear-attention rules (R5 in shared/notes/architectures.md): the decay-masked
//! quadratic form and the linear recurrence of causal linear attention both equal
//! `linear_attn` (intra-chunk quadratic + inter-chunk state passing, `ir/op.rs`). Each rule
//! proposes one `linear_attn` per chunk size in [`CHUNKS`]; extraction keeps the cheapest
//! (the cost model chooses the chunk size, or keeps the original form where it is cheaper).
//! The facts the rules rely on (causal masks, decays, outer products) are proved by the
//! recognisers of `decay.rs`; when unsure, a rule proposes nothing.

use super::decay::{self, Decay, Val};
use super::{Arg, DynRule, Outcome, Plan, nodes_named};
use crate::ir::{DimExpr, Literal, Op, ReduceOp};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use std::sync::Arc;

/// The chunk sizes proposed (extraction picks one).
pub const CHUNKS: [usize; 4] = [16, 32, 64, 128];

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![
        Arc::new(MaskedAttentionChunk),
        Arc::new(MaskedNormaliserChunk),
        Arc::new(RecurrenceChunk),
        Arc::new(RecurrenceNormaliserChunk),
    ]
}

/// The operands of a `linear_attn` and how its result [lead..., T, V] becomes the value.
struct Chunked {
    q: Val,
    k: Val,
    v: Val,
    g: Option<Val>,
    strict: bool,
    /// Applied to the result: a transpose or a reshape.
    finish: Option<Op>,
}

impl Chunked {
    /// One outcome per chunk size.
    fn outcomes(&self) -> Vec<Outcome> {
        CHUNKS
            .iter()
            .map(|&chunk| {
                let mut plan = Plan::new();
                let mut args: Vec<Arg> = vec![
                    self.q.push(&mut plan),
                    self.k.push(&mut plan),
                    self.v.push(&mut plan),
                ];
                if let Some(g) = &self.g {
                    args.push(g.push(&mut plan));
                }
                let op = Op::LinearAttn {
                    chunk,
                    strict: self.strict,
                };
                let out = plan.push(op, args);
                if let Some(f) = &self.finish {
                    plan.push(f.clone(), vec![out]);
                }
                Outcome::Build(plan)
            })
            .collect()
    }
}

fn with(mut v: Vec<DimExpr>, tail: &[DimExpr]) -> Vec<DimExpr> {
    v.extend_from_slice(tail);
    v
}

fn distinct(term: &[char]) -> bool {
    term.iter()
        .all(|l| term.iter().filter(|m| *m == l).count() == 1)
}

/// The positions in `term` of the letters of `want`, if `term` has exactly those letters.
fn positions(term: &[char], want: &[char]) -> Option<Vec<usize>> {
    if term.len() != want.len() || !distinct(term) {
        return None;
    }
    want.iter()
        .map(|l| term.iter().position(|m| m == l))
        .collect()
}

/// The transpose taking letters `from` to `to` (the same letters), `None` when it is the
/// identity.
fn transpose_to(from: &[char], to: &[char]) -> Option<Option<Op>> {
    let perm = positions(from, to)?;
    let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
    Some((!identity).then_some(Op::Transpose { perm }))
}

/// A masked quadratic form [lead..., T, T]: its q, k and log-decay broadcast to its leading
/// dims.
struct Quadratic {
    lead: Vec<DimExpr>,
    t: DimExpr,
    q: Val,
    k: Val,
    g: Option<Val>,
}

/// The masked quadratic form in e-class `a`.
fn quadratic(eg: &EG, a: Id) -> Option<Quadratic> {
    let s = eg[a].data.tensor()?.shape.clone();
    let r = s.len();
    if r < 2 || s[r - 2] != s[r - 1] {
        return None;
    }
    let t = s[r - 1].clone();
    let f = decay::form(eg, a, &t, decay::depth())?;
    let lead = s[..r - 2].to_vec();
    let (q, k, g) = decay::assemble(f, &lead, &t)?;
    Some(Quadratic { lead, t, q, k, g })
}

/// `masked-attention-chunk`: einsum(A, V) ⇒ linear_attn(q, k, v, g) where A [lead..., t, s]
/// equals causal(s ≤ t) · (q_t · k_s) · e^{G_t − G_s} (`decay::form`), the einsum sums s
/// against V's time axis and keeps one more letter z of V: out_t = Σ_{s≤t} Σ_c q_tc k_sc
/// e^{G_t − G_s} v_s. V and the result are transposed to and from [lead..., T, ·].
struct MaskedAttentionChunk;

impl DynRule for MaskedAttentionChunk {
    fn name(&self) -> &'static str {
        "masked-attention-chunk"
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
        if spec.inputs.len() != 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for ai in 0..2 {
            let (ta, tv) = (&spec.inputs[ai], &spec.inputs[1 - ai]);
            if ta.len() < 2 || !distinct(ta) {
                continue;
            }
            let (x, y) = (ta[ta.len() - 2], ta[ta.len() - 1]);
            let batch = &ta[..ta.len() - 2];
            // V's letters: the batch letters, y and one letter z of its own.
            let own: Vec<char> = tv.iter().filter(|l| !ta.contains(l)).copied().collect();
            let [z] = own[..] else { continue };
            let canon_v = with_chars(batch, &[y, z]);
            let canon_o = with_chars(batch, &[x, z]);
            let (Some(vp), Some(finish)) = (
                positions(tv, &canon_v),
                transpose_to(&canon_o, &spec.output),
            ) else {
                continue;
            };
            let Some(Quadratic { q, k, g, .. }) = quadratic(eg, node.children[ai]) else {
                continue;
            };
            let Some(v) = Val::class(eg, node.children[1 - ai]) else {
                continue;
            };
            let c = Chunked {
                q,
                k,
                v: v.transpose(vp),
                g,
                strict: false,
                finish,
            };
            out.extend(c.outcomes());
        }
        out
    }
}

fn with_chars(a: &[char], b: &[char]) -> Vec<char> {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

/// `masked-normaliser-chunk`: sum(A, axes = [s]) ⇒ linear_attn(q, k, 1, g), A as in
/// `masked-attention-chunk`, v = ones [lead..., T, 1] (a broadcast constant); keepdim keeps
/// that 1, otherwise a reshape drops it. The normaliser Σ_{s≤t} q_t·k_s of linear attention.
struct MaskedNormaliserChunk;

impl DynRule for MaskedNormaliserChunk {
    fn name(&self) -> &'static str {
        "masked-normaliser-chunk"
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
        let a = node.children[0];
        let Some(rank) = eg[a].data.tensor().map(|t| t.rank()) else {
            return vec![];
        };
        if rank < 2 || axes.as_slice() != [rank - 1] {
            return vec![];
        }
        let Some(Quadratic { lead, t, q, k, g }) = quadratic(eg, a) else {
            return vec![];
        };
        normaliser(eg, class, q, k, g, lead, t, *keepdim)
    }
}

/// linear_attn(q, k, ones [lead..., T, 1], g), reshaped to the sum's shape when not keepdim.
#[allow(clippy::too_many_arguments)]
fn normaliser(
    eg: &EG,
    class: Id,
    q: Val,
    k: Val,
    g: Option<Val>,
    lead: Vec<DimExpr>,
    t: DimExpr,
    keepdim: bool,
) -> Vec<Outcome> {
    let Some(dtype) = eg[class].data.tensor().map(|t| t.dtype) else {
        return vec![];
    };
    let one = Val {
        ex: decay::Ex::Op(
            Op::Const {
                value: Literal::Float(1.0),
                dtype,
            },
            vec![],
        ),
        shape: vec![],
    };
    let v = one.broadcast(with(lead.clone(), &[t.clone(), DimExpr::constant(1)]));
    let finish = (!keepdim).then(|| Op::Reshape {
        shape: with(lead, &[t]),
    });
    Chunked {
        q,
        k,
        v,
        g,
        strict: false,
        finish,
    }
    .outcomes()
}

/// The log-decay of a scan whose decay `a` is 1 (none), e^x, or a reshape of e^x: `a` must
/// have the state's rank, be constant along the value axis when `has_v`, and either vary
/// along the key axis (per channel) or not (per step). Returns `Some(None)` for no decay.
fn scan_decay(eg: &EG, a: Id, state: &[DimExpr], has_v: bool) -> Option<Option<Decay>> {
    if decay::is_float_const(eg, a, 1.0) {
        return Some(None);
    }
    let av = Val::class(eg, a)?;
    let logs = eg[a].nodes.iter().find_map(|n| match n.op.op() {
        Op::Unary(crate::ir::UnaryOp::Exp) => Val::class(eg, n.children[0]),
        Op::Reshape { shape } => nodes_named(eg, n.children[0], "exp")
            .first()
            .and_then(|e| Val::class(eg, e.children[0]))
            .map(|x| x.reshape(shape.clone())),
        _ => None,
    })?;
    let r = state.len();
    let one = DimExpr::constant(1);
    if av.shape.len() != r || (has_v && av.shape[r - 1] != one) {
        return None;
    }
    // Drop the value axis; then the key axis is last.
    let la = if has_v { logs.drop_axis(r - 1) } else { logs };
    let kr = la.shape.len();
    if la.shape[kr - 1] == one {
        Some(Some(Decay {
            g: la.drop_axis(kr - 1),
            per_channel: false,
        }))
    } else {
        Some(Some(Decay {
            g: la,
            per_channel: true,
        }))
    }
}

/// The decay broadcast to the full leading dims.
fn full_g(d: Option<Decay>, lead: &[DimExpr], t: &DimExpr, kd: &DimExpr) -> Option<Val> {
    d.map(|d| {
        let mut s = with(lead.to_vec(), std::slice::from_ref(t));
        if d.per_channel {
            s.push(kd.clone());
        }
        d.g.broadcast(s)
    })
}

/// The state e-class read by an einsum operand: the scan itself (not strict) or the scan
/// shifted by one step, slice(pad(S, before = 1, value = 0), 0..T) (strict: S_{t−1}).
fn read_state(eg: &EG, id: Id, axis: usize) -> Vec<(Id, bool)> {
    let mut out = vec![(id, false)];
    for s in nodes_named(eg, id, "slice") {
        let Op::Slice {
            axis: sa,
            start,
            end,
            step,
        } = s.op.op()
        else {
            continue;
        };
        if *sa != axis || *step != 1 || start.as_const() != Some(0) {
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
                .and_then(|t| t.shape.get(axis).cloned());
            if *pa == axis
                && before.as_const() == Some(1)
                && after.as_const() == Some(0)
                && matches!(value, Literal::Float(z) if *z == 0.0)
                && len.as_ref() == Some(end)
            {
                out.push((p.children[0], true));
            }
        }
    }
    out
}

/// `recurrence-chunk`: einsum(r, S′) ⇒ linear_attn(r, k, v, g, strict) where
/// S = scan(a, k ⊗ v) along T (S_t = a_t ⊙ S_{t−1} + k_tᵀ v_t, [lead..., T, K, V]),
/// S′ = S (out_t = r_t S_t) or S shifted by one step (strict: out_t = r_t S_{t−1}), the
/// einsum sums the key letter: out_t = Σ_c r_tc S′_t[c, :]. The decay a is 1 or e^x with x
/// per step or per key channel (g = x); k ⊗ v is a broadcasting product of [.., T, K, 1] and
/// [.., T, 1, V].
struct RecurrenceChunk;

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
        if spec.inputs.len() != 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for si in 0..2 {
            let (ts, tr) = (&spec.inputs[si], &spec.inputs[1 - si]);
            let n = match ts.len().checked_sub(3) {
                Some(n) if distinct(ts) => n,
                _ => continue,
            };
            let (t, c, e) = (ts[n], ts[n + 1], ts[n + 2]);
            let batch = &ts[..n];
            let (Some(rp), Some(finish)) = (
                positions(tr, &with_chars(batch, &[t, c])),
                transpose_to(&with_chars(batch, &[t, e]), &spec.output),
            ) else {
                continue;
            };
            let Some(r) = Val::class(eg, node.children[1 - si]) else {
                continue;
            };
            for (state, strict) in read_state(eg, node.children[si], n) {
                for (k, v, g) in recurrence(eg, state, n) {
                    out.extend(
                        Chunked {
                            q: r.clone().transpose(rp.clone()),
                            k,
                            v,
                            g,
                            strict,
                            finish: finish.clone(),
                        }
                        .outcomes(),
                    );
                }
            }
        }
        out
    }
}

/// The (k, v, g) of every scan(a, k ⊗ v) e-node in `state` along `axis` (= rank − 3).
fn recurrence(eg: &EG, state: Id, axis: usize) -> Vec<(Val, Val, Option<Val>)> {
    let Some(ss) = eg[state].data.tensor().map(|t| t.shape.clone()) else {
        return vec![];
    };
    if ss.len() != axis + 3 {
        return vec![];
    }
    let (lead, t, kd, vd) = (&ss[..axis], &ss[axis], &ss[axis + 1], &ss[axis + 2]);
    let one = DimExpr::constant(1);
    let mut out = Vec::new();
    for s in nodes_named(eg, state, "scan") {
        if s.op.op()
            != (&Op::Scan {
                axis,
                reverse: false,
            })
            || s.children.len() != 2
        {
            continue;
        }
        let Some(d) = scan_decay(eg, s.children[0], &ss, true) else {
            continue;
        };
        let g = full_g(d, lead, t, kd);
        for m in nodes_named(eg, s.children[1], "mul") {
            for ki in 0..2 {
                let (Some(x), Some(y)) = (
                    Val::class(eg, m.children[ki]),
                    Val::class(eg, m.children[1 - ki]),
                ) else {
                    continue;
                };
                let (xr, yr) = (x.shape.len(), y.shape.len());
                if xr < 2 || yr < 2 || x.shape[xr - 1] != one || y.shape[yr - 2] != one {
                    continue;
                }
                let k = x
                    .drop_axis(xr - 1)
                    .broadcast(with(lead.to_vec(), &[t.clone(), kd.clone()]));
                let v = y
                    .drop_axis(yr - 2)
                    .broadcast(with(lead.to_vec(), &[t.clone(), vd.clone()]));
                out.push((k, v, g.clone()));
            }
        }
    }
    out
}

/// `recurrence-normaliser-chunk`: sum(q ⊙ z, axes = [K]) ⇒ linear_attn(q, k, 1, g) where
/// z = scan(a, k) along T (z_t = a_t ⊙ z_{t−1} + k_t, [lead..., T, K]) and q has z's shape:
/// Σ_c q_tc z_tc = Σ_{s≤t} Σ_c q_tc k_sc e^{G_tc − G_sc}. The normaliser of recurrent linear
/// attention.
struct RecurrenceNormaliserChunk;

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
                        scan_decay(eg, s.children[0], &zs, false),
                        Val::class(eg, s.children[1]),
                    ) else {
                        continue;
                    };
                    let g = full_g(d, lead, t, kd);
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
