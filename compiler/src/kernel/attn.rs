//! Lowering of the optimizer's `attention` (and each `extract` of an `attention_lse`) to
//! direct loop nests (values as `ir/op.rs` states them; the tile sizes are a schedule and
//! change no value). No T × T matrix is materialised: every score is recomputed where it is
//! used, so the extra memory is O(1) per output element and the work is quadratic in T.
//! `linear_attn` is lowered to its recurrence in `linear_attn.rs`.

use super::access::int;
use super::lower::{Lowerer, serial, wbin, widen};
use super::{BufId, Expr, KernelError, Loop, Stmt, Ty, Var};
use crate::ir::mask::{Kind, Mask};
use crate::ir::{BinaryOp, NodeId, UnaryOp};

fn var(v: Var) -> Expr {
    Expr::Var(v)
}

fn assign(acc: super::Acc, value: Expr) -> Stmt {
    Stmt::Assign { acc, value }
}

impl Lowerer<'_> {
    /// `attention`, per query row (…, t): a first pass over the visible keys finds the
    /// row's max score m; then per column e one more pass sums p = e^{x − m} and p · v[s, e]
    /// and stores their quotient (NaN when no key is visible, as the interpreter gives).
    /// The score x = r(r(Σ_d q·k) · r(scale)) is recomputed in each pass. `src` is the node
    /// whose inputs are q, k, v (`id` itself, or the `attention_lse` that `id` extracts
    /// from); with `lse` the one column stored is m + log Σ e^{x − m} (−∞ with no key).
    pub(super) fn attention(
        &mut self,
        id: NodeId,
        out: BufId,
        src: NodeId,
        mask: &Mask,
        scale: f64,
        lse: bool,
    ) -> Result<Loop, KernelError> {
        if !lse && let Some(l) = self.flash(id, out, src, mask, scale)? {
            return Ok(l);
        }
        let ins = self.g.node(src).inputs.clone();
        let ty = self.ty(id);
        let shape = self.shapes[id.index()].clone();
        let r = shape.len();
        if !ty.is_float() || r < 2 || ins.len() < 3 {
            return Err(self.invalid(
                id,
                "expects float q: [..., T, D], k: [..., S, D], v: [..., S, E]",
            ));
        }
        let (rq, rk) = (
            self.shapes[ins[0].index()].len(),
            self.shapes[ins[1].index()].len(),
        );
        if rq < 2 || rk < 2 {
            return Err(self.invalid(id, "expects q and k of rank ≥ 2"));
        }
        let dd = self.shapes[ins[0].index()][rq - 1].clone();
        let ss = self.shapes[ins[1].index()][rk - 2].clone();
        let vars: Vec<Var> = shape.iter().map(|_| self.var()).collect();
        let (s, d) = (self.var(), self.var());
        let idx: Vec<Expr> = vars.iter().map(|v| var(*v)).collect();
        let lead = idx[..r - 2].to_vec();
        let t = idx[r - 2].clone();
        let e = idx[r - 1].clone();
        let mut load = |j: usize, idx: Vec<Expr>| self.mask_operand(&ins, j, idx);
        let visible = mask_expr_with(mask, &t, &var(s), &lead, &mut load)
            .map_err(|m| self.invalid(id, &format!("mask: {m}")))?;
        let operand = |l: &mut Self, k: usize, a: Expr, b: Expr| {
            let mut full = lead.clone();
            full.push(a);
            full.push(b);
            let x = ins[k];
            let bi = super::access::broadcast_index(&full, l.dims_of(x));
            l.access(x, &bi)
        };
        let qv = operand(self, 0, t.clone(), var(d))?;
        let kv = operand(self, 1, var(s), var(d))?;
        let vv = operand(self, 2, var(s), e.clone())?;
        let (dot, m, l, a) = (
            self.acc(Ty::F64),
            self.acc(Ty::F64),
            self.acc(Ty::F64),
            self.acc(Ty::F64),
        );
        // x = r(r(dot) · r(scale)), in f64.
        let rounded = Expr::Cast {
            from: Ty::F64,
            to: ty,
            x: Box::new(Expr::Acc(dot)),
        };
        let x = widen(wbin(BinaryOp::Mul, ty, rounded, Expr::Float(scale, ty)), ty);
        let score = |extra: Vec<Stmt>| {
            let mut body = vec![
                assign(dot, Expr::Float(0.0, Ty::F64)),
                serial(
                    d,
                    dd.clone(),
                    vec![assign(
                        dot,
                        wbin(
                            BinaryOp::Add,
                            Ty::F64,
                            Expr::Acc(dot),
                            wbin(
                                BinaryOp::Mul,
                                Ty::F64,
                                widen(qv.clone(), ty),
                                widen(kv.clone(), ty),
                            ),
                        ),
                    )],
                ),
            ];
            body.extend(extra);
            Stmt::If {
                cond: visible.clone(),
                body,
            }
        };
        let p = Expr::Unary {
            op: UnaryOp::Exp,
            ty: Ty::F64,
            x: Box::new(wbin(BinaryOp::Sub, Ty::F64, x.clone(), Expr::Acc(m))),
        };
        let first = serial(
            s,
            ss.clone(),
            vec![score(vec![assign(
                m,
                wbin(BinaryOp::Max, Ty::F64, Expr::Acc(m), x),
            )])],
        );
        let mut sums = vec![assign(
            l,
            wbin(BinaryOp::Add, Ty::F64, Expr::Acc(l), p.clone()),
        )];
        if !lse {
            sums.push(assign(
                a,
                wbin(
                    BinaryOp::Add,
                    Ty::F64,
                    Expr::Acc(a),
                    wbin(BinaryOp::Mul, Ty::F64, p, widen(vv, ty)),
                ),
            ));
        }
        let second = serial(s, ss, vec![score(sums)]);
        let (value, none) = if lse {
            let log = Expr::Unary {
                op: UnaryOp::Log,
                ty: Ty::F64,
                x: Box::new(Expr::Acc(l)),
            };
            (
                wbin(BinaryOp::Add, Ty::F64, Expr::Acc(m), log),
                f64::NEG_INFINITY,
            )
        } else {
            (
                wbin(BinaryOp::Div, Ty::F64, Expr::Acc(a), Expr::Acc(l)),
                f64::NAN,
            )
        };
        let quotient = Expr::Select {
            cond: Box::new(wbin(
                BinaryOp::Gt,
                Ty::F64,
                Expr::Acc(l),
                Expr::Float(0.0, Ty::F64),
            )),
            a: Box::new(value),
            b: Box::new(Expr::Float(none, Ty::F64)),
        };
        let column = vec![
            assign(l, Expr::Float(0.0, Ty::F64)),
            assign(a, Expr::Float(0.0, Ty::F64)),
            second,
            Stmt::Store {
                buf: out,
                index: super::access::flat(&idx, &shape),
                value: Expr::Cast {
                    from: Ty::F64,
                    to: ty,
                    x: Box::new(quotient),
                },
            },
        ];
        let body = vec![
            assign(m, Expr::Float(f64::NEG_INFINITY, Ty::F64)),
            first,
            serial(vars[r - 1], shape[r - 1].clone(), column),
        ];
        Ok(self.nest(&vars[..r - 1], &shape[..r - 1], body))
    }
}

