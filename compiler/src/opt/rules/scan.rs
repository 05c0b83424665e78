//! Scan schedules (R6 in shared/notes/architectures.md): a linear scan of T steps
//! (h_t = a_t ⊙ h_{t−1} + b_t, `Op::Scan`) equals its chunk-local + carry form, written with
//! existing IR operators (pad, reshape, scan, slice, mul, add), so that every backend runs
//! it with no new code. Its critical path is C + ⌈T / C⌉ dependent steps instead of T; the
//! cost model (`cost.rs`, the targets' `step_latency`) decides where that pays and which
//! chunk size C to keep: the rule proposes one form per chunk size in [`SCAN_CHUNKS`].

use super::{Arg, DynRule, Outcome, Plan};
use crate::ir::dim::Atom;
use crate::ir::{BinaryOp, DimExpr, Literal, Op};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;
use std::sync::Arc;

/// The chunk sizes proposed (extraction picks one, or keeps the sequential scan).
pub const SCAN_CHUNKS: [usize; 5] = [16, 32, 64, 128, 256];

pub fn rules() -> Vec<Arc<dyn DynRule>> {
    vec![
        Arc::new(ScanChunk),
        Arc::new(super::scan_matrix::ScanMatrixChunk),
    ]
}

/// `scan-chunk`: scan(a, b[, h0]) along T ⇒ its chunk-local + carry form with chunk C.
/// With N = ⌈T / C⌉, the operands are padded to N·C steps (after the last step of a forward
/// scan, before the first of a reverse one, so the padding comes after every real step in
/// scan order and changes none) and reshaped so that the time axis becomes [N, C]. Then, per
/// chunk c and step j (in scan order):
///   L_{c,j} = a_{c,j} ⊙ L_{c,j−1} + b_{c,j}, L_{c,−1} = 0   (chunk-local scan; chunks independent)
///   P_{c,j} = a_{c,j} ⊙ P_{c,j−1},          P_{c,−1} = 1   (cumulative decay: a scan of 0 from 1)
///   H_c = P_{c,C−1} ⊙ H_{c−1} + L_{c,C−1},   H_{−1} = h0 (or 0)  (carry scan over N chunk ends)
///   h_{c,j} = L_{c,j} + P_{c,j} ⊙ H_{c−1}                      (fix-up)
/// and the result is flattened back and sliced to its T steps. Exact in real arithmetic
/// (h_{c,j} = Σ_{i≤j} (Π_{i<k≤j} a_k) b_i + (Π_{k≤j} a_k) H_{c−1}); in floating point the
/// sums are grouped differently. Applies to scans whose length is symbolic and free of
/// divisions (the sequence): constant-length scans and the form's own scans are left alone,
/// so the rule does not recurse. The decay `a` may broadcast (cumsum's scalar 1, a per-channel
/// decay): a decay constant along time is not padded.
struct ScanChunk;

impl DynRule for ScanChunk {
    fn name(&self) -> &'static str {
        "scan-chunk"
    }
    fn root(&self) -> &'static str {
        "scan"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Op::Scan { axis, reverse } = node.op.op() else {
            return vec![];
        };
        let (Some(a), Some(b)) = (
            eg[node.children[0]].data.tensor(),
            eg[node.children[1]].data.tensor(),
        ) else {
            return vec![];
        };
        let Some(len) = b.shape.get(*axis) else {
            return vec![];
        };
        if !chunkable(len) {
            return vec![];
        }
        let s = ScanSite {
            a: node.children[0],
            a_shape: &a.shape,
            b: node.children[1],
            b_shape: &b.shape,
            h0: node.children.get(2).copied(),
            dtype: b.dtype,
            axis: *axis,
            reverse: *reverse,
        };
        SCAN_CHUNKS
            .iter()
            .filter_map(|&c| s.chunked(c))
            .map(Outcome::Build)
            .collect()
    }
}

/// Whether a scan of this length is chunked: symbolic (the sequence) and free of floor
/// divisions and remainders (the carry scan of a chunked form has length ⌈T / C⌉).
pub fn chunkable(len: &DimExpr) -> bool {
    !len.is_const()
        && len
            .terms()
            .all(|(m, _)| m.iter().all(|(a, _)| matches!(a, Atom::Sym(_))))
}

/// A matched scan: its operands' e-classes and shapes.
struct ScanSite<'a> {
    a: Id,
    a_shape: &'a [DimExpr],
    b: Id,
    b_shape: &'a [DimExpr],
    h0: Option<Id>,
    dtype: DType,
    axis: usize,
    reverse: bool,
}

pub(super) fn konst(c: i64) -> DimExpr {
    DimExpr::constant(c)
}

pub(super) fn float(plan: &mut Plan, v: f64, dtype: DType) -> Arg {
    plan.push(
        Op::Const {
            value: Literal::Float(v),
            dtype,
        },
        vec![],
    )
}

