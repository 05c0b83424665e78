//! The blocked lowering of an f32 `linear_attn` whose q, k and v are buffers read through
//! affine index maps: the root loop is parallel over (batch index, block of `BLOCK_W` columns
//! of V), each task one [`Stmt::Recur`] that the backend runs with the block's output sums in
//! vector registers and its [K, width] slice of the state in cache (the CPU backend:
//! `codegen/cpu/recur.rs`). Columns of V never meet (column e of S only sees column e of v
//! and of out), so blocks are independent. A decay g becomes its factors e^g (f32) first, in
//! a kernel of its own over [batch…, T(, K)], which the blocks then read; so does an operand
//! computed inline (e.g. a broadcast constant v). Every other `linear_attn` (f64, or inside
//! a `scan_fn` body) keeps the scalar recurrence of `linear_attn.rs`.

use super::access::{add, div, flat, int, min, mul, sub, unflatten};
use super::gemm::{coeff, subst};
use super::lower::{Lowerer, serial};
use super::{BufId, Expr, Loop, Recur, Sched, Stmt, Strided, Ty, Var};
use crate::ir::{BinaryOp, Graph, Literal, NodeId, Op, UnaryOp};

/// Columns of V per block (a multiple of every vector width the backend uses).
pub const BLOCK_W: i64 = 64;

/// An operand read as `buf[index]` with `index` affine in the loop variables.
struct Affine {
    buf: BufId,
    index: Expr,
}

