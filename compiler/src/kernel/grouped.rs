//! `grouped_matmul` (out[n, o] = Σ_i x[n, i]·w[group[n], o, i]): for f32, rows sorted by
//! group and each group's rows run as block products against its expert's weights, as
//! MoE kernels do (a counting sort, then one `Stmt::Gemm` per block of one expert's rows);
//! otherwise a direct loop nest. The sorted form reads each expert's weights once per block
//! of rows instead of once per row.
//!
//! The sorted form is four kernels, with scratch `start` (E + 1 offsets), `perm` (N row
//! indices), `xs` (N × I) and `ys` (N × O):
//! 1. serial: count the rows of each group, prefix-sum the counts, place each row's index at
//!    its group's cursor (a stable counting sort); afterwards group e's rows are
//!    perm[end(e − 1) .. end(e)] with end(e) = start[e] (end(−1) = 0). A group outside 0..E
//!    sets the status word (`Expr::Checked`) and the call fails, as `take` does;
//! 2. xs[r] = x[perm[r]] (parallel over rows);
//! 3. per (expert, block of `BLOCK_M` sorted rows, block of `BLOCK_N` columns), parallel: the
//!    block product of the rows that belong to the expert (blocks past its last row do
//!    nothing) against wᵀ[e], into ys;
//! 4. out[perm[r]] = ys[r] (parallel over rows; perm is a permutation).

use super::access::{add, div, int, min, mul, sub, unflatten};
use super::gemm::{BLOCK_M, BLOCK_N, coeff, subst};
use super::lower::{Lowerer, serial, wbin};
use super::{Expr, Gemm, KernelError, Loop, Sched, Stmt, Strided, Ty};
use crate::ir::{BinaryOp, DimExpr, NodeId};
use seqc_runtime::DType;

