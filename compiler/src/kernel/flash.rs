//! Tiled online-softmax lowering of f32 `attention` (FlashAttention's algorithm on the CPU):
//! the parallel loop runs over (batch, tile of `TQ` queries); for each tile of `TK` keys that
//! the mask does not hide entirely, a block product gives the scores, one pass per row turns
//! them into probabilities against a running maximum (rescaling the row's output and sum as
//! the maximum grows), and a second block product adds P·V into the output. Scores live in a
//! per-tile scratch buffer of TQ × TK, the running maximum and sum in per-row buffers, so the
//! extra memory is linear in T. Everything else (`attention_lse`, other dtypes, strides the
//! block product cannot take, value widths over `BLOCK_N`) keeps the direct nest of `attn.rs`.

use super::access::{add, broadcast_index, div, flat, int, min, mul, sub, unflatten};
use super::gemm::BLOCK_N;
use super::lower::{Lowerer, serial, wbin};
use super::{BufId, Expr, Gemm, KernelError, Loop, Sched, Stmt, Strided, Ty};
use crate::ir::mask::Mask;
use crate::ir::{BinaryOp, DimExpr, NodeId, UnaryOp};

/// Queries per tile (≤ `gemm::BLOCK_M`; a multiple of the micro-kernels' row counts, so
/// that full tiles have no edge rows, and large enough that a packed K/V panel serves many
/// rows).
const TQ: i64 = 192;
/// Keys per tile (≤ `gemm::BLOCK_N`; a multiple of `LANES`).
const TK: i64 = 64;
/// Partial accumulators of the row maximum and sum.
const LANES: i64 = 8;

/// `buf[base + i·rows + j·cols]` as a strided matrix, from an affine load.
fn strided(
    e: &Expr,
    rows: super::Var,
    cols: super::Var,
    at: &[(super::Var, Expr)],
    all: &[super::Var],
) -> Option<Strided> {
    let Expr::Load { buf, index } = e else {
        return None;
    };
    let (r, c) = (
        super::gemm::coeff(index, rows, all)?,
        super::gemm::coeff(index, cols, all)?,
    );
    if !all
        .iter()
        .all(|v| super::gemm::coeff(index, *v, all).is_some())
    {
        return None;
    }
    Some(Strided {
        buf: *buf,
        offset: super::gemm::subst(index, at),
        rows: r,
        cols: c,
    })
}

fn f32c(v: f64) -> Expr {
    Expr::Float(v, Ty::F32)
}