impl Lowerer<'_> {
    /// The kernels of `linear_attn` node `id` in blocked form (the decay's factors first,
    /// when there is a decay), or `None` when it is not of that form.
    pub(super) fn linear_attn_blocked(
        &mut self,
        id: NodeId,
        out: BufId,
        strict: bool,
    ) -> Result<Option<Vec<Loop>>, super::KernelError> {
        self.blocked(id, out, strict, false)
    }

    /// The kernels of `div` node `div` whose numerator `num` and normaliser [`normalised`]
    /// found: the blocked recurrence of `num` writing `div`'s buffer, each task carrying the
    /// normaliser's state and dividing by it ([`Recur::norm`]).
    pub(super) fn linear_attn_normalised(
        &mut self,
        div: NodeId,
        out: BufId,
        num: NodeId,
    ) -> Result<Vec<Loop>, super::KernelError> {
        let Op::LinearAttn { strict, .. } = self.g.node(num).op else {
            return Err(self.invalid(div, "expects a linear_attn numerator"));
        };
        self.blocked(num, out, strict, true)?
            .ok_or_else(|| self.invalid(div, "expects f32 operands of one rank outside a body"))
    }

    /// The blocked kernels of `linear_attn` node `id` into `out`; with `norm`, divided by
    /// the normaliser (the same recurrence with v = 1).
    fn blocked(
        &mut self,
        id: NodeId,
        out: BufId,
        strict: bool,
        norm: bool,
    ) -> Result<Option<Vec<Loop>>, super::KernelError> {
        // Inside a `scan_fn` body buffers are remapped access by access (`scan_fn.rs`).
        if self.scope.is_some() {
            return Ok(None);
        }
        let ins = self.g.node(id).inputs.clone();
        if self.ty(id) != Ty::F32 || ins[..3].iter().any(|x| self.ty(*x) != Ty::F32) {
            return Ok(None);
        }
        let shape = self.shapes[id.index()].clone();
        let r = shape.len();
        if ins[..3].iter().any(|x| self.shapes[x.index()].len() != r) {
            return Ok(None);
        }
        let qshape = self.shapes[ins[0].index()].clone();
        let (tt, kd, vd) = (
            shape[r - 2].clone(),
            qshape[r - 1].clone(),
            shape[r - 1].clone(),
        );
        let lead_ext = shape[..r - 2].to_vec();
        // Each operand's index with a variable per axis: [batch…, t, c or e].
        let lead_vars: Vec<Var> = lead_ext.iter().map(|_| self.var()).collect();
        let (t, c) = (self.var(), self.var());
        let mut vars = lead_vars.clone();
        vars.extend([t, c]);
        let idx: Vec<Expr> = vars.iter().map(|v| Expr::Var(*v)).collect();
        let mut kernels = Vec::new();
        // q, k and v as affine reads of buffers (v with unit stride along V, for the vector
        // loads); an operand computed inline, or v with another stride, is first written
        // into a scratch buffer of its shape by a kernel of its own.
        let mut operand =
            |l: &mut Self, x: NodeId, unit: bool| -> Result<Affine, super::KernelError> {
                if let Expr::Load { buf, index } = l.access(x, &idx)?
                    && vars.iter().all(|v| coeff(&index, *v, &vars).is_some())
                    && (!unit || coeff(&index, c, &vars) == Some(int(1)))
                {
                    return Ok(Affine { buf, index: *index });
                }
                let xshape = l.shapes[x.index()].clone();
                let xdims = l.dims_of(x).to_vec();
                let buf = l.add_scratch(id, xdims);
                let (flat_v, last) = (l.var(), l.var());
                let mut xi = unflatten(Expr::Var(flat_v), &xshape[..r - 1]);
                xi.push(Expr::Var(last));
                let value = l.access(x, &xi)?;
                let store = Stmt::Store {
                    buf,
                    index: flat(&xi, &xshape),
                    value,
                };
                kernels.push(Loop {
                    var: flat_v,
                    extent: xshape[..r - 1].iter().cloned().fold(int(1), mul),
                    sched: Sched::Parallel,
                    body: vec![serial(last, xshape[r - 1].clone(), vec![store])],
                });
                Ok(Affine {
                    buf,
                    index: flat(&idx, &xshape),
                })
            };
        let q = operand(self, ins[0], false)?;
        let k = operand(self, ins[1], false)?;
        let v = operand(self, ins[2], true)?;
        let stride = |a: &Affine, v: Var| coeff(&a.index, v, &vars).expect("affine");
        // The decay factors D = e^g in f32, one kernel parallel over (batch…, t).
        let decay = match ins.get(3) {
            None => None,
            Some(&g) => {
                let channel = self.shapes[g.index()].len() == r;
                let gdims = self.dims_of(g).to_vec();
                let dbuf = self.add_scratch(id, gdims);
                let gshape = self.shapes[g.index()].clone();
                let rows = r - 1;
                let flat_v = self.var();
                let mut gi = unflatten(Expr::Var(flat_v), &gshape[..rows]);
                let gty = self.ty(g);
                let mut body_idx = gi.clone();
                let inner = channel.then(|| self.var());
                if let Some(cv) = inner {
                    gi.push(Expr::Var(cv));
                    body_idx.push(Expr::Var(cv));
                }
                let gv = self.access(g, &gi)?;
                let mut f = Expr::Unary {
                    op: UnaryOp::Exp,
                    ty: gty,
                    x: Box::new(gv),
                };
                if gty != Ty::F32 {
                    f = Expr::Cast {
                        from: gty,
                        to: Ty::F32,
                        x: Box::new(f),
                    };
                }
                let store = Stmt::Store {
                    buf: dbuf,
                    index: flat(&body_idx, &gshape),
                    value: f,
                };
                let body = match inner {
                    Some(cv) => vec![serial(cv, kd.clone(), vec![store])],
                    None => vec![store],
                };
                let extent = gshape[..rows].iter().cloned().fold(int(1), mul);
                kernels.push(Loop {
                    var: flat_v,
                    extent,
                    sched: Sched::Parallel,
                    body,
                });
                // D[batch…, t(, c)]: strides K and 1 per channel, 1 and 0 per step.
                let (dt, dc) = if channel {
                    (kd.clone(), int(1))
                } else {
                    (int(1), int(0))
                };
                Some((dbuf, gshape, dt, dc))
            }
        };
        let state = {
            let mut sdims = self.dims_of(id)[..r - 2].to_vec();
            sdims.push(self.dims_of(ins[0])[r - 1].clone());
            sdims.push(self.dims_of(id)[r - 1].clone());
            self.add_scratch(id, sdims)
        };
        // The normaliser's state: K floats per task, [batch…, blocks, K].
        let norm_buf = norm.then(|| {
            let vdim = self.dims_of(id)[r - 1].clone();
            let mut ndims = self.dims_of(id)[..r - 2].to_vec();
            ndims.push(vdim.ceil_div(BLOCK_W).unwrap_or(vdim));
            ndims.push(self.dims_of(ins[0])[r - 1].clone());
            self.add_scratch(id, ndims)
        });
        // The parallel loop over (batch index, block).
        let blocks = div(add(vd.clone(), int(BLOCK_W - 1)), int(BLOCK_W));
        let batches = lead_ext.iter().cloned().fold(int(1), mul);
        let task = self.var();
        let bidx = unflatten(div(Expr::Var(task), blocks.clone()), &lead_ext);
        let e0 = mul(
            super::access::rem(Expr::Var(task), blocks.clone()),
            int(BLOCK_W),
        );
        // Each operand's offset at (batch, t = 0, c = 0).
        let mut at: Vec<(Var, Expr)> = lead_vars.iter().copied().zip(bidx.clone()).collect();
        at.extend([(t, int(0)), (c, int(0))]);
        let view = |a: &Affine, col: Expr, cs: Expr| Strided {
            buf: a.buf,
            offset: add(subst(&a.index, &at), col),
            rows: stride(a, t),
            cols: cs,
        };
        let at_lead = |time: Expr, last: Expr| {
            let mut v = bidx.clone();
            v.push(time);
            v.push(last);
            v
        };
        let mut sshape = lead_ext.clone();
        sshape.push(kd.clone());
        sshape.push(vd.clone());
        let rec = Recur {
            steps: tt,
            rows: kd.clone(),
            width: min(int(BLOCK_W), sub(vd.clone(), e0.clone())),
            q: view(&q, int(0), stride(&q, c)),
            k: view(&k, int(0), stride(&k, c)),
            v: view(&v, e0.clone(), int(1)),
            out: Strided {
                buf: out,
                offset: flat(&at_lead(int(0), e0.clone()), &shape),
                rows: vd.clone(),
                cols: int(1),
            },
            state: Strided {
                buf: state,
                offset: flat(&at_lead(int(0), e0), &sshape),
                rows: vd,
                cols: int(1),
            },
            decay: decay.map(|(buf, gshape, dt, dc)| {
                let mut i = bidx.clone();
                i.resize(gshape.len(), int(0));
                Strided {
                    buf,
                    offset: flat(&i, &gshape),
                    rows: dt,
                    cols: dc,
                }
            }),
            strict,
            norm: norm_buf.map(|buf| Strided {
                buf,
                offset: mul(Expr::Var(task), kd.clone()),
                rows: int(0),
                cols: int(1),
            }),
        };
        kernels.push(Loop {
            var: task,
            extent: mul(batches, blocks),
            sched: Sched::Parallel,
            body: vec![Stmt::Recur(Box::new(rec))],
        });
        Ok(Some(kernels))
    }
}

