//! Chunked linear-attention rules (R5 in shared/notes/architectures.md): the decay-masked
//! quadratic form and the linear recurrence of causal linear attention both equal
//! `linear_attn` (intra-chunk quadratic + inter-chunk state passing, `ir/op.rs`). Each rule
//! proposes one `linear_attn` per chunk size in [`CHUNKS`]; extraction keeps the cheapest
//! (the cost model chooses the chunk size, or keeps the original form where it is cheaper).
//! The facts the rules rely on (causal masks, decays, outer products) are proved by the
//! recognisers of `decay.rs`; when unsure, a rule proposes nothing.

use super::decay::{self, Val};
use super::{Arg, DynRule, Outcome, Plan};
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
        Arc::new(super::recurrence::RecurrenceChunk),
        Arc::new(super::recurrence::RecurrenceNormaliserChunk),
    ]
}

/// The operands of a `linear_attn` and how its result [lead..., T, V] becomes the value.
pub(super) struct Chunked {
    pub q: Val,
    pub k: Val,
    pub v: Val,
    pub g: Option<Val>,
    pub strict: bool,
    /// Applied to the result: a transpose or a reshape.
    pub finish: Option<Op>,
}

impl Chunked {
    /// One outcome per chunk size.
    pub fn outcomes(&self) -> Vec<Outcome> {
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

pub(super) fn with(mut v: Vec<DimExpr>, tail: &[DimExpr]) -> Vec<DimExpr> {
    v.extend_from_slice(tail);
    v
}

pub(super) fn distinct(term: &[char]) -> bool {
    term.iter()
        .all(|l| term.iter().filter(|m| *m == l).count() == 1)
}

/// The positions in `term` of the letters of `want`, if `term` has exactly those letters.
pub(super) fn positions(term: &[char], want: &[char]) -> Option<Vec<usize>> {
    if term.len() != want.len() || !distinct(term) {
        return None;
    }
    want.iter()
        .map(|l| term.iter().position(|m| m == l))
        .collect()
}

/// The transpose taking letters `from` to `to` (the same letters), `None` when it is the
/// identity.
pub(super) fn transpose_to(from: &[char], to: &[char]) -> Option<Option<Op>> {
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

pub(super) fn with_chars(a: &[char], b: &[char]) -> Vec<char> {
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
// Every argument is one recognised piece of the normaliser's form; a struct would only
// rename them.
#[allow(clippy::too_many_arguments)]
pub(super) fn normaliser(
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
