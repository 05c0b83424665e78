//! A `scan` read only by an `einsum` that contracts some of its axes (Mamba's selective scan:
//! `einsum("btdn,btn->btd", scan(a, b, axis = 1), C)`) lowered into one kernel, so that the
//! stacked states [..., T, ..., N] are never stored. The indices of the kept axes other than
//! the scan axis are flattened and run in blocks of `BLOCK`, one block per parallel iteration;
//! the state over the contracted axes lives in a scratch buffer of [kept…, contracted…] (for
//! Mamba [B, DI, N]; a block's part, 32 × N floats, stays in L1):
//!   h = h0 (or 0);  for t: for o in block: h[o, c] ← a_t[o, c]·h[o, c] + b_t[o, c] for every c;
//!                                       y_t[o] = Σ_c h[o, c]·Y_t[o, c]
//! The scan's operands are read through `access`, so single-use elementwise producers of the
//! scan's shape (Mamba's exp(Δ·A) and Δ·u·B) are computed inline from their smaller inputs
//! and no [..., T, ..., N] buffer exists at all. The update runs in its own innermost loop
//! (independent iterations over contiguous state, which LLVM vectorises) and the contraction
//! in a second one. Rounding is the interpreter's: each state as the scan rounds it (f64
//! multiply-add, rounded to the dtype), the contraction summed in f64 and rounded once.

use super::access::{add, div, flat, int, min, mul, sub, unflatten};
use super::lower::{Lowerer, scan_step, serial, wbin, widen};
use super::{Acc, BufId, Expr, KernelError, Loop, Stmt, Ty, Var};
use crate::ir::{BinaryOp, Graph, NodeId, Op};

/// The operand position of the `scan` that einsum `id` can absorb, if it is one: a float
/// `einsum` of two operands, one a `scan` used only here (and not an output), whose term
/// names every letter of the other term and of the result once each and keeps the scan axis.
pub(super) fn absorbed_scan(
    g: &Graph,
    id: NodeId,
    uses: &[usize],
    outputs: &[NodeId],
) -> Option<usize> {
    let n = g.node(id);
    let Op::Einsum { spec } = &n.op else {
        return None;
    };
    let (lhs, rhs) = spec.split_once("->")?;
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    if terms.len() != 2 || n.inputs.len() != 2 {
        return None;
    }
    let rhs: Vec<char> = rhs.chars().collect();
    let distinct = |t: &[char]| t.iter().enumerate().all(|(i, c)| !t[..i].contains(c));
    (0..2).find(|&p| {
        let s = n.inputs[p];
        let Op::Scan { axis, .. } = g.node(s).op else {
            return false;
        };
        let (st, other) = (&terms[p], &terms[1 - p]);
        let floats = [s, n.inputs[1 - p], id]
            .iter()
            .all(|x| g.node(*x).ty.tensor().is_some_and(|t| t.dtype.is_float()));
        floats
            && uses[s.index()] == 1
            && !outputs.contains(&s)
            && st.len() == g.tensor_ty(s).shape.len()
            && distinct(st)
            && distinct(&rhs)
            && other.iter().all(|c| st.contains(c))
            && rhs.iter().all(|c| st.contains(c))
            && rhs.contains(&st[axis])
    })
}

/// Kept positions per parallel iteration: each time step reads the scan's operands and the
/// other operand for the whole block (Mamba: 32 channels of Δ and Δ·u, one row of B and of C),
/// where one position at a time would stream all T rows once per channel.
const BLOCK: i64 = 32;

fn var(v: Var) -> Expr {
    Expr::Var(v)
}

fn assign(acc: Acc, value: Expr) -> Stmt {
    Stmt::Assign { acc, value }
}

