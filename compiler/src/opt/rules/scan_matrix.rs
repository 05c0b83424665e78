//! Scan schedules for matrix recurrences (R6 for `scan_matrix`: LRU's complex diagonal as
//! 2 × 2 rotations): h_t = A_t h_{t−1} + b_t equals its chunk-local + carry form, as
//! `scan-chunk` does for elementwise scans, with the cumulative decay a product of matrices.

use super::scan::{SCAN_CHUNKS, chunkable, float, konst};
use super::{Arg, DynRule, Outcome, Plan};
use crate::ir::{BinaryOp, DimExpr, Literal, Op};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;

/// The largest state a chunked matrix scan is built for (P takes one scan per column).
const MAX_STATE: i64 = 4;

/// `scan-matrix-chunk`: scan_matrix(A, b[, h0]) along T (A: [.., T, n, n], b: [.., T, n])
/// ⇒ its chunk-local + carry form with chunk C. With N = ⌈T / C⌉, A and b are padded to
/// N·C steps after the last (the padded steps come after every real one) and their time
/// axis split into [N, C]; per chunk c and step j:
///   L_{c,j} = A_{c,j} L_{c,j−1} + b_{c,j}, L_{c,−1} = 0   (chunk-local scan)
///   P_{c,j} = A_{c,j} P_{c,j−1},           P_{c,−1} = I   (column m: a scan of 0 from e_m)
///   H_c = P_{c,C−1} H_{c−1} + L_{c,C−1},   H_{−1} = h0 (or 0)  (carry scan over chunk ends)
///   h_{c,j} = L_{c,j} + P_{c,j} H_{c−1}                    (fix-up, an einsum over m)
/// flattened back and sliced to its T steps. Exact in real arithmetic (h_{c,j} = Σ_{i≤j}
/// A_j ⋯ A_{i+1} b_i + A_j ⋯ A_{c,0} H_{c−1}); in floating point the products are grouped
/// differently. Applies to scans of a symbolic length free of divisions (the form's own scans
/// are left alone) and states of a constant size n ≤ `MAX_STATE`, with A of b's leading
/// dims.
pub struct ScanMatrixChunk;

impl DynRule for ScanMatrixChunk {
    fn name(&self) -> &'static str {
        "scan-matrix-chunk"
    }
    fn root(&self) -> &'static str {
        "scan_matrix"
    }
    fn rewrite(&self, eg: &EG, _class: Id, node: &TNode) -> Vec<Outcome> {
        let Op::ScanMatrix { axis } = node.op.op() else {
            return vec![];
        };
        let (Some(a), Some(b)) = (
            eg[node.children[0]].data.tensor(),
            eg[node.children[1]].data.tensor(),
        ) else {
            return vec![];
        };
        let r = b.shape.len();
        if r < 2 || *axis != r - 2 || !chunkable(&b.shape[*axis]) || !b.dtype.is_float() {
            return vec![];
        }
        let Some(n) = b.shape[r - 1]
            .as_const()
            .filter(|n| (1..=MAX_STATE).contains(n))
        else {
            return vec![];
        };
        let mut want_a = b.shape.clone();
        want_a.push(konst(n));
        if a.shape != want_a || a.dtype != b.dtype {
            return vec![];
        }
        let site = Site {
            a: node.children[0],
            b: node.children[1],
            b_shape: &b.shape,
            h0: node.children.get(2).copied(),
            n,
            dtype: b.dtype,
        };
        SCAN_CHUNKS
            .iter()
            .filter_map(|&c| site.chunked(c))
            .map(Outcome::Build)
            .collect()
    }
}

struct Site<'a> {
    a: Id,
    b: Id,
    b_shape: &'a [DimExpr],
    h0: Option<Id>,
    n: i64,
    dtype: DType,
}