impl Lowerer<'_> {
    /// The tiled kernel for `attention` node `src` computing into `out`, or `None` when the
    /// case is not covered (see the module comment).
    pub(super) fn flash(
        &mut self,
        id: NodeId,
        out: BufId,
        src: NodeId,
        mask: &Mask,
        scale: f64,
    ) -> Result<Option<Loop>, KernelError> {
        let ins = self.g.node(src).inputs.clone();
        let shape = self.shapes[id.index()].clone();
        let r = shape.len();
        // Not inside a `scan_fn` body (see `gemm.rs`).
        if self.scope.is_some()
            || self.ty(id) != Ty::F32
            || ins.iter().any(|x| self.ty(*x) != Ty::F32)
            || r < 2
        {
            return Ok(None);
        }
        let dims = self.g.tensor_ty(id).shape.clone();
        if dims[r - 1].as_const().is_none_or(|e| e > BLOCK_N) {
            return Ok(None);
        }
        let (rq, rk) = (
            self.shapes[ins[0].index()].len(),
            self.shapes[ins[1].index()].len(),
        );
        let dd = self.shapes[ins[0].index()][rq - 1].clone();
        let ss = self.shapes[ins[1].index()][rk - 2].clone();
        let (tt, ee) = (shape[r - 2].clone(), shape[r - 1].clone());
        // Probe the operands' index maps with fresh variables: lead…, row, column.
        let lead_v: Vec<super::Var> = (0..r - 2).map(|_| self.var()).collect();
        let (vr, vc) = (self.var(), self.var());
        let mut all = lead_v.clone();
        all.extend([vr, vc]);
        let probe = |l: &mut Self, k: usize| -> Result<Expr, KernelError> {
            let mut full: Vec<Expr> = lead_v.iter().map(|v| Expr::Var(*v)).collect();
            full.push(Expr::Var(vr));
            full.push(Expr::Var(vc));
            let x = ins[k];
            let bi = broadcast_index(&full, l.dims_of(x));
            l.access(x, &bi)
        };
        let (qe, ke, ve) = (probe(self, 0)?, probe(self, 1)?, probe(self, 2)?);
        // The parallel loop: lead indices, then the query tile.
        let nq = div(add(tt.clone(), int(TQ - 1)), int(TQ));
        let mut pshape: Vec<Expr> = shape[..r - 2].to_vec();
        pshape.push(nq.clone());
        let w = self.var();
        let widx = unflatten(Expr::Var(w), &pshape);
        let lead: Vec<Expr> = widx[..r - 2].to_vec();
        let q0 = mul(widx[r - 2].clone(), int(TQ));
        let (j, row, col, e) = (self.var(), self.var(), self.var(), self.var());
        let k0 = mul(Expr::Var(j), int(TK));
        let rows = min(int(TQ), sub(tt.clone(), q0.clone()));
        let cols = min(int(TK), sub(ss.clone(), k0.clone()));
        let mut at: Vec<(super::Var, Expr)> = lead_v.iter().cloned().zip(lead.clone()).collect();
        // Q tile: rows q0.., columns d; K tile read transposed: (d, key) = k[k0 + key, d].
        let mut at_q = at.clone();
        at_q.extend([(vr, q0.clone()), (vc, int(0))]);
        let mut at_k = at.clone();
        at_k.extend([(vr, k0.clone()), (vc, int(0))]);
        let (Some(qs), Some(ks), Some(vs)) = (
            strided(&qe, vr, vc, &at_q, &all),
            strided(&ke, vc, vr, &at_k, &all),
            strided(&ve, vr, vc, &at_k, &all),
        ) else {
            return Ok(None);
        };
        at.clear();
        // Scratch: scores/probabilities per tile, running max and sum per row.
        let nt = {
            let mut n = DimExpr::constant(1);
            for d in &dims[..r - 2] {
                n = n.mul(d);
            }
            let t = &dims[r - 2];
            match t.ceil_div(TQ) {
                Some(c) => n.mul(&c),
                None => return Ok(None),
            }
        };
        // (f32: the node's dtype, checked above.)
        let scratch = |l: &mut Self, shape: Vec<DimExpr>| l.add_scratch(id, shape);
        let sbuf = scratch(
            self,
            vec![nt.clone(), DimExpr::constant(TQ), DimExpr::constant(TK)],
        );
        let mbuf = scratch(self, vec![nt.clone(), DimExpr::constant(TQ)]);
        let lbuf = scratch(self, vec![nt, DimExpr::constant(TQ)]);
        let wv = Expr::Var(w);
        let (rv, cv, ev) = (Expr::Var(row), Expr::Var(col), Expr::Var(e));
        let s_at = |r: Expr, c: Expr| add(mul(add(mul(wv.clone(), int(TQ)), r), int(TK)), c);
        let ml_at = |r: Expr| add(mul(wv.clone(), int(TQ)), r);
        let o_at = |r: Expr, c: Expr| {
            let mut i = lead.clone();
            i.push(add(q0.clone(), r));
            i.push(c);
            flat(&i, &shape)
        };
        let load = |buf: BufId, index: Expr| Expr::Load {
            buf,
            index: Box::new(index),
        };
        let store = |buf: BufId, index: Expr, value: Expr| Stmt::Store { buf, index, value };
        let visible = super::attn::mask_expr(
            mask,
            &add(q0.clone(), rv.clone()),
            &add(k0.clone(), cv.clone()),
            &lead,
        )
        .map_err(|m| self.invalid(src, &format!("mask: {m}")))?;
        let f = |op, a, b| wbin(op, Ty::F32, a, b);
        let neg_inf = f32c(f64::NEG_INFINITY);
        // Init: m = −∞, l = 0, the output rows 0.
        let init = serial(
            row,
            rows.clone(),
            vec![
                store(mbuf, ml_at(rv.clone()), neg_inf.clone()),
                store(lbuf, ml_at(rv.clone()), f32c(0.0)),
                serial(
                    e,
                    ee.clone(),
                    vec![store(out, o_at(rv.clone(), ev.clone()), f32c(0.0))],
                ),
            ],
        );
        // Whether any (row, col) of the tile is visible, and whether all of a full-width
        // tile is (then the row pass reads the raw scores without evaluating the mask).
        let (any, all) = (self.acc(Ty::Bool), self.acc(Ty::Bool));
        let probe_mask = vec![
            Stmt::Assign {
                acc: any,
                value: Expr::Bool(false),
            },
            Stmt::Assign {
                acc: all,
                value: wbin(BinaryOp::Eq, Ty::I64, cols.clone(), int(TK)),
            },
            serial(
                row,
                rows.clone(),
                vec![serial(
                    col,
                    cols.clone(),
                    vec![
                        Stmt::Assign {
                            acc: any,
                            value: wbin(BinaryOp::Or, Ty::Bool, Expr::Acc(any), visible.clone()),
                        },
                        Stmt::Assign {
                            acc: all,
                            value: wbin(BinaryOp::And, Ty::Bool, Expr::Acc(all), visible.clone()),
                        },
                    ],
                )],
            ),
        ];
        let scores = Stmt::Gemm(Box::new(Gemm {
            m: rows.clone(),
            n: cols.clone(),
            k: dd,
            a: qs,
            b: ks,
            c: Strided {
                buf: sbuf,
                offset: s_at(int(0), int(0)),
                rows: int(TK),
                cols: int(1),
            },
            accumulate: false,
        }));
        // Per row, over all TK columns: x = s·scale where visible, −∞ where hidden or past
        // `cols`; mx = max(m, max x); p = e^{x − mx} (0 for −∞) and l = l·α + Σp, O·= α with
        // α = e^{m − mx} (0 while m = −∞; the output is left alone when α = 1). The maximum
        // and the sum go through `LANES` partial accumulators (independent chains the
        // vectoriser can pack). A mixed tile first writes x over the scores (one pass
        // evaluating the mask); a fully visible one reads the raw scores: for scale > 0,
        // max(s·scale) = max(s)·scale exactly (rounding is monotonic), so the maximum pass
        // runs on s and the scale is applied in the exponential pass.
        let sx = load(sbuf, s_at(rv.clone(), cv.clone()));
        let x = Expr::Select {
            cond: Box::new(wbin(BinaryOp::Lt, Ty::I64, cv.clone(), cols.clone())),
            a: Box::new(Expr::Select {
                cond: Box::new(visible),
                a: Box::new(f(BinaryOp::Mul, sx.clone(), f32c(scale))),
                b: Box::new(neg_inf.clone()),
            }),
            b: Box::new(neg_inf.clone()),
        };
        let is_inf = |v: Expr| wbin(BinaryOp::Eq, Ty::F32, v, neg_inf.clone());
        let exp = |v: Expr| Expr::Unary {
            op: UnaryOp::Exp,
            ty: Ty::F32,
            x: Box::new(v),
        };
        let m_old = load(mbuf, ml_at(rv.clone()));
        let mx = self.acc(Ty::F32);
        let (maxes, sums): (Vec<_>, Vec<_>) = (0..LANES)
            .map(|_| (self.acc(Ty::F32), self.acc(Ty::F32)))
            .unzip();
        let g = self.var();
        let lane_at = |l: i64| s_at(rv.clone(), add(mul(Expr::Var(g), int(LANES)), int(l)));
        let fold = |accs: &[super::Acc], op: BinaryOp, first: Expr| -> Expr {
            accs.iter().fold(first, |a, acc| f(op, a, Expr::Acc(*acc)))
        };
        let init_lanes = |accs: &[super::Acc], v: &Expr| -> Vec<Stmt> {
            accs.iter()
                .map(|a| Stmt::Assign {
                    acc: *a,
                    value: v.clone(),
                })
                .collect()
        };
        // One pass over the row's stored values, each lane accumulator `op`-ing its columns.
        let lane_pass = |accs: &[super::Acc], op: BinaryOp| -> Stmt {
            let body = accs
                .iter()
                .enumerate()
                .map(|(l, acc)| Stmt::Assign {
                    acc: *acc,
                    value: f(op, Expr::Acc(*acc), load(sbuf, lane_at(l as i64))),
                })
                .collect();
            serial(g, int(TK / LANES), body)
        };
        let sum = self.acc(Ty::F32);
        let alpha = self.acc(Ty::F32);
        // The passes after x: `pre` maps a stored score to x (the scale for full tiles).
        let row_pass = |pre: &dyn Fn(Expr) -> Expr, head: Vec<Stmt>| -> Vec<Stmt> {
            let mut out_row = head;
            out_row.extend(init_lanes(&maxes, &neg_inf));
            out_row.push(lane_pass(&maxes, BinaryOp::Max));
            out_row.push(Stmt::Assign {
                acc: mx,
                value: f(
                    BinaryOp::Max,
                    m_old.clone(),
                    pre(fold(&maxes[1..], BinaryOp::Max, Expr::Acc(maxes[0]))),
                ),
            });
            // p = e^{x − mx} stored over the score (no reduction in this pass, so it
            // vectorises), then its lanes' sums.
            let xc = pre(load(sbuf, s_at(rv.clone(), cv.clone())));
            let p = Expr::Select {
                cond: Box::new(is_inf(xc.clone())),
                a: Box::new(f32c(0.0)),
                b: Box::new(exp(f(BinaryOp::Sub, xc, Expr::Acc(mx)))),
            };
            out_row.push(serial(
                col,
                int(TK),
                vec![store(sbuf, s_at(rv.clone(), cv.clone()), p)],
            ));
            out_row.extend(init_lanes(&sums, &f32c(0.0)));
            out_row.push(lane_pass(&sums, BinaryOp::Add));
            out_row.push(Stmt::Assign {
                acc: sum,
                value: fold(&sums, BinaryOp::Add, f32c(0.0)),
            });
            out_row.extend(vec![
                Stmt::Assign {
                    acc: alpha,
                    value: Expr::Select {
                        cond: Box::new(is_inf(m_old.clone())),
                        a: Box::new(f32c(0.0)),
                        b: Box::new(exp(f(BinaryOp::Sub, m_old.clone(), Expr::Acc(mx)))),
                    },
                },
                store(
                    lbuf,
                    ml_at(rv.clone()),
                    f(
                        BinaryOp::Add,
                        f(
                            BinaryOp::Mul,
                            load(lbuf, ml_at(rv.clone())),
                            Expr::Acc(alpha),
                        ),
                        Expr::Acc(sum),
                    ),
                ),
                store(mbuf, ml_at(rv.clone()), Expr::Acc(mx)),
                Stmt::If {
                    cond: wbin(BinaryOp::Ne, Ty::F32, Expr::Acc(alpha), f32c(1.0)),
                    body: vec![serial(
                        e,
                        ee.clone(),
                        vec![store(
                            out,
                            o_at(rv.clone(), ev.clone()),
                            f(
                                BinaryOp::Mul,
                                load(out, o_at(rv.clone(), ev.clone())),
                                Expr::Acc(alpha),
                            ),
                        )],
                    )],
                },
            ]);
            out_row
        };
        let masked = row_pass(
            &|v| v,
            vec![serial(
                col,
                int(TK),
                vec![store(sbuf, s_at(rv.clone(), cv.clone()), x)],
            )],
        );
        let full = (scale > 0.0 && scale.is_finite())
            .then(|| row_pass(&|v| f(BinaryOp::Mul, v, f32c(scale)), Vec::new()));
        let pv = Stmt::Gemm(Box::new(Gemm {
            m: rows.clone(),
            n: ee.clone(),
            k: cols.clone(),
            a: Strided {
                buf: sbuf,
                offset: s_at(int(0), int(0)),
                rows: int(TK),
                cols: int(1),
            },
            b: vs,
            c: Strided {
                buf: out,
                offset: o_at(int(0), int(0)),
                rows: ee.clone(),
                cols: int(1),
            },
            accumulate: true,
        }));
        let rows_pass = match full {
            Some(full) => vec![
                Stmt::If {
                    cond: Expr::Acc(all),
                    body: vec![serial(row, rows.clone(), full)],
                },
                Stmt::If {
                    cond: Expr::Select {
                        cond: Box::new(Expr::Acc(all)),
                        a: Box::new(Expr::Bool(false)),
                        b: Box::new(Expr::Bool(true)),
                    },
                    body: vec![serial(row, rows.clone(), masked)],
                },
            ],
            None => vec![serial(row, rows.clone(), masked)],
        };
        let mut tile = probe_mask;
        let mut body = vec![scores];
        body.extend(rows_pass);
        body.push(pv);
        tile.push(Stmt::If {
            cond: Expr::Acc(any),
            body,
        });
        let nk = div(add(ss, int(TK - 1)), int(TK));
        // Finish: O /= l, NaN for a row with no visible key (l = 0).
        let lv = load(lbuf, ml_at(rv.clone()));
        let fin = serial(
            row,
            rows,
            vec![serial(
                e,
                ee,
                vec![store(
                    out,
                    o_at(rv.clone(), ev.clone()),
                    Expr::Select {
                        cond: Box::new(wbin(BinaryOp::Gt, Ty::F32, lv.clone(), f32c(0.0))),
                        a: Box::new(f(
                            BinaryOp::Div,
                            load(out, o_at(rv.clone(), ev.clone())),
                            lv,
                        )),
                        b: Box::new(f32c(f64::NAN)),
                    },
                )],
            )],
        );
        Ok(Some(Loop {
            var: w,
            extent: pshape.into_iter().fold(int(1), mul),
            sched: Sched::Parallel,
            body: vec![init, serial(j, nk, tile), fin],
        }))
    }
}
