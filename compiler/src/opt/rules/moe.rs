//! Mixture-of-experts dispatch (R10 in shared/notes/architectures.md): a dense expert term,
//! every token through expert e and weighted by a gate that is zero outside the ≤ CAP tokens
//! per sequence a capacity-bounded router keeps for e, becomes gather → the expert on CAP
//! rows → scatter-add. The cost of the expert then grows with CAP, not with T.
//!
//! The fact the rule needs, "the gate column is zero outside at most CAP tokens per
//! sequence, and these are the first CAP of `keep` in position order", is proved by a
//! recogniser over e-nodes ([`gate_column`]): keep = c ∧ (int(cumsum_T(c)) ≤ CAP) for a bool
//! c. On the positions where c holds, cumsum_T(c) counts them 1, 2, 3, … (exact integers in
//! f32 below 2²⁴), so at most CAP positions of each column pass the bound. The expert is
//! recognised as a row-wise function ([`Rows`]): einsums that keep the token axes in front
//! and contract the rest with token-free operands, elementwise operators, casts and
//! reductions over trailing axes, so row t of the result depends on row t of its inputs only.

use super::{Arg, DynRule, Outcome, Plan, shape};
use crate::ir::{BinaryOp, DimExpr, Literal, Op};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![Arc::new(MoeDispatch)]
}

/// The deepest gather point proposed, in operators below the expert's output.
const MAX_DEPTH: usize = 6;

/// Depth of the recognisers of constants through broadcasts.
const CONST_DEPTH: usize = 3;

/// `moe-dispatch`: with G = slice(select(keep, m, 0), e) a gate column ([..., T, 1]) of a
/// capacity-bounded `keep` ([..., T, E], at most CAP true per column, see [`gate_column`]) and
/// F = f(x) row-wise along T,
///   F ⊙ G ⇒ slice(scatter_add(0, i, f(gather(pad(x), i)) ⊙ gather(pad(G), i)), T, 0, T)
/// where i = slice(topk(pad(keep), T, k = CAP, indices), e) holds for every sequence the
/// CAP positions of its first CAP kept tokens (slot j = the token whose priority is j + 1),
/// then positions with keep false (gate 0), then padding. `pad` appends CAP zero rows along T
/// so that topk is defined for T < CAP; what lands in padding rows is sliced away. A
/// non-kept token in a slot adds f(x_t)·0, as the dense form does. One proposal per gather
/// depth (x = the expert's input, or an intermediate): extraction keeps the cheapest.
struct MoeDispatch;

impl DynRule for MoeDispatch {
    fn name(&self) -> &'static str {
        "moe-dispatch"
    }
    fn root(&self) -> &'static str {
        "mul"
    }
    fn rewrite(&self, eg: &EG, class: Id, node: &TNode) -> Vec<Outcome> {
        if node.children.len() != 2 {
            return vec![];
        }
        let mut out = Vec::new();
        for gi in 0..2 {
            let (g, f) = (eg.find(node.children[gi]), eg.find(node.children[1 - gi]));
            let Some((f_shape, o_shape)) = shape(eg, f).zip(shape(eg, class)) else {
                continue;
            };
            if f_shape != o_shape || !eg[f].data.tensor().is_some_and(|t| t.dtype.is_float()) {
                continue;
            }
            for gate in gate_column(eg, g) {
                out.extend(dispatch(eg, &gate, g, f, gi));
            }
        }
        out
    }
}

/// A gate column G = slice(select(keep, m, 0), axis ta + 1, e, e + 1) of a `keep` with at most
/// `cap` true entries along the token axis `ta` per column.
#[derive(Clone, Debug)]
struct Gate {
    keep: Id,
    ta: usize,
    e: DimExpr,
    cap: i64,
}

/// The ways `g` is a capacity-bounded gate column: `g` is a unit slice along the last axis of
/// select(keep, m, 0.0) with keep of the select's shape, keep = c ∧ (cast(P) ≤ CAP) (or
/// `< CAP + 1`, operands of ∧ in either order) and P = scan(1, cast(c, float)) forward along
/// axis rank − 2 with no initial state: the inclusive count of c.
fn gate_column(eg: &EG, g: Id) -> Vec<Gate> {
    let mut out = Vec::new();
    for n in &eg[g].nodes {
        let Op::Slice {
            axis,
            start,
            end,
            step: 1,
        } = n.op.op()
        else {
            continue;
        };
        let s = eg.find(n.children[0]);
        let Some(s_shape) = shape(eg, s) else {
            continue;
        };
        let rank = s_shape.len();
        if rank < 2 || *axis != rank - 1 || *end != start.add(&DimExpr::constant(1)) {
            continue;
        }
        let ta = rank - 2;
        for sel in &eg[s].nodes {
            if !matches!(sel.op.op(), Op::Select) || sel.children.len() != 3 {
                continue;
            }
            let keep = eg.find(sel.children[0]);
            if shape(eg, keep) != Some(s_shape) || !float_zero(eg, sel.children[2], CONST_DEPTH) {
                continue;
            }
            if let Some(cap) = capacity(eg, keep, ta) {
                out.push(Gate {
                    keep,
                    ta,
                    e: start.clone(),
                    cap,
                });
            }
        }
    }
    out
}

