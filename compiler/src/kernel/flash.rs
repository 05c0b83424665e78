//! Tiled online-softmax lowering of f32 `attention` (FlashAttention's algorithm on the CPU):
//! the parallel loop runs over (batch, tile of `TQ` queries); for each tile of `TK` keys that
//! the mask does not hide entirely, one [`Stmt::AttnTile`] computes the scores, turns them
//! into probabilities against each row's running maximum (rescaling the row's output and sum
//! as the maximum grows) and adds P·V into the output, which the backend fuses in registers.
//! A tile that the mask hides in part first writes the mask's visibility to a per-tile
//! scratch of TQ × TK; the running maximum and sum live in per-row buffers and the output
//! sums in a scratch of TQ × E (E rounded up to 16), so the extra memory is linear in T.
//! Everything else (`attention_lse`, other dtypes, strides that are not affine, widths
//! that are not constants up to `BLOCK_N`) keeps the direct nest of `attn.rs`.

use super::access::{add, broadcast_index, div, flat, int, min, mul, sub, unflatten};
use super::gemm::BLOCK_N;
use super::lower::{Lowerer, serial, wbin};
use super::{AttnTile, BufId, Expr, KernelError, Loop, Sched, Stmt, Strided, Ty};
use crate::ir::mask::Mask;
use crate::ir::{BinaryOp, DimExpr, NodeId};