impl Lowerer<'_> {
    /// Operand `j` of an attention with inputs `ins` at the i32 indices `idx`, as i32; 0
    /// outside it (the mask language's `operand(j, [...])`).
    pub(super) fn mask_operand(
        &mut self,
        ins: &[NodeId],
        j: usize,
        idx: Vec<Expr>,
    ) -> Result<Expr, String> {
        let x = *ins
            .get(j)
            .ok_or_else(|| format!("internal: reads operand {j}, which the node does not have"))?;
        let dims = self.shapes[x.index()].clone();
        if dims.len() != idx.len() {
            return Err(format!(
                "internal: reads operand {j} with {} indices, but it has rank {}",
                idx.len(),
                dims.len()
            ));
        }
        let wide: Vec<Expr> = idx
            .into_iter()
            .map(|i| Expr::Cast {
                from: Ty::I32,
                to: Ty::I64,
                x: Box::new(i),
            })
            .collect();
        let mut inside = Expr::Bool(true);
        for (i, n) in wide.iter().zip(&dims) {
            let ok = wbin(
                BinaryOp::And,
                Ty::Bool,
                wbin(BinaryOp::Ge, Ty::I64, i.clone(), int(0)),
                wbin(BinaryOp::Lt, Ty::I64, i.clone(), n.clone()),
            );
            inside = wbin(BinaryOp::And, Ty::Bool, inside, ok);
        }
        let from = self.ty(x);
        let v = self.access(x, &wide).map_err(|e| e.to_string())?;
        Ok(Expr::Select {
            cond: Box::new(inside),
            a: Box::new(Expr::Cast {
                from,
                to: Ty::I32,
                x: Box::new(v),
            }),
            b: Box::new(Expr::Int(0, Ty::I32)),
        })
    }
}