/// The numerator and normaliser of `div` node `id` when it is a normalised causal linear
/// attention that one normalised [`Recur`] computes: `div(linear_attn(q, k, v(, g)),
/// linear_attn(q, k, ones(, g)))` in f32, both with the same q, k (and g) nodes, strict and
/// chunk, each used only by the division (and no output), the normaliser's v a constant 1
/// of width 1 (a `const`, through `broadcast` and `reshape`), the division of the
/// numerator's shape and not computed inline at its uses.
pub(super) fn normalised(
    g: &Graph,
    id: NodeId,
    uses: &[usize],
    outputs: &[NodeId],
    inline: &[bool],
) -> Option<(NodeId, NodeId)> {
    let n = g.node(id);
    if !matches!(n.op, Op::Binary(BinaryOp::Div)) || n.inputs.len() != 2 || inline[id.index()] {
        return None;
    }
    let (num, den) = (n.inputs[0], n.inputs[1]);
    let (a, b) = (g.node(num), g.node(den));
    let (
        Op::LinearAttn {
            chunk: ca,
            strict: sa,
        },
        Op::LinearAttn {
            chunk: cb,
            strict: sb,
        },
    ) = (&a.op, &b.op)
    else {
        return None;
    };
    let single = |x: NodeId| uses[x.index()] == 1 && !outputs.contains(&x);
    let f32_of = |x: NodeId| {
        g.node(x)
            .ty
            .tensor()
            .is_some_and(|t| Ty::of(t.dtype) == Ty::F32)
    };
    let shape = |x: NodeId| g.node(x).ty.tensor().map(|t| t.shape.clone());
    let (ns, ds) = (shape(num)?, shape(den)?);
    let r = ns.len();
    let same_inputs = a.inputs.len() == b.inputs.len()
        && a.inputs.len() >= 3
        && a.inputs[0] == b.inputs[0]
        && a.inputs[1] == b.inputs[1]
        && a.inputs.get(3) == b.inputs.get(3);
    if num == den || !same_inputs || ca != cb || sa != sb || !single(num) || !single(den) {
        return None;
    }
    let operands = [
        id,
        num,
        den,
        a.inputs[0],
        a.inputs[1],
        a.inputs[2],
        b.inputs[2],
    ];
    let ranks = operands
        .iter()
        .all(|x| shape(*x).is_some_and(|s| s.len() == r));
    let one = crate::ir::DimExpr::constant(1);
    let ones_width = ds.len() == r && r >= 2 && ds[..r - 1] == ns[..r - 1] && ds[r - 1] == one;
    (operands.iter().all(|x| f32_of(*x))
        && ranks
        && ones_width
        && shape(id)? == ns
        && is_one(g, b.inputs[2]))
    .then_some((num, den))
}

/// Whether node `id` is 1 everywhere: a float `const` 1, through `broadcast` and `reshape`.
fn is_one(g: &Graph, id: NodeId) -> bool {
    let n = g.node(id);
    match &n.op {
        Op::Const {
            value: Literal::Float(x),
            ..
        } => *x == 1.0,
        Op::Broadcast { .. } | Op::Reshape { .. } => is_one(g, n.inputs[0]),
        _ => false,
    }
}