impl Lowerer<'_> {
    /// The kernels of `grouped_matmul` node `id` writing `out`.
    pub(super) fn grouped_matmul(
        &mut self,
        id: NodeId,
        out: super::BufId,
    ) -> Result<Vec<Loop>, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        let shape = self.shapes[id.index()].clone();
        if !ty.is_float() || shape.len() != 2 || ins.len() != 3 {
            return Err(self.invalid(id, "expects float x: [N, I], w: [E, O, I], group: [N]"));
        }
        // Inside a `scan_fn` body buffers are remapped per access (see `gemm.rs`): no blocks.
        if self.scope.is_none()
            && ty == Ty::F32
            && self.ty(ins[1]) == Ty::F32
            && let Some(k) = self.grouped_sorted(id, out)?
        {
            return Ok(k);
        }
        Ok(vec![self.grouped_nest(id, out)?])
    }

    /// The direct nest: per (n, o) an f64 sum over i, group[n] checked against E.
    fn grouped_nest(&mut self, id: NodeId, out: super::BufId) -> Result<Loop, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        let shape = self.shapes[id.index()].clone();
        let ilen = self.shapes[ins[0].index()][1].clone();
        let vars: Vec<_> = shape.iter().map(|_| self.var()).collect();
        let i = self.var();
        let (n, o) = (Expr::Var(vars[0]), Expr::Var(vars[1]));
        let e = self.group_of(id, n.clone())?;
        let xv = self.access(ins[0], &[n.clone(), Expr::Var(i)])?;
        let wv = self.access(ins[1], &[e, o.clone(), Expr::Var(i)])?;
        let (s, [reset, sum]) = self.dot_f64(i, ilen, xv, wv, ty);
        let body = vec![
            reset,
            sum,
            Stmt::Store {
                buf: out,
                index: super::access::flat(&[n, o], &shape),
                value: Expr::Cast {
                    from: Ty::F64,
                    to: ty,
                    x: Box::new(Expr::Acc(s)),
                },
            },
        ];
        Ok(self.nest(&vars, &shape, body))
    }

    /// group[n] as an i64 checked against E.
    fn group_of(&mut self, id: NodeId, n: Expr) -> Result<Expr, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let g = self.access(ins[2], &[n])?;
        Ok(Expr::Checked {
            index: Box::new(Expr::Cast {
                from: self.ty(ins[2]),
                to: Ty::I64,
                x: Box::new(g),
            }),
            len: Box::new(self.shapes[ins[1].index()][0].clone()),
        })
    }

    /// The sorted form (see the module comment), or `None` when w is not read through an
    /// affine index map.
    fn grouped_sorted(
        &mut self,
        id: NodeId,
        out: super::BufId,
    ) -> Result<Option<Vec<Loop>>, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let (x, w) = (ins[0], ins[1]);
        let (xd, wd) = (
            self.g.tensor_ty(x).shape.clone(),
            self.g.tensor_ty(w).shape.clone(),
        );
        let (nn, ii) = (
            self.shapes[x.index()][0].clone(),
            self.shapes[x.index()][1].clone(),
        );
        let (ee, oo) = (
            self.shapes[w.index()][0].clone(),
            self.shapes[w.index()][1].clone(),
        );
        // w[e, o, i] = buf[base + e·se + o·so + i·si].
        let (ve, vo, vi) = (self.var(), self.var(), self.var());
        let wvars = [ve, vo, vi];
        let (wbuf, windex) = match self.access(w, &[Expr::Var(ve), Expr::Var(vo), Expr::Var(vi)])? {
            Expr::Load { buf, index }
                if wvars.iter().all(|v| coeff(&index, *v, &wvars).is_some()) =>
            {
                (buf, *index)
            }
            _ => return Ok(None),
        };
        let stride = |v| coeff(&windex, v, &wvars).expect("checked affine");
        let one = DimExpr::constant(1);
        let start = self.add_scratch_of(id, vec![wd[0].add(&one)], DType::I64);
        let perm = self.add_scratch_of(id, vec![xd[0].clone()], DType::I64);
        let xs = self.add_scratch(id, xd.clone());
        let ys = self.add_scratch(id, vec![xd[0].clone(), wd[1].clone()]);
        let load = |buf, index: Expr| Expr::Load {
            buf,
            index: Box::new(index),
        };
        let i64op = |op, a, b| wbin(op, Ty::I64, a, b);

        // 1. The counting sort.
        let (e, n) = (self.var(), self.var());
        let (ev, nv) = (Expr::Var(e), Expr::Var(n));
        let grp = self.group_of(id, nv.clone())?;
        let cursor = self.acc(Ty::I64);
        let sort_body = vec![
            serial(
                e,
                add(ee.clone(), int(1)),
                vec![Stmt::Store {
                    buf: start,
                    index: ev.clone(),
                    value: int(0),
                }],
            ),
            // start[g + 1] counts group g.
            serial(
                n,
                nn.clone(),
                vec![Stmt::Store {
                    buf: start,
                    index: add(grp.clone(), int(1)),
                    value: add(load(start, add(grp.clone(), int(1))), int(1)),
                }],
            ),
            // Inclusive prefix: start[e] = the first sorted row of group e.
            serial(
                e,
                ee.clone(),
                vec![Stmt::Store {
                    buf: start,
                    index: add(ev.clone(), int(1)),
                    value: add(
                        load(start, add(ev.clone(), int(1))),
                        load(start, ev.clone()),
                    ),
                }],
            ),
            // Each row at its group's cursor, which then moves on: start[g] ends as the end.
            serial(
                n,
                nn.clone(),
                vec![
                    Stmt::Assign {
                        acc: cursor,
                        value: load(start, grp.clone()),
                    },
                    Stmt::Store {
                        buf: perm,
                        index: Expr::Acc(cursor),
                        value: nv.clone(),
                    },
                    Stmt::Store {
                        buf: start,
                        index: grp,
                        value: add(Expr::Acc(cursor), int(1)),
                    },
                ],
            ),
        ];
        let one_iter = self.var();
        let sort = Loop {
            var: one_iter,
            extent: int(1),
            sched: Sched::Parallel,
            body: sort_body,
        };

        // 2. xs[r, i] = x[perm[r], i].
        let (r, i) = (self.var(), self.var());
        let (rv, iv) = (Expr::Var(r), Expr::Var(i));
        let src = self.access(x, &[load(perm, rv.clone()), iv.clone()])?;
        let gather = self.nest(
            &[r, i],
            &[nn.clone(), ii.clone()],
            vec![Stmt::Store {
                buf: xs,
                index: add(mul(rv.clone(), ii.clone()), iv.clone()),
                value: src,
            }],
        );

        // 3. Block products per expert.
        let blocks = |ext: &Expr, blk: i64| div(add(ext.clone(), int(blk - 1)), int(blk));
        let grid = [ee.clone(), blocks(&nn, BLOCK_M), blocks(&oo, BLOCK_N)];
        let tile = self.var();
        let at = unflatten(Expr::Var(tile), &grid);
        let (te, tb, tc) = (at[0].clone(), at[1].clone(), at[2].clone());
        let first = Expr::Select {
            cond: Box::new(i64op(BinaryOp::Gt, te.clone(), int(0))),
            a: Box::new(load(start, sub(te.clone(), int(1)))),
            b: Box::new(int(0)),
        };
        let (lo, hi) = (self.acc(Ty::I64), self.acc(Ty::I64));
        let r0 = add(Expr::Acc(lo), mul(tb, int(BLOCK_M)));
        let c0 = mul(tc, int(BLOCK_N));
        let gemm = Gemm {
            m: min(int(BLOCK_M), sub(Expr::Acc(hi), r0.clone())),
            n: min(int(BLOCK_N), sub(oo.clone(), c0.clone())),
            k: ii.clone(),
            a: Strided {
                buf: xs,
                offset: mul(r0.clone(), ii.clone()),
                rows: ii.clone(),
                cols: int(1),
            },
            // b[p, j] = w[e, c0 + j, p].
            b: Strided {
                buf: wbuf,
                offset: subst(&windex, &[(ve, te), (vo, c0.clone()), (vi, int(0))]),
                rows: stride(vi),
                cols: stride(vo),
            },
            c: Strided {
                buf: ys,
                offset: add(mul(r0.clone(), oo.clone()), c0),
                rows: oo.clone(),
                cols: int(1),
            },
            accumulate: false,
        };
        let products = Loop {
            var: tile,
            extent: grid.iter().cloned().fold(int(1), mul),
            sched: Sched::Parallel,
            body: vec![
                Stmt::Assign {
                    acc: lo,
                    value: first,
                },
                Stmt::Assign {
                    acc: hi,
                    value: load(start, at[0].clone()),
                },
                Stmt::If {
                    cond: i64op(BinaryOp::Lt, r0, Expr::Acc(hi)),
                    body: vec![Stmt::Gemm(Box::new(gemm))],
                },
            ],
        };

        // 4. out[perm[r], o] = ys[r, o].
        let (r, o) = (self.var(), self.var());
        let (rv, ov) = (Expr::Var(r), Expr::Var(o));
        let scatter = self.nest(
            &[r, o],
            &[nn, oo.clone()],
            vec![Stmt::Store {
                buf: out,
                index: add(mul(load(perm, rv.clone()), oo.clone()), ov.clone()),
                value: load(ys, add(mul(rv, oo), ov)),
            }],
        );
        Ok(Some(vec![sort, gather, products, scatter]))
    }
}