/// A mask's `operand(j, [...])` reads: operand j at the given i32 indices, as i32.
type OperandLoad<'a> = dyn FnMut(usize, Vec<Expr>) -> Result<Expr, String> + 'a;

/// The mask as a bool kernel expression at query `t`, key `s` and batch index `batch`,
/// with the interpreter's i32 semantics (kernel i32 arithmetic wraps like the mask's);
/// `load` gives the reads of the operands it names (`operand(j, [...])`).
pub(super) fn mask_expr_with(
    mask: &Mask,
    t: &Expr,
    s: &Expr,
    batch: &[Expr],
    load: &mut OperandLoad<'_>,
) -> Result<Expr, String> {
    match mask.kind()? {
        Kind::Bool => Ok(mask_node(mask, t, s, batch, load)?.0),
        Kind::Int => Err("the mask is an integer expression, expected a predicate".into()),
    }
}

fn mask_node(
    m: &Mask,
    t: &Expr,
    s: &Expr,
    batch: &[Expr],
    load: &mut OperandLoad<'_>,
) -> Result<(Expr, Kind), String> {
    let i32_of = |x: Expr| Expr::Cast {
        from: Ty::I64,
        to: Ty::I32,
        x: Box::new(x),
    };
    let b = |j: usize| batch.get(j).cloned().unwrap_or(int(0));
    Ok(match m {
        Mask::Q => (i32_of(t.clone()), Kind::Int),
        Mask::K => (i32_of(s.clone()), Kind::Int),
        Mask::Batch(j) => (i32_of(b(*j)), Kind::Int),
        Mask::Table(j, vs) => {
            // Nested selects on the index; past the end reads 0.
            let mut v = Expr::Int(0, Ty::I32);
            for (i, x) in vs.iter().enumerate().rev() {
                v = Expr::Select {
                    cond: Box::new(wbin(BinaryOp::Eq, Ty::I64, b(*j), int(i as i64))),
                    a: Box::new(Expr::Int(*x as i32 as i64, Ty::I32)),
                    b: Box::new(v),
                };
            }
            (v, Kind::Int)
        }
        Mask::Operand(j, idx) => {
            let mut at = Vec::with_capacity(idx.len());
            for x in idx {
                at.push(mask_node(x, t, s, batch, load)?.0);
            }
            (load(*j, at)?, Kind::Int)
        }
        Mask::Int(c) => (Expr::Int(*c as i32 as i64, Ty::I32), Kind::Int),
        Mask::Bool(v) => (Expr::Bool(*v), Kind::Bool),
        Mask::Not(x) => {
            let (x, _) = mask_node(x, t, s, batch, load)?;
            (
                Expr::Unary {
                    op: UnaryOp::Not,
                    ty: Ty::Bool,
                    x: Box::new(x),
                },
                Kind::Bool,
            )
        }
        Mask::Bin(op, x, y) => {
            let (x, k) = mask_node(x, t, s, batch, load)?;
            let (y, _) = mask_node(y, t, s, batch, load)?;
            let ty = match k {
                Kind::Int => Ty::I32,
                Kind::Bool => Ty::Bool,
            };
            let kind = if op.is_comparison() || ty == Ty::Bool {
                Kind::Bool
            } else {
                Kind::Int
            };
            (wbin(*op, ty, x, y), kind)
        }
    })
}