/// CAP when `keep` = c ∧ (int(cumsum_ta(c)) ≤ CAP), CAP ≥ 1 (see [`gate_column`]).
fn capacity(eg: &EG, keep: Id, ta: usize) -> Option<i64> {
    for n in &eg[keep].nodes {
        if !matches!(n.op.op(), Op::Binary(BinaryOp::And)) {
            continue;
        }
        for ci in 0..2 {
            let c = eg.find(n.children[ci]);
            let b = eg.find(n.children[1 - ci]);
            let is_bool = eg[c].data.tensor().is_some_and(|t| t.dtype == DType::Bool);
            if !is_bool || shape(eg, c) != shape(eg, keep) {
                continue;
            }
            if let Some(cap) = count_bound(eg, b, c, ta).filter(|k| *k >= 1) {
                return Some(cap);
            }
        }
    }
    None
}

/// K when `b` is cast(P, int) ≤ K or cast(P, int) < K + 1 with P the inclusive count of `c`
/// along `ta`.
fn count_bound(eg: &EG, b: Id, c: Id, ta: usize) -> Option<i64> {
    use BinaryOp::{Le, Lt};
    eg[b].nodes.iter().find_map(|n| {
        let slack = match n.op.op() {
            Op::Binary(Le) => 0,
            Op::Binary(Lt) => 1,
            _ => return None,
        };
        let k = int_const(eg, n.children[1], CONST_DEPTH)?;
        let p = eg.find(n.children[0]);
        let counts = eg[p].nodes.iter().any(|cast| {
            matches!(cast.op.op(), Op::Cast { to } if to.is_int())
                && is_count(eg, cast.children[0], c, ta)
        });
        counts.then_some(k - slack)
    })
}

/// Whether `p` = scan(1, cast(c, float)) along `ta`, forward, with no initial state.
fn is_count(eg: &EG, p: Id, c: Id, ta: usize) -> bool {
    eg[eg.find(p)].nodes.iter().any(|n| {
        let Op::Scan {
            axis,
            reverse: false,
        } = n.op.op()
        else {
            return false;
        };
        *axis == ta
            && n.children.len() == 2
            && float_const(eg, n.children[0], CONST_DEPTH) == Some(1.0)
            && eg[eg.find(n.children[1])].nodes.iter().any(|v| {
                matches!(v.op.op(), Op::Cast { to } if to.is_float())
                    && eg.find(v.children[0]) == eg.find(c)
            })
    })
}

/// A scalar float constant held by `class`, possibly broadcast.
fn float_const(eg: &EG, class: Id, depth: usize) -> Option<f64> {
    eg[eg.find(class)]
        .nodes
        .iter()
        .find_map(|n| match n.op.op() {
            Op::Const {
                value: Literal::Float(x),
                ..
            } => Some(*x),
            Op::Broadcast { .. } if depth > 0 => float_const(eg, n.children[0], depth - 1),
            _ => None,
        })
}

fn float_zero(eg: &EG, class: Id, depth: usize) -> bool {
    float_const(eg, class, depth) == Some(0.0)
}

/// A scalar integer constant held by `class`, possibly broadcast.
fn int_const(eg: &EG, class: Id, depth: usize) -> Option<i64> {
    eg[eg.find(class)]
        .nodes
        .iter()
        .find_map(|n| match n.op.op() {
            Op::Const {
                value: Literal::Int(x),
                ..
            } => Some(*x),
            Op::Broadcast { .. } if depth > 0 => int_const(eg, n.children[0], depth - 1),
            _ => None,
        })
}

/// The zero of a dtype, for padding.
fn zero(d: DType) -> Literal {
    if d.is_float() {
        Literal::Float(0.0)
    } else if d == DType::Bool {
        Literal::Bool(false)
    } else {
        Literal::Int(0)
    }
}