impl ScanSite<'_> {
    /// `shape` with its time axis replaced by `mid`.
    fn split(&self, shape: &[DimExpr], mid: &[DimExpr]) -> Vec<DimExpr> {
        let mut s = shape[..self.axis].to_vec();
        s.extend_from_slice(mid);
        s.extend_from_slice(&shape[self.axis + 1..]);
        s
    }

    /// The chunk-local + carry form with chunk `c`; `None` when the decay's shape does not
    /// fit (it must broadcast to b's, with T or 1 along the time axis).
    fn chunked(&self, c: usize) -> Option<Plan> {
        let (axis, rev) = (self.axis, self.reverse);
        let r = self.b_shape.len();
        let t = self.b_shape[axis].clone();
        let cd = konst(c as i64);
        let n = t.ceil_div(c as i64)?;
        let padded = n.mul(&cd);
        let extra = padded.sub(&t);
        let (before, after) = if rev {
            (extra.clone(), konst(0))
        } else {
            (konst(0), extra.clone())
        };
        let pad = |plan: &mut Plan, x: Arg, value: f64| {
            plan.push(
                Op::Pad {
                    axis,
                    before: before.clone(),
                    after: after.clone(),
                    value: Literal::Float(value),
                },
                vec![x],
            )
        };
        let reshape = |plan: &mut Plan, x: Arg, shape: Vec<DimExpr>| {
            plan.push(Op::Reshape { shape }, vec![x])
        };
        let scan = |plan: &mut Plan, axis: usize, args: Vec<Arg>| {
            plan.push(Op::Scan { axis, reverse: rev }, args)
        };
        let slice = |plan: &mut Plan, x: Arg, axis: usize, start: DimExpr, end: DimExpr| {
            plan.push(
                Op::Slice {
                    axis,
                    start,
                    end,
                    step: 1,
                },
                vec![x],
            )
        };
        let mut plan = Plan::new();

        // The decay at b's rank, then split into chunks (padded with 1s when it varies in
        // time; the padded steps' values do not matter).
        let ra = self.a_shape.len();
        if ra > r {
            return None;
        }
        let mut a_al = vec![konst(1); r - ra];
        a_al.extend_from_slice(self.a_shape);
        let mut a0 = Arg::Class(self.a);
        if ra < r {
            a0 = reshape(&mut plan, a0, a_al.clone());
        }
        let a_r = if a_al[axis] == konst(1) {
            reshape(&mut plan, a0, self.split(&a_al, &[konst(1), konst(1)]))
        } else if a_al[axis] == t {
            let ap = pad(&mut plan, a0, 1.0);
            reshape(&mut plan, ap, self.split(&a_al, &[n.clone(), cd.clone()]))
        } else {
            return None;
        };
        let bp = pad(&mut plan, Arg::Class(self.b), 0.0);
        let chunks = self.split(self.b_shape, &[n.clone(), cd.clone()]);
        let b_r = reshape(&mut plan, bp, chunks.clone());

        // L: the chunk-local scans from a zero state; P: the cumulative decays (0 scanned
        // from 1).
        let local = scan(&mut plan, axis + 1, vec![a_r, b_r]);
        let zero = float(&mut plan, 0.0, self.dtype);
        let zeros = plan.push(
            Op::Broadcast {
                shape: chunks.clone(),
            },
            vec![zero],
        );
        let one = float(&mut plan, 1.0, self.dtype);
        let per_chunk = self.split(self.b_shape, std::slice::from_ref(&n));
        let ones = plan.push(
            Op::Broadcast {
                shape: per_chunk.clone(),
            },
            vec![one],
        );
        let prod = scan(&mut plan, axis + 1, vec![a_r, zeros, ones]);

        // Each chunk's last step in scan order, [pre..., N, post...].
        let last = if rev { 0 } else { c as i64 - 1 };
        let end_of = |plan: &mut Plan, x: Arg| {
            let s = slice(plan, x, axis + 1, konst(last), konst(last + 1));
            reshape(plan, s, per_chunk.clone())
        };
        let l_end = end_of(&mut plan, local);
        let p_end = end_of(&mut plan, prod);

        // H: the state after each chunk; the state before chunk c is H_{c−1} (h0 or 0 first).
        let mut carry_args = vec![p_end, l_end];
        carry_args.extend(self.h0.map(Arg::Class));
        let carry = scan(&mut plan, axis, carry_args);
        let shifted = match self.h0 {
            None => plan.push(
                Op::Pad {
                    axis,
                    before: konst(if rev { 0 } else { 1 }),
                    after: konst(if rev { 1 } else { 0 }),
                    value: Literal::Float(0.0),
                },
                vec![carry],
            ),
            Some(h0) => {
                let h = reshape(
                    &mut plan,
                    Arg::Class(h0),
                    self.split(self.b_shape, &[konst(1)]),
                );
                let parts = if rev { vec![carry, h] } else { vec![h, carry] };
                plan.push(Op::Concat { axis }, parts)
            }
        };
        let start = konst(if rev { 1 } else { 0 });
        let prev = slice(&mut plan, shifted, axis, start.clone(), start.add(&n));
        let prev = reshape(
            &mut plan,
            prev,
            self.split(self.b_shape, &[n.clone(), konst(1)]),
        );

        // h = L + P ⊙ H_{c−1}, flattened and cut to the T real steps.
        let fix = plan.push(Op::Binary(BinaryOp::Mul), vec![prod, prev]);
        let h = plan.push(Op::Binary(BinaryOp::Add), vec![local, fix]);
        let flat = reshape(&mut plan, h, self.split(self.b_shape, &[padded]));
        slice(&mut plan, flat, axis, before.clone(), before.add(&t));
        Some(plan)
    }
}
