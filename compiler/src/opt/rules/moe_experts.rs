//! The experts of a top-k mixture matched in lockstep into one function of shared inputs and
//! per-expert weights ([`Template`]), and that function emitted on the routed rows with each
//! per-expert contraction as a `grouped_matmul` over the stacked weights ([`Emit`]); used by
//! `moe-topk-grouped` (`moe_topk.rs`).

use super::moe_topk::SMALL_DEPTH;
use super::{Arg, Plan, shape};
use crate::ir::{DimExpr, Op};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use std::collections::BTreeMap;

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
pub(super) struct Template<'a> {
    eg: &'a EG,
    /// The token-indexed leading dims [.., T].
    prefix: Vec<DimExpr>,
    nodes: Vec<Node>,
    memo: BTreeMap<Vec<Id>, Option<usize>>,
}

impl<'a> Template<'a> {
    pub(super) fn new(eg: &'a EG, prefix: Vec<DimExpr>) -> Self {
        Template {
            eg,
            prefix,
            nodes: Vec::new(),
            memo: BTreeMap::new(),
        }
    }

    /// Whether node `i` is an operator (not an operand of the function).
    pub(super) fn is_op(&self, i: usize) -> bool {
        matches!(self.nodes[i], Node::Op(..))
    }

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
    pub(super) fn matched(&mut self, cs: &[Id], depth: usize) -> Option<usize> {
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
pub(super) struct Emit<'a> {
    t: &'a Template<'a>,
    k: DimExpr,
    n: DimExpr,
    group: Arg,
    memo: BTreeMap<usize, Arg>,
    stacks: BTreeMap<(usize, bool), Arg>,
    /// The grouped product of the einsums reading one rows node, by that node.
    merged: BTreeMap<usize, Arg>,
}

impl<'a> Emit<'a> {
    pub(super) fn new(t: &'a Template<'a>, k: DimExpr, n: DimExpr, group: Arg) -> Self {
        Emit {
            t,
            k,
            n,
            group,
            memo: BTreeMap::new(),
            stacks: BTreeMap::new(),
            merged: BTreeMap::new(),
        }
    }

    /// Whether a per-expert weight was emitted (some grouped product exists).
    pub(super) fn has_weights(&self) -> bool {
        !self.stacks.is_empty()
    }

    pub(super) fn emit(&mut self, i: usize, plan: &mut Plan) -> Option<Arg> {
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