/// One proposal per gather depth for F ⊙ G (G at operand `gi`).
fn dispatch(eg: &EG, gate: &Gate, g: Id, f: Id, gi: usize) -> Vec<Outcome> {
    let (Some(f_shape), Some(g_shape)) = (shape(eg, f), shape(eg, g)) else {
        return vec![];
    };
    let ta = gate.ta;
    // F is [..., T, D] with G's leading dims: G broadcasts along F's last axis only.
    if f_shape.len() != ta + 2 || f_shape[..=ta] != g_shape[..=ta] {
        return vec![];
    }
    let f_dtype = eg[f].data.tensor().map(|t| t.dtype).unwrap_or(DType::F32);
    let prefix = g_shape[..=ta].to_vec();
    let t = prefix[ta].clone();
    let cap = DimExpr::constant(gate.cap);
    let padded_t = t.add(&cap);
    let mut slots = prefix.clone();
    slots[ta] = cap.clone();

    let mut out = Vec::new();
    let mut previous: Option<Plan> = None;
    for depth in 1..=MAX_DEPTH {
        let mut plan = Plan::new();
        // i: [..., CAP, 1], the token positions of the slots of column e.
        let keep_i = plan.push(Op::Cast { to: DType::I32 }, vec![Arg::Class(gate.keep)]);
        let keep_p = plan.push(pad_op(ta, &cap, DType::I32), vec![keep_i]);
        let top = plan.push(
            Op::TopK {
                axis: ta,
                k: cap.clone(),
                largest: true,
                indices: true,
            },
            vec![keep_p],
        );
        let idx = plan.push(
            Op::Slice {
                axis: ta + 1,
                start: gate.e.clone(),
                end: gate.e.add(&DimExpr::constant(1)),
                step: 1,
            },
            vec![top],
        );
        let mut r = Rows {
            eg,
            ta,
            prefix: prefix.clone(),
            slots: slots.clone(),
            cap: cap.clone(),
            idx,
            memo: BTreeMap::new(),
            einsums: 0,
        };
        let Some(fg) = r.build(f, depth, &mut plan) else {
            break;
        };
        if r.einsums == 0 {
            continue;
        }
        let g_dtype = eg[g].data.tensor().map(|t| t.dtype).unwrap_or(DType::F32);
        let g_pad = plan.push(pad_op(ta, &cap, g_dtype), vec![Arg::Class(g)]);
        let gg = plan.push(Op::Gather { axis: ta }, vec![g_pad, idx]);
        let operands = if gi == 0 { vec![gg, fg] } else { vec![fg, gg] };
        let src = plan.push(Op::Binary(BinaryOp::Mul), operands);
        let mut src_shape = f_shape.to_vec();
        src_shape[ta] = cap.clone();
        let idx_src = plan.push(Op::Broadcast { shape: src_shape }, vec![idx]);
        let z = plan.push(
            Op::Const {
                value: zero(f_dtype),
                dtype: f_dtype,
            },
            vec![],
        );
        let mut base_shape = f_shape.to_vec();
        base_shape[ta] = padded_t.clone();
        let base = plan.push(Op::Broadcast { shape: base_shape }, vec![z]);
        let sc = plan.push(Op::ScatterAdd { axis: ta }, vec![base, idx_src, src]);
        plan.push(
            Op::Slice {
                axis: ta,
                start: DimExpr::constant(0),
                end: t.clone(),
                step: 1,
            },
            vec![sc],
        );
        if previous.as_ref().is_some_and(|p| p.nodes == plan.nodes) {
            break;
        }
        previous = Some(plan.clone());
        out.push(Outcome::Build(plan));
    }
    out
}

fn pad_op(ta: usize, cap: &DimExpr, dtype: DType) -> Op {
    Op::Pad {
        axis: ta,
        before: DimExpr::constant(0),
        after: cap.clone(),
        value: zero(dtype),
    }
}

/// Rebuilds a row-wise function of its leaves on gathered rows: an e-class at the gather
/// depth (or with no row-wise e-node) is a leaf, gathered as gather(pad(leaf), i) along `ta`.
struct Rows<'a> {
    eg: &'a EG,
    ta: usize,
    /// The token-indexed leading dims [..., T].
    prefix: Vec<DimExpr>,
    /// The same with T replaced by CAP.
    slots: Vec<DimExpr>,
    cap: DimExpr,
    /// The slots' token positions, [..., CAP, 1].
    idx: Arg,
    memo: BTreeMap<Id, Arg>,
    einsums: usize,
}

/// How an operand of a row-wise e-node is read.
enum Part {
    /// Row t of the result reads row t of it.
    Row(Id),
    /// It has no token axes: the same for every row.
    Free(Id),
}

