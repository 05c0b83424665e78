//! Lowering of the optimizer's `linear_attn` to its recurrent form, O(T·K·V) work: per batch
//! index a [K, V] state S runs over the steps (values as `ir/op.rs` states them; the node's
//! chunk size is a schedule and changes no value):
//!   S_t = e^{g_t} ⊙ S_{t−1} + k_tᵀ v_t,   out_t = q_t · S_t   (strict: q_t · S_{t−1})
//! with e^{g_t} one factor per step or one per key channel (row of S). An f32 node outside a
//! `scan_fn` body takes the blocked form of `recur.rs` (blocks of columns, output sums in
//! vector registers, fused multiply-adds). Every other node (f64, or inside a body) takes the
//! scalar form here: S lives in a scratch arena buffer of shape [batch…, K, V] that only this
//! kernel reads and writes; the root loop is parallel over the (flattened) batch indices, and
//! the innermost loop runs over V, contiguous in S, v and out, so LLVM vectorises it.
//!
//! Accumulation type (scalar form): the dtype. S, the decay factors and each output row's
//! running sum are kept and rounded in the dtype at every operation, where the interpreter
//! sums in f64 and rounds once. The difference is rounding along T (≤ 3e-7, max-normalised,
//! in the f32 tests).

use super::access::{flat, int, mul, unflatten};
use super::lower::{Lowerer, serial, wbin};
use super::{Acc, BufId, Expr, KernelError, Loop, Stmt, Ty, Var};
use crate::ir::{BinaryOp, NodeId, UnaryOp};

fn var(v: Var) -> Expr {
    Expr::Var(v)
}

fn assign(acc: Acc, value: Expr) -> Stmt {
    Stmt::Assign { acc, value }
}