impl Site<'_> {
    /// b's shape with its time axis replaced by `mid`.
    fn split(&self, mid: &[DimExpr]) -> Vec<DimExpr> {
        let axis = self.b_shape.len() - 2;
        let mut s = self.b_shape[..axis].to_vec();
        s.extend_from_slice(mid);
        s.push(self.b_shape[axis + 1].clone());
        s
    }

    fn chunked(&self, c: usize) -> Option<Plan> {
        let r = self.b_shape.len();
        let axis = r - 2;
        let t = self.b_shape[axis].clone();
        let cd = konst(c as i64);
        let nc = t.ceil_div(c as i64)?;
        let padded = nc.mul(&cd);
        let extra = padded.sub(&t);
        let nn = konst(self.n);
        let mut plan = Plan::new();
        let p = &mut plan;
        let pad = |p: &mut Plan, x: Arg| {
            p.push(
                Op::Pad {
                    axis,
                    before: konst(0),
                    after: extra.clone(),
                    value: Literal::Float(0.0),
                },
                vec![x],
            )
        };
        let reshape =
            |p: &mut Plan, x: Arg, shape: Vec<DimExpr>| p.push(Op::Reshape { shape }, vec![x]);
        let scan = |p: &mut Plan, args: Vec<Arg>, rank: usize| {
            p.push(Op::ScanMatrix { axis: rank - 2 }, args)
        };
        let chunks = self.split(&[nc.clone(), cd.clone()]);
        let mut a_chunks = chunks.clone();
        a_chunks.push(nn.clone());
        let per_chunk = self.split(std::slice::from_ref(&nc));

        let ap = pad(p, Arg::Class(self.a));
        let a_r = reshape(p, ap, a_chunks);
        let bp = pad(p, Arg::Class(self.b));
        let b_r = reshape(p, bp, chunks.clone());

        // L, and P column by column: the scan of 0 from e_m.
        let local = scan(p, vec![a_r, b_r], r + 1);
        let zero = float(p, 0.0, self.dtype);
        let zeros = p.push(
            Op::Broadcast {
                shape: chunks.clone(),
            },
            vec![zero],
        );
        let mut col_shape = chunks.clone();
        col_shape.push(konst(1));
        let mut cols = Vec::new();
        for m in 0..self.n {
            let iota = p.push(
                Op::Iota {
                    shape: vec![nn.clone()],
                    axis: 0,
                },
                vec![],
            );
            let mth = p.push(
                Op::Const {
                    value: Literal::Int(m),
                    dtype: DType::I32,
                },
                vec![],
            );
            let is_m = p.push(Op::Binary(BinaryOp::Eq), vec![iota, mth]);
            let e_m = p.push(Op::Cast { to: self.dtype }, vec![is_m]);
            let h0 = p.push(
                Op::Broadcast {
                    shape: per_chunk.clone(),
                },
                vec![e_m],
            );
            let col = scan(p, vec![a_r, zeros, h0], r + 1);
            cols.push(reshape(p, col, col_shape.clone()));
        }
        let prod = p.push(Op::Concat { axis: r + 1 }, cols);

        // Each chunk's last step, [.., N, n] and [.., N, n, n].
        let end_of = |p: &mut Plan, x: Arg, extra_axis: bool| {
            let s = p.push(
                Op::Slice {
                    axis: axis + 1,
                    start: konst(c as i64 - 1),
                    end: cd.clone(),
                    step: 1,
                },
                vec![x],
            );
            let mut shape = per_chunk.clone();
            if extra_axis {
                shape.push(nn.clone());
            }
            reshape(p, s, shape)
        };
        let l_end = end_of(p, local, false);
        let p_end = end_of(p, prod, true);

        // H, then the state before each chunk (h0 or 0 first).
        let mut carry_args = vec![p_end, l_end];
        carry_args.extend(self.h0.map(Arg::Class));
        let carry = scan(p, carry_args, r);
        let shifted = match self.h0 {
            None => p.push(
                Op::Pad {
                    axis,
                    before: konst(1),
                    after: konst(0),
                    value: Literal::Float(0.0),
                },
                vec![carry],
            ),
            Some(h0) => {
                let h = reshape(p, Arg::Class(h0), self.split(&[konst(1)]));
                p.push(Op::Concat { axis }, vec![h, carry])
            }
        };
        let prev = p.push(
            Op::Slice {
                axis,
                start: konst(0),
                end: nc.clone(),
                step: 1,
            },
            vec![shifted],
        );

        // h = L + P · H_{c−1}: the lead letters, then w (chunk), x (step), y (row), z (column).
        if axis > 22 {
            return None;
        }
        let lead: String = ('a'..='v').take(axis).collect();
        let spec = Spec::parse(&format!("{lead}wxyz,{lead}wz->{lead}wxy"))?;
        let fix = p.push(
            Op::Einsum {
                spec: spec.canonical().text(),
            },
            vec![prod, prev],
        );
        let h = p.push(Op::Binary(BinaryOp::Add), vec![local, fix]);
        let flat = reshape(p, h, self.split(&[padded]));
        p.push(
            Op::Slice {
                axis,
                start: konst(0),
                end: t,
                step: 1,
            },
            vec![flat],
        );
        Some(plan)
    }
}