impl Rows<'_> {
    fn has_prefix(&self, c: Id) -> bool {
        shape(self.eg, c).is_some_and(|s| s.len() > self.ta && s[..=self.ta] == self.prefix[..])
    }

    /// `c` row-wise on the slots, expanding e-nodes to `depth`.
    fn build(&mut self, c: Id, depth: usize, plan: &mut Plan) -> Option<Arg> {
        let c = self.eg.find(c);
        if let Some(a) = self.memo.get(&c) {
            return Some(*a);
        }
        if !self.has_prefix(c) {
            return None;
        }
        let eg = self.eg;
        if depth > 0 {
            for n in &eg[c].nodes {
                let Some(parts) = self.parts(c, n) else {
                    continue;
                };
                let (mark, memo, einsums) = (plan.nodes.len(), self.memo.clone(), self.einsums);
                let mut args = Vec::with_capacity(parts.len());
                for p in &parts {
                    let a = match p {
                        Part::Row(x) => self.build(*x, depth - 1, plan),
                        Part::Free(x) => Some(Arg::Class(*x)),
                    };
                    match a {
                        Some(a) => args.push(a),
                        None => break,
                    }
                }
                if args.len() == parts.len() {
                    if matches!(n.op.op(), Op::Einsum { .. }) {
                        self.einsums += 1;
                    }
                    let a = plan.push(n.op.op().clone(), args);
                    self.memo.insert(c, a);
                    return Some(a);
                }
                plan.nodes.truncate(mark);
                self.memo = memo;
                self.einsums = einsums;
            }
        }
        let a = self.gather(c, plan)?;
        self.memo.insert(c, a);
        Some(a)
    }

    /// gather(pad(c), i) along the token axis, i reshaped and broadcast to c's rank.
    fn gather(&self, c: Id, plan: &mut Plan) -> Option<Arg> {
        let ty = self.eg[c].data.tensor()?;
        let mut idx_shape = self.slots.clone();
        idx_shape.resize(ty.shape.len(), DimExpr::constant(1));
        let mut full = self.slots.clone();
        full.extend(ty.shape[self.ta + 1..].iter().cloned());
        let mut idx = self.idx;
        if idx_shape.len() != self.ta + 2 {
            idx = plan.push(
                Op::Reshape {
                    shape: idx_shape.clone(),
                },
                vec![idx],
            );
        }
        if full != idx_shape {
            idx = plan.push(Op::Broadcast { shape: full }, vec![idx]);
        }
        let padded = plan.push(pad_op(self.ta, &self.cap, ty.dtype), vec![Arg::Class(c)]);
        Some(plan.push(Op::Gather { axis: self.ta }, vec![padded, idx]))
    }

    /// The operands of `n` (an e-node of `c`) as row-wise or token-free, when `n` computes
    /// row t of `c` from row t of its row-wise operands only.
    fn parts(&self, c: Id, n: &TNode) -> Option<Vec<Part>> {
        let eg = self.eg;
        let ta = self.ta;
        let rank = shape(eg, c)?.len();
        let row = |x: Id| -> Option<Part> {
            let x = eg.find(x);
            (self.has_prefix(x) && shape(eg, x)?.len() == rank).then_some(Part::Row(x))
        };
        let parts: Vec<Part> = match n.op.op() {
            Op::Unary(_) | Op::Cast { .. } => vec![row(n.children[0])?],
            Op::Reduce { axes, .. } if axes.iter().all(|a| *a > ta) => {
                let x = eg.find(n.children[0]);
                self.has_prefix(x).then_some(vec![Part::Row(x)])?
            }
            // Integer division by a row-wise value could fail on a padding row (all zeros)
            // where the dense form divides real rows only.
            Op::Binary(BinaryOp::Div | BinaryOp::Rem)
                if eg[c].data.tensor().is_some_and(|t| t.dtype.is_int())
                    && row(n.children[1]).is_some() =>
            {
                return None;
            }
            Op::Binary(_) | Op::Select => {
                let mut v = Vec::new();
                for &x in &n.children {
                    let x = eg.find(x);
                    if let Some(p) = row(x) {
                        v.push(p);
                        continue;
                    }
                    // Right-aligned, x must be 1 or absent along the token-indexed axes.
                    let s = shape(eg, x)?;
                    let lead = rank.checked_sub(s.len())?;
                    let free = (0..=ta)
                        .filter(|i| *i >= lead)
                        .all(|i| s[i - lead].as_const() == Some(1));
                    if !free {
                        return None;
                    }
                    v.push(Part::Free(x));
                }
                v
            }
            Op::Einsum { spec } => {
                let spec = Spec::parse(spec)?;
                let lead = spec.output.get(..=ta)?.to_vec();
                let mut v = Vec::new();
                for (term, &x) in spec.inputs.iter().zip(&n.children) {
                    let x = eg.find(x);
                    if term.iter().all(|l| !lead.contains(l)) {
                        v.push(Part::Free(x));
                    } else if term.len() > ta
                        && term[..=ta] == lead[..]
                        && term[ta + 1..].iter().all(|l| !lead.contains(l))
                        && self.has_prefix(x)
                    {
                        v.push(Part::Row(x));
                    } else {
                        return None;
                    }
                }
                v
            }
            _ => return None,
        };
        parts
            .iter()
            .any(|p| matches!(p, Part::Row(_)))
            .then_some(parts)
    }
}