impl Lowerer<'_> {
    /// The kernels of `linear_attn`: the blocked form of `recur.rs` where it applies, else
    /// the scalar recurrence, per batch index (the leading axes):
    ///   S = 0; for t: [per step: d = e^{g_t}]; out_t = 0;
    ///     for c: [per channel: d = e^{g_tc}];
    ///       for e: S[c, e] = d·S[c, e] + k_tc·v_te; out_te += q_tc·S[c, e]
    /// (strict: the output reads S[c, e] before the update).
    pub(super) fn linear_attn(
        &mut self,
        id: NodeId,
        out: BufId,
        strict: bool,
    ) -> Result<Vec<Loop>, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        let shape = self.shapes[id.index()].clone();
        let r = shape.len();
        if !ty.is_float() || r < 2 || ins.len() < 3 {
            return Err(self.invalid(id, "expects float q, k: [..., T, K] and v: [..., T, V]"));
        }
        let qshape = self.shapes[ins[0].index()].clone();
        if qshape.len() != r {
            return Err(self.invalid(id, "expects q of the result's rank"));
        }
        if ins[1..3].iter().any(|x| self.shapes[x.index()].len() != r) {
            return Err(self.invalid(id, "expects k and v of the result's rank"));
        }
        if let Some(kernels) = self.linear_attn_blocked(id, out, strict)? {
            return Ok(kernels);
        }
        Ok(vec![self.linear_attn_scalar(id, out, strict)?])
    }

    /// The scalar form (any float dtype, any operand): one task per batch index, the V loop
    /// innermost.
    fn linear_attn_scalar(
        &mut self,
        id: NodeId,
        out: BufId,
        strict: bool,
    ) -> Result<Loop, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        let shape = self.shapes[id.index()].clone();
        let r = shape.len();
        let qshape = self.shapes[ins[0].index()].clone();
        let (tt, kd, vd) = (
            shape[r - 2].clone(),
            qshape[r - 1].clone(),
            shape[r - 1].clone(),
        );
        // The state: [batch…, K, V], in the result's dtype.
        let mut sdims = self.dims_of(id)[..r - 2].to_vec();
        sdims.push(self.dims_of(ins[0])[r - 1].clone());
        sdims.push(self.dims_of(id)[r - 1].clone());
        let state = self.add_scratch(id, sdims);
        // One parallel loop over all batch indices (flattened), so that B = 1 with several
        // heads still spreads over the threads.
        let lead_ext = shape[..r - 2].to_vec();
        let batch = self.var();
        let batches = lead_ext.iter().cloned().fold(int(1), mul);
        let (t, c, e) = (self.var(), self.var(), self.var());
        // The batch indices, computed once per batch (a division in the inner loop would
        // keep it from vectorising).
        let lead_accs: Vec<Acc> = lead_ext.iter().map(|_| self.acc(Ty::I64)).collect();
        let lead_set: Vec<Stmt> = lead_accs
            .iter()
            .zip(unflatten(var(batch), &lead_ext))
            .map(|(a, i)| assign(*a, i))
            .collect();
        let lead_idx: Vec<Expr> = lead_accs.iter().map(|a| Expr::Acc(*a)).collect();
        let at = |time: Expr, last: Expr| {
            let mut v = lead_idx.clone();
            v.push(time);
            v.push(last);
            v
        };
        let mut sshape = shape[..r - 2].to_vec();
        sshape.push(kd.clone());
        sshape.push(vd.clone());
        let sidx = flat(&at(var(c), var(e)), &sshape);
        let oidx = flat(&at(var(t), var(e)), &shape);
        let s_at = Expr::Load {
            buf: state,
            index: Box::new(sidx.clone()),
        };
        let o_at = Expr::Load {
            buf: out,
            index: Box::new(oidx.clone()),
        };
        let qv = self.access(ins[0], &at(var(t), var(c)))?;
        let kv = self.access(ins[1], &at(var(t), var(c)))?;
        let vv = self.access(ins[2], &at(var(t), var(e)))?;
        let (qa, ka) = (self.acc(ty), self.acc(ty));
        // The decay factor d = e^g rounded to the dtype, per step or per channel.
        let mut per_step = Vec::new();
        let mut per_channel = vec![assign(qa, qv), assign(ka, kv)];
        let decay = match ins.get(3) {
            None => None,
            Some(&g) => {
                let channel = self.shapes[g.index()].len() == r;
                let mut gi = lead_idx.clone();
                gi.push(var(t));
                if channel {
                    gi.push(var(c));
                }
                let gty = self.ty(g);
                let gv = self.access(g, &gi)?;
                let d = self.acc(ty);
                let mut factor = Expr::Unary {
                    op: UnaryOp::Exp,
                    ty: gty,
                    x: Box::new(gv),
                };
                if gty != ty {
                    factor = Expr::Cast {
                        from: gty,
                        to: ty,
                        x: Box::new(factor),
                    };
                }
                let set = assign(d, factor);
                if channel {
                    per_channel.push(set);
                } else {
                    per_step.push(set);
                }
                Some(d)
            }
        };
        // S[c, e] ← d·S[c, e] + k_tc·v_te, every operation rounded to the dtype.
        let kvterm = wbin(BinaryOp::Mul, ty, Expr::Acc(ka), vv);
        let next = match decay {
            Some(d) => wbin(
                BinaryOp::Add,
                ty,
                wbin(BinaryOp::Mul, ty, Expr::Acc(d), s_at.clone()),
                kvterm,
            ),
            None => wbin(BinaryOp::Add, ty, s_at.clone(), kvterm),
        };
        let sa = self.acc(ty);
        let read = |s: Expr| Stmt::Store {
            buf: out,
            index: oidx.clone(),
            value: wbin(
                BinaryOp::Add,
                ty,
                o_at.clone(),
                wbin(BinaryOp::Mul, ty, Expr::Acc(qa), s),
            ),
        };
        let update = Stmt::Store {
            buf: state,
            index: sidx.clone(),
            value: Expr::Acc(sa),
        };
        let inner = if strict {
            vec![read(s_at.clone()), assign(sa, next), update]
        } else {
            vec![assign(sa, next), update, read(Expr::Acc(sa))]
        };
        per_channel.push(serial(e, vd.clone(), inner));
        let zero = Expr::Float(0.0, ty);
        per_step.push(serial(
            e,
            vd.clone(),
            vec![Stmt::Store {
                buf: out,
                index: oidx,
                value: zero.clone(),
            }],
        ));
        per_step.push(serial(c, kd.clone(), per_channel));
        let mut body = lead_set;
        body.extend([
            serial(
                c,
                kd,
                vec![serial(
                    e,
                    vd,
                    vec![Stmt::Store {
                        buf: state,
                        index: sidx,
                        value: zero,
                    }],
                )],
            ),
            serial(t, tt, per_step),
        ]);
        Ok(self.nest(&[batch], &[batches], body))
    }
}