/// Queries per tile (a multiple of the strip's row counts, so that full tiles have no edge
/// rows, and large enough that a packed K/V tile serves many rows).
const TQ: i64 = 192;
/// Keys per tile.
const TK: i64 = AttnTile::KEYS;
/// The output scratch's row length is the value width rounded up to this.
const PAD: i64 = 16;

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
            || ins.len() < 3
            || ins[..3].iter().any(|x| self.ty(*x) != Ty::F32)
            || r < 2
        {
            return Ok(None);
        }
        let dims = self.g.tensor_ty(id).shape.clone();
        let (rq, rk) = (
            self.shapes[ins[0].index()].len(),
            self.shapes[ins[1].index()].len(),
        );
        // The value width and the depth of q·k: constants up to BLOCK_N (the tile step's
        // packed panels are sized for that).
        let depth = self.g.tensor_ty(ins[0]).shape[rq - 1].as_const();
        let Some(width) = dims[r - 1].as_const().filter(|e| *e <= BLOCK_N) else {
            return Ok(None);
        };
        if depth.is_none_or(|d| d > BLOCK_N) {
            return Ok(None);
        }
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
        // Q tile: rows q0.., columns d; K and V tiles: rows k0.., columns d (or e).
        let mut at_q = at.clone();
        at_q.extend([(vr, q0.clone()), (vc, int(0))]);
        let mut at_k = at.clone();
        at_k.extend([(vr, k0.clone()), (vc, int(0))]);
        let (Some(qs), Some(ks), Some(vs)) = (
            strided(&qe, vr, vc, &at_q, &all),
            strided(&ke, vr, vc, &at_k, &all),
            strided(&ve, vr, vc, &at_k, &all),
        ) else {
            return Ok(None);
        };
        at.clear();
        // Scratch: visibility per tile, running max and sum per row, output sums per row.
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
        let ep = (width + PAD - 1) / PAD * PAD;
        // (f32: the node's dtype, checked above.)
        let scratch = |l: &mut Self, shape: Vec<DimExpr>| l.add_scratch(id, shape);
        let sbuf = scratch(
            self,
            vec![nt.clone(), DimExpr::constant(TQ), DimExpr::constant(TK)],
        );
        let mbuf = scratch(self, vec![nt.clone(), DimExpr::constant(TQ)]);
        let lbuf = scratch(self, vec![nt.clone(), DimExpr::constant(TQ)]);
        let obuf = scratch(self, vec![nt, DimExpr::constant(TQ), DimExpr::constant(ep)]);
        let wv = Expr::Var(w);
        let (rv, cv, ev) = (Expr::Var(row), Expr::Var(col), Expr::Var(e));
        let s_at = |r: Expr, c: Expr| add(mul(add(mul(wv.clone(), int(TQ)), r), int(TK)), c);
        let ml_at = |r: Expr| add(mul(wv.clone(), int(TQ)), r);
        let ob_at = |r: Expr, c: Expr| add(mul(add(mul(wv.clone(), int(TQ)), r), int(ep)), c);
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
        // Operands the mask reads (a block table, a key mask) are loaded where it is
        // evaluated: in the scan of a tile its bounds do not decide, and in the visibility.
        let mut read = |j: usize, idx: Vec<Expr>| self.mask_operand(&ins, j, idx);
        let visible = super::attn::mask_expr_with(
            mask,
            &add(q0.clone(), rv.clone()),
            &add(k0.clone(), cv.clone()),
            &lead,
            &mut read,
        )
        .map_err(|m| self.invalid(src, &format!("mask: {m}")))?;
        let f = |op, a, b| wbin(op, Ty::F32, a, b);
        // Init: m = −∞, l = 0, the output sums 0.
        let init = serial(
            row,
            rows.clone(),
            vec![
                store(mbuf, ml_at(rv.clone()), f32c(f64::NEG_INFINITY)),
                store(lbuf, ml_at(rv.clone()), f32c(0.0)),
                serial(
                    e,
                    int(ep),
                    vec![store(obuf, ob_at(rv.clone(), ev.clone()), f32c(0.0))],
                ),
            ],
        );
        // Whether any (row, col) of the tile is visible, and whether all of a full-width
        // tile is (then the tile step ignores the mask): from the mask's bounds over the
        // tile where they decide it, else by evaluating the mask at every entry.
        let (any, all) = (self.acc(Ty::Bool), self.acc(Ty::Bool));
        let last = |o: &Expr, n: &Expr| sub(add(o.clone(), n.clone()), int(1));
        let bound = super::mask_tile::truth(
            mask,
            &(q0.clone(), last(&q0, &rows)),
            &(k0.clone(), last(&k0, &cols)),
            &lead,
        );
        let full_width = wbin(BinaryOp::Eq, Ty::I64, cols.clone(), int(TK));
        let not = |x: Expr| Expr::Select {
            cond: Box::new(x),
            a: Box::new(Expr::Bool(false)),
            b: Box::new(Expr::Bool(true)),
        };
        let scan = vec![
            Stmt::Assign {
                acc: any,
                value: Expr::Bool(false),
            },
            Stmt::Assign {
                acc: all,
                value: full_width.clone(),
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
        let probe_mask = vec![
            Stmt::Assign {
                acc: any,
                value: not(bound.none.clone()),
            },
            Stmt::Assign {
                acc: all,
                value: wbin(BinaryOp::And, Ty::Bool, bound.all.clone(), full_width),
            },
            Stmt::If {
                cond: wbin(BinaryOp::And, Ty::Bool, not(bound.all), not(bound.none)),
                body: scan,
            },
        ];
        let not_all = not(Expr::Acc(all));
        // A tile hidden in part: its visibility (1 or 0) for the tile step.
        let vis = Stmt::If {
            cond: not_all.clone(),
            body: vec![serial(
                row,
                rows.clone(),
                vec![serial(
                    col,
                    cols.clone(),
                    vec![store(
                        sbuf,
                        s_at(rv.clone(), cv.clone()),
                        Expr::Select {
                            cond: Box::new(visible),
                            a: Box::new(f32c(1.0)),
                            b: Box::new(f32c(0.0)),
                        },
                    )],
                )],
            )],
        };
        let per_row = |buf: BufId| Strided {
            buf,
            offset: ml_at(int(0)),
            rows: int(1),
            cols: int(0),
        };
        let step = Stmt::AttnTile(Box::new(AttnTile {
            rows: rows.clone(),
            cols: cols.clone(),
            depth: dd,
            width: ee.clone(),
            scale,
            q: qs,
            k: ks,
            v: vs,
            out: Strided {
                buf: obuf,
                offset: ob_at(int(0), int(0)),
                rows: int(ep),
                cols: int(1),
            },
            max: per_row(mbuf),
            sum: per_row(lbuf),
            mask: Strided {
                buf: sbuf,
                offset: s_at(int(0), int(0)),
                rows: int(TK),
                cols: int(1),
            },
            masked: not_all,
        }));
        let mut tile = probe_mask;
        tile.push(Stmt::If {
            cond: Expr::Acc(any),
            body: vec![vis, step],
        });
        let nk = div(add(ss, int(TK - 1)), int(TK));
        // Finish: O = sums / l, NaN for a row with no visible key (l = 0).
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
                            load(obuf, ob_at(rv.clone(), ev.clone())),
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