impl Lowerer<'_> {
    /// Einsum `id` with the scan at operand `p` absorbed (see the module doc):
    ///   for block (parallel): for o in block: for c: S[o, c] = h0
    ///     for t: for o in block: for c: h = a·S[o, c] + b; S[o, c] = h
    ///                            s = 0; for c: s += S[o, c]·Y[o, t, c]; out[o, t] = s
    pub(super) fn scan_einsum(
        &mut self,
        id: NodeId,
        out: BufId,
        p: usize,
    ) -> Result<Loop, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let (s, other) = (ins[p], ins[1 - p]);
        let Op::Einsum { spec } = &self.g.node(id).op else {
            return Err(self.invalid(id, "internal: not an einsum"));
        };
        let Op::Scan { axis, reverse } = self.g.node(s).op else {
            return Err(self.invalid(id, "internal: the absorbed operand is not a scan"));
        };
        let (lhs, rhs) = spec
            .split_once("->")
            .ok_or_else(|| self.invalid(id, "spec without `->`"))?;
        let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
        let st = terms[p].clone();
        let ot = terms[1 - p].clone();
        let rhs: Vec<char> = rhs.chars().collect();
        let sins = self.g.node(s).inputs.clone();
        let (ty, sty, oty) = (self.ty(id), self.ty(s), self.ty(other));
        let sshape = self.shapes[s.index()].clone();
        let oshape = self.shapes[id.index()].clone();
        let len = sshape[axis].clone();
        // Kept axes other than the scan axis (in result order), contracted ones (scan order).
        let kept: Vec<usize> = rhs
            .iter()
            .filter(|c| **c != st[axis])
            .map(|c| st.iter().position(|x| x == c).expect("checked"))
            .collect();
        let contracted: Vec<usize> = (0..st.len()).filter(|i| !rhs.contains(&st[*i])).collect();
        let kext: Vec<Expr> = kept.iter().map(|i| sshape[*i].clone()).collect();
        let cext: Vec<Expr> = contracted.iter().map(|i| sshape[*i].clone()).collect();
        // The state: [kept…, contracted…] in the scan's dtype.
        let sdims = kept
            .iter()
            .chain(&contracted)
            .map(|i| self.dims_of(s)[*i].clone())
            .collect();
        let state = self.add_scratch(s, sdims);
        let (ob, j, t) = (self.var(), self.var(), self.var());
        let cvars: Vec<Var> = contracted.iter().map(|_| self.var()).collect();
        // Kept positions (flattened) in blocks of `BLOCK`, one block per parallel iteration.
        let kept_n = kext.iter().cloned().fold(int(1), mul);
        let blocks = div(add(kept_n.clone(), int(BLOCK - 1)), int(BLOCK));
        let in_block = min(int(BLOCK), sub(kept_n, mul(var(ob), int(BLOCK))));
        // The kept indices of position j of the block, set before each use.
        let kaccs: Vec<Acc> = kept.iter().map(|_| self.acc(Ty::I64)).collect();
        let set_kept: Vec<Stmt> = kaccs
            .iter()
            .zip(unflatten(add(mul(var(ob), int(BLOCK)), var(j)), &kext))
            .map(|(a, i)| assign(*a, i))
            .collect();
        let tt = if reverse {
            sub(sub(len.clone(), int(1)), var(t))
        } else {
            var(t)
        };
        // The scan's index as a function of the time index.
        let mut sidx = vec![int(0); st.len()];
        for (k, i) in kept.iter().enumerate() {
            sidx[*i] = Expr::Acc(kaccs[k]);
        }
        for (k, i) in contracted.iter().enumerate() {
            sidx[*i] = var(cvars[k]);
        }
        sidx[axis] = tt.clone();
        let at_letters = |term: &[char]| -> Vec<Expr> {
            term.iter()
                .map(|c| sidx[st.iter().position(|x| x == c).expect("checked")].clone())
                .collect()
        };
        let mut state_idx: Vec<Expr> = kaccs.iter().map(|a| Expr::Acc(*a)).collect();
        state_idx.extend(cvars.iter().map(|v| var(*v)));
        let sflat = flat(&state_idx, &[kext.clone(), cext.clone()].concat());
        let s_at = Expr::Load {
            buf: state,
            index: Box::new(sflat.clone()),
        };
        let put = |value: Expr| Stmt::Store {
            buf: state,
            index: sflat.clone(),
            value,
        };
        let init = match sins.get(2) {
            Some(h0) => {
                let mut hi = sidx.clone();
                hi.remove(axis);
                self.access(*h0, &hi)?
            }
            None => Expr::Float(0.0, sty),
        };
        let bidx = |l: &Self, x: NodeId| super::access::broadcast_index(&sidx, l.dims_of(x));
        let ai = bidx(self, sins[0]);
        let av = self.access(sins[0], &ai)?;
        let bi = bidx(self, sins[1]);
        let bv = self.access(sins[1], &bi)?;
        let h = self.acc(sty);
        let next = scan_step(av, s_at.clone(), bv, sty);
        let yv = self.access(other, &at_letters(&ot))?;
        let wide = Ty::F64;
        let (sv, yv) = if p == 0 {
            (widen(s_at.clone(), sty), widen(yv, oty))
        } else {
            (widen(yv, oty), widen(s_at.clone(), sty))
        };
        let sum = self.acc(wide);
        let nest = |inner: Vec<Stmt>| -> Vec<Stmt> {
            let mut b = inner;
            for k in (0..cvars.len()).rev() {
                b = vec![serial(cvars[k], cext[k].clone(), b)];
            }
            b
        };
        let mut start = set_kept.clone();
        start.extend(nest(vec![put(init)]));
        let mut step = set_kept;
        step.extend(nest(vec![assign(h, next), put(Expr::Acc(h))]));
        step.push(assign(sum, Expr::Float(0.0, wide)));
        step.extend(nest(vec![assign(
            sum,
            wbin(
                BinaryOp::Add,
                wide,
                Expr::Acc(sum),
                wbin(BinaryOp::Mul, wide, sv, yv),
            ),
        )]));
        let oidx = at_letters(&rhs);
        step.push(Stmt::Store {
            buf: out,
            index: flat(&oidx, &oshape),
            value: Expr::Cast {
                from: wide,
                to: ty,
                x: Box::new(Expr::Acc(sum)),
            },
        });
        let body = vec![
            serial(j, in_block.clone(), start),
            serial(t, len, vec![serial(j, in_block, step)]),
        ];
        Ok(self.nest(&[ob], &[blocks], body))
    }
}
