//! Tensor IR → kernel IR. Decides which nodes are materialised (fusion), folds views into
//! index maps, and builds one loop nest per materialised node.

use super::access::{add, and, broadcast_index, dim, flat, ge, int, lt, mul, sub, unflatten};
use super::{Acc, BufId, BufKind, Buffer, Expr, Kernel, Loop, Program, Sched, Stmt, Ty, Var};
use crate::ir::{BinaryOp, DimExpr, Distribution, Graph, Literal, NodeId, Op, ReduceOp, UnaryOp};
use thiserror::Error;

/// Why a graph cannot be lowered to kernels.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    #[error(
        "node {node} `{op}` is not supported by the CPU backend yet (it computes {ty}; the \
         interpreter runs it: --backend interp)"
    )]
    Unsupported {
        node: NodeId,
        op: String,
        ty: String,
    },
    #[error("node {node} `{op}`: {msg}")]
    Invalid {
        node: NodeId,
        op: String,
        msg: String,
    },
}

/// Lowers a verified graph to a kernel program, then schedules its inner loops
/// (`schedule.rs`). `fused` groups are expanded first (`inline.rs`), so kernels are numbered
/// by the nodes of the expanded graph.
pub fn lower(g: &Graph) -> Result<Program, KernelError> {
    let g = super::inline::expand_fused(g)?;
    let g: &Graph = &g;
    let mut l = Lowerer::new(g)?;
    for i in 0..g.nodes.len() {
        l.node(NodeId(i as u32))?;
    }
    for (name, id) in &g.outputs {
        let b = l.buf_of[id.index()].ok_or_else(|| l.invalid(*id, "an output without a buffer"))?;
        l.prog.outputs.push((name.clone(), b));
    }
    let mut prog = l.prog;
    super::schedule::schedule(&mut prog);
    Ok(prog)
}

/// Whether a node's value is computed inline at its uses rather than stored.
fn inlinable(g: &Graph, id: NodeId, consumers: &[Vec<NodeId>], outputs: &[NodeId]) -> bool {
    if outputs.contains(&id) {
        return false;
    }
    let elementwise = |op: &Op| {
        matches!(
            op,
            Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast { .. }
        )
    };
    match &g.node(id).op {
        Op::Const { .. }
        | Op::Iota { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. } => true,
        // A single-use elementwise producer of its consumer's type (so not broadcast by it)
        // is computed at its use when the consumer is elementwise or a `scan`, which reads
        // each element once.
        op if elementwise(op) => match consumers[id.index()].as_slice() {
            [c] => {
                (elementwise(&g.node(*c).op) || matches!(g.node(*c).op, Op::Scan { .. }))
                    && g.ty(*c) == g.ty(id)
            }
            _ => false,
        },
        _ => false,
    }
}

pub(super) struct Lowerer<'g> {
    pub(super) g: &'g Graph,
    pub(super) prog: Program,
    pub(super) buf_of: Vec<Option<BufId>>,
    inline: Vec<bool>,
    /// Per einsum, the operand position of the `scan` it computes itself, if any.
    absorbed: Vec<Option<usize>>,
    /// Per `div`, the numerator and normaliser it computes itself (`recur.rs`), if any.
    normalised: Vec<Option<(NodeId, NodeId)>>,
    /// Per node, its shape as expressions.
    pub(super) shapes: Vec<Vec<Expr>>,
    /// The kernel being built: its variables and accumulators.
    pub(super) vars: u32,
    pub(super) accs: Vec<Ty>,
    /// Set when lowering a `scan_fn` body (`scan_fn.rs`): how its inputs are read and where
    /// its outputs go.
    pub(super) scope: Option<super::scan_fn::BodyScope>,
}

impl<'g> Lowerer<'g> {
    pub(super) fn new(g: &'g Graph) -> Result<Self, KernelError> {
        let mut consumers = vec![Vec::new(); g.nodes.len()];
        for (i, n) in g.nodes.iter().enumerate() {
            // One entry per use: `e * e` uses `e` twice and so does not inline it.
            for x in &n.inputs {
                consumers[x.index()].push(NodeId(i as u32));
            }
        }
        let outputs: Vec<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
        let mut shapes = Vec::with_capacity(g.nodes.len());
        let mut inline = Vec::with_capacity(g.nodes.len());
        for (i, n) in g.nodes.iter().enumerate() {
            let id = NodeId(i as u32);
            let op = n.op.name().to_string();
            if matches!(n.op, Op::AttentionLse { .. } | Op::ScanFn { .. }) {
                // A tuple with no buffer: each `extract` of an `attention_lse` is computed by
                // its own kernel; a `scan_fn` writes the buffers of its extracts.
                shapes.push(Vec::new());
                inline.push(false);
                continue;
            }
            let Some(t) = n.ty.tensor() else {
                return Err(KernelError::Unsupported {
                    node: id,
                    op,
                    ty: n.ty.to_string(),
                });
            };
            let s = t
                .shape
                .iter()
                .map(|d| dim(d, &g.dims))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|msg| KernelError::Invalid {
                    node: id,
                    op: op.clone(),
                    msg,
                })?;
            shapes.push(s);
            inline.push(inlinable(g, id, &consumers, &outputs));
        }
        // A scan absorbed by its einsum (`scan_einsum.rs`) gets no kernel of its own.
        let uses: Vec<usize> = consumers.iter().map(Vec::len).collect();
        let absorbed: Vec<Option<usize>> = (0..g.nodes.len())
            .map(|i| super::scan_einsum::absorbed_scan(g, NodeId(i as u32), &uses, &outputs))
            .collect();
        for (i, p) in absorbed.iter().enumerate() {
            if let Some(p) = p {
                inline[g.nodes[i].inputs[*p].index()] = true;
            }
        }
        // A normalised linear attention: the division runs both recurrences (`recur.rs`).
        let normalised: Vec<Option<(NodeId, NodeId)>> = (0..g.nodes.len())
            .map(|i| super::recur::normalised(g, NodeId(i as u32), &uses, &outputs, &inline))
            .collect();
        Ok(Lowerer {
            g,
            prog: Program {
                dims: g.dims.clone(),
                buffers: Vec::new(),
                kernels: Vec::new(),
                outputs: Vec::new(),
            },
            buf_of: vec![None; g.nodes.len()],
            inline,
            absorbed,
            normalised,
            shapes,
            vars: 0,
            accs: Vec::new(),
            scope: None,
        })
    }

    pub(super) fn invalid(&self, id: NodeId, msg: &str) -> KernelError {
        KernelError::Invalid {
            node: id,
            op: self.g.node(id).op.name().to_string(),
            msg: msg.to_string(),
        }
    }

    pub(super) fn ty(&self, id: NodeId) -> Ty {
        Ty::of(self.g.tensor_ty(id).dtype)
    }

    pub(super) fn dims_of(&self, id: NodeId) -> &[DimExpr] {
        &self.g.tensor_ty(id).shape
    }

    pub(super) fn add_buffer(&mut self, id: NodeId, kind: BufKind) -> BufId {
        if let Some(b) = self.scoped_buffer(id, &kind) {
            self.buf_of[id.index()] = Some(b);
            return b;
        }
        let t = self.g.tensor_ty(id);
        let b = BufId(self.prog.buffers.len() as u32);
        self.prog.buffers.push(Buffer {
            kind,
            dtype: t.dtype,
            shape: t.shape.clone(),
            node: id,
        });
        self.buf_of[id.index()] = Some(b);
        b
    }

    /// A scratch arena buffer of `shape` in node `id`'s dtype, for a kernel's own state (it
    /// does not become the node's value).
    pub(super) fn add_scratch(&mut self, id: NodeId, shape: Vec<DimExpr>) -> BufId {
        let dtype = self.g.tensor_ty(id).dtype;
        self.add_scratch_of(id, shape, dtype)
    }

    /// A scratch buffer of node `id` with its own dtype (indices, counts).
    pub(super) fn add_scratch_of(
        &mut self,
        id: NodeId,
        shape: Vec<DimExpr>,
        dtype: seqc_runtime::DType,
    ) -> BufId {
        let b = BufId(self.prog.buffers.len() as u32);
        self.prog.buffers.push(Buffer {
            kind: BufKind::Temp,
            dtype,
            shape,
            node: id,
        });
        b
    }

    pub(super) fn var(&mut self) -> Var {
        self.vars += 1;
        Var(self.vars - 1)
    }

    pub(super) fn acc(&mut self, ty: Ty) -> Acc {
        self.accs.push(ty);
        Acc(self.accs.len() as u32 - 1)
    }

    /// Lowers one node: leaves get buffers, inlined nodes nothing, the rest a kernel.
    pub(super) fn node(&mut self, id: NodeId) -> Result<(), KernelError> {
        let n = self.g.node(id);
        match &n.op {
            Op::Input { .. } if self.is_bound(id) => return Ok(()),
            Op::ScanFn { .. } => return self.scan_fn(id),
            Op::Extract { .. } if self.buf_of[id.index()].is_some() => return Ok(()),
            Op::Input { name } => {
                self.add_buffer(id, BufKind::Input(name.clone()));
                return Ok(());
            }
            Op::Param { name } => {
                self.add_buffer(id, BufKind::Param(name.clone()));
                return Ok(());
            }
            Op::Random { dist, seed, .. } => {
                let normal = !matches!(dist, Distribution::Uniform);
                let torch = matches!(dist, Distribution::TorchNormal);
                self.add_buffer(
                    id,
                    BufKind::Random {
                        seed: *seed,
                        normal,
                        torch,
                    },
                );
                return Ok(());
            }
            Op::AttentionLse { .. } => return Ok(()),
            Op::LinearAttn { .. } if self.in_normalised(id) => return Ok(()),
            _ if self.inline[id.index()] => return Ok(()),
            _ => {}
        }
        self.vars = self.var_base();
        self.accs.clear();
        let out = self.add_buffer(id, BufKind::Temp);
        let kernels = match &n.op {
            Op::Binary(BinaryOp::Div)
                if self.scope.is_none() && self.normalised[id.index()].is_some() =>
            {
                let (num, _) = self.normalised[id.index()].expect("checked");
                self.linear_attn_normalised(id, out, num)?
            }
            Op::Const { .. }
            | Op::Iota { .. }
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Cast { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::Take { .. }
            | Op::Gather { .. } => {
                let shape = self.shapes[id.index()].clone();
                vec![self.map_kernel(out, &shape, |l, idx| l.compute(id, idx))?]
            }
            Op::Reduce { op, axes, keepdim } => vec![self.reduce(id, out, *op, axes, *keepdim)?],
            Op::Einsum { spec } => match self.absorbed[id.index()] {
                Some(p) => vec![self.scan_einsum(id, out, p)?],
                None => vec![self.einsum(id, out, spec)?],
            },
            Op::Scan { axis, reverse } => vec![self.scan(id, out, *axis, *reverse)?],
            Op::ScanMatrix { axis } => vec![self.scan_matrix(id, out, *axis)?],
            Op::Conv1dCausal => vec![self.conv1d(id, out)?],
            Op::GroupedMatmul => self.grouped_matmul(id, out)?,
            Op::ArgMax { axis } => vec![self.argmax(id, out, *axis)?],
            Op::Sort { axis, descending } => {
                vec![self.rank_select(id, out, *axis, *descending, None, false)?]
            }
            Op::Argsort { axis, descending } => {
                vec![self.rank_select(id, out, *axis, *descending, None, true)?]
            }
            Op::TopK {
                axis,
                k,
                largest,
                indices,
            } => {
                let k = self.dimx(id, k)?;
                vec![self.rank_select(id, out, *axis, *largest, Some(k), *indices)?]
            }
            Op::ScatterAdd { axis } => self.scatter_add(id, out, *axis)?,
            Op::LinearAttn { strict, .. } => self.linear_attn(id, out, *strict)?,
            Op::Attention { mask, scale, .. } => {
                vec![self.attention(id, out, id, mask, *scale, false)?]
            }
            Op::Extract { index } => {
                let src = n.inputs[0];
                match &self.g.node(src).op {
                    Op::AttentionLse { mask, scale, .. } if *index < 2 => {
                        vec![self.attention(id, out, src, mask, *scale, *index == 1)?]
                    }
                    _ => {
                        return Err(KernelError::Unsupported {
                            node: id,
                            op: n.op.name().to_string(),
                            ty: n.ty.to_string(),
                        });
                    }
                }
            }
            _ => {
                return Err(KernelError::Unsupported {
                    node: id,
                    op: n.op.name().to_string(),
                    ty: n.ty.to_string(),
                });
            }
        };
        for root in kernels {
            self.push_kernel(id, root);
        }
        Ok(())
    }

    /// Whether `linear_attn` node `id` is computed by a normalised division (never inside a
    /// `scan_fn` body, where the blocked form does not apply).
    fn in_normalised(&self, id: NodeId) -> bool {
        self.scope.is_none()
            && self
                .normalised
                .iter()
                .flatten()
                .any(|(a, b)| *a == id || *b == id)
    }

    /// Appends a kernel computing node `id` with the current accumulators.
    pub(super) fn push_kernel(&mut self, id: NodeId, root: Loop) {
        let op = self.g.node(id).op.name();
        let name = format!(
            "k{}_{}",
            self.prog.kernels.len(),
            op.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        self.prog.kernels.push(Kernel {
            name,
            node: id,
            op: op.to_string(),
            accs: self.accs.clone(),
            root,
        });
    }

    /// A loop nest over `shape` (outermost parallel) storing `f(idx)` into `out`.
    pub(super) fn map_kernel(
        &mut self,
        out: BufId,
        shape: &[Expr],
        f: impl FnOnce(&mut Self, &[Expr]) -> Result<Expr, KernelError>,
    ) -> Result<Loop, KernelError> {
        let vars: Vec<Var> = shape.iter().map(|_| self.var()).collect();
        let idx: Vec<Expr> = vars.iter().map(|v| Expr::Var(*v)).collect();
        let value = f(self, &idx)?;
        let store = Stmt::Store {
            buf: out,
            index: flat(&idx, shape),
            value,
        };
        Ok(self.nest(&vars, shape, vec![store]))
    }

    /// Nests `body` in loops over `vars` with `extents`, whose iterations are independent
    /// (every caller's `vars` index its output). The outer ones are merged into one parallel
    /// root loop, so that B = 1 still spreads over the threads: all but the innermost, which
    /// stays a loop (vectorised, and the merged indices — a division each — are computed
    /// once per row, not per element); both of two when `body` has a loop of its own (a
    /// reduction's, which pays for the divisions); all but two when the innermost extent is
    /// a small constant. The merged indices are recomputed from the
    /// root's variable into accumulators at the top of its body. A rank-0 nest gets a
    /// one-iteration root loop.
    pub(super) fn nest(&mut self, vars: &[Var], extents: &[Expr], body: Vec<Stmt>) -> Loop {
        let has_loop = body.iter().any(|s| matches!(s, Stmt::Loop(_)));
        // An innermost row of a few constant elements (unrolled) keeps the loop above it too.
        let short =
            matches!(extents.last(), Some(Expr::Int(n, _)) if *n <= super::schedule::MAX_UNROLL);
        let merged = if has_loop && vars.len() == 2 {
            2
        } else {
            vars.len().saturating_sub(if short { 2 } else { 1 })
        };
        if merged >= 2 {
            return self.merged_nest(vars, extents, body, merged);
        }
        let mut body = body;
        for k in (1..vars.len()).rev() {
            body = vec![serial(vars[k], extents[k].clone(), body)];
        }
        match vars.first() {
            Some(v) => Loop {
                var: *v,
                extent: extents[0].clone(),
                sched: Sched::Parallel,
                body,
            },
            None => {
                let v = self.var();
                Loop {
                    var: v,
                    extent: int(1),
                    sched: Sched::Parallel,
                    body,
                }
            }
        }
    }

    /// `nest` with the first `merged` of `vars` folded into one parallel root loop.
    fn merged_nest(
        &mut self,
        vars: &[Var],
        extents: &[Expr],
        body: Vec<Stmt>,
        merged: usize,
    ) -> Loop {
        let mut body = body;
        for k in (merged..vars.len()).rev() {
            body = vec![serial(vars[k], extents[k].clone(), body)];
        }
        let root = self.var();
        let outer = &extents[..merged];
        let mut head = Vec::with_capacity(merged);
        for (v, i) in vars[..merged].iter().zip(unflatten(Expr::Var(root), outer)) {
            let a = self.acc(Ty::I64);
            for s in &mut body {
                super::subst::in_stmt(s, *v, &Expr::Acc(a));
            }
            head.push(Stmt::Assign { acc: a, value: i });
        }
        head.extend(body);
        Loop {
            var: root,
            extent: outer.iter().cloned().fold(int(1), mul),
            sched: Sched::Parallel,
            body: head,
        }
    }

    /// The value of node `id` at `idx`: a load when it is materialised, else its expression.
    pub(super) fn access(&mut self, id: NodeId, idx: &[Expr]) -> Result<Expr, KernelError> {
        if let Some(e) = self.bound_access(id, idx) {
            return Ok(e);
        }
        match self.buf_of[id.index()] {
            Some(b) => Ok(Expr::Load {
                buf: b,
                index: Box::new(flat(idx, &self.shapes[id.index()])),
            }),
            _ => self.compute(id, idx),
        }
    }

    /// Node `id`'s value at `idx` computed from its inputs.
    fn compute(&mut self, id: NodeId, idx: &[Expr]) -> Result<Expr, KernelError> {
        let n = self.g.node(id);
        let ins = n.inputs.clone();
        let ty = self.ty(id);
        let operand = |l: &mut Self, k: usize| -> Result<Expr, KernelError> {
            let x = ins[k];
            let bi = broadcast_index(idx, l.dims_of(x));
            l.access(x, &bi)
        };
        Ok(match &n.op {
            Op::Const { value, .. } => literal(*value, ty),
            Op::Iota { axis, .. } => Expr::Cast {
                from: Ty::I64,
                to: ty,
                x: Box::new(idx[*axis].clone()),
            },
            Op::Unary(u) => Expr::Unary {
                op: *u,
                ty,
                x: Box::new(operand(self, 0)?),
            },
            Op::Binary(b) => Expr::Binary {
                op: *b,
                ty: self.ty(ins[0]),
                a: Box::new(operand(self, 0)?),
                b: Box::new(operand(self, 1)?),
            },
            Op::Select => Expr::Select {
                cond: Box::new(operand(self, 0)?),
                a: Box::new(operand(self, 1)?),
                b: Box::new(operand(self, 2)?),
            },
            Op::Cast { .. } => Expr::Cast {
                from: self.ty(ins[0]),
                to: ty,
                x: Box::new(operand(self, 0)?),
            },
            Op::Reshape { .. } => {
                let f = flat(idx, &self.shapes[id.index()]);
                let x = ins[0];
                match self.buf_of[x.index()] {
                    Some(b) => Expr::Load {
                        buf: b,
                        index: Box::new(f),
                    },
                    _ => {
                        let xi = match unit_reshape(idx, self.dims_of(x), self.dims_of(id)) {
                            Some(xi) => xi,
                            None => unflatten(f, &self.shapes[x.index()]),
                        };
                        self.access(x, &xi)?
                    }
                }
            }
            Op::Transpose { perm } => {
                let mut xi = vec![int(0); perm.len()];
                for (i, p) in perm.iter().enumerate() {
                    xi[*p] = idx[i].clone();
                }
                self.access(ins[0], &xi)?
            }
            Op::Broadcast { .. } => operand(self, 0)?,
            Op::Slice {
                axis, start, step, ..
            } => {
                let mut xi = idx.to_vec();
                let s = self.dimx(id, start)?;
                xi[*axis] = add(s, mul(idx[*axis].clone(), int(*step)));
                self.access(ins[0], &xi)?
            }
            Op::Concat { axis } => {
                // Nested selects on the position along `axis`, last operand innermost.
                let mut offsets = vec![int(0)];
                for x in &ins {
                    let o = add(
                        offsets.last().expect("non-empty").clone(),
                        self.shapes[x.index()][*axis].clone(),
                    );
                    offsets.push(o);
                }
                let mut value: Option<Expr> = None;
                for (k, x) in ins.iter().enumerate().rev() {
                    let mut xi = idx.to_vec();
                    xi[*axis] = sub(idx[*axis].clone(), offsets[k].clone());
                    let v = self.access(*x, &xi)?;
                    value = Some(match value {
                        None => v,
                        Some(rest) => Expr::Select {
                            cond: Box::new(lt(idx[*axis].clone(), offsets[k + 1].clone())),
                            a: Box::new(v),
                            b: Box::new(rest),
                        },
                    });
                }
                value.ok_or_else(|| self.invalid(id, "concat without operands"))?
            }
            Op::Pad {
                axis,
                before,
                value,
                ..
            } => {
                let b = self.dimx(id, before)?;
                let n = self.shapes[ins[0].index()][*axis].clone();
                let i = idx[*axis].clone();
                let inside = and(ge(i.clone(), b.clone()), lt(i.clone(), add(b.clone(), n)));
                let mut xi = idx.to_vec();
                xi[*axis] = sub(i, b);
                Expr::Select {
                    cond: Box::new(inside),
                    a: Box::new(self.access(ins[0], &xi)?),
                    b: Box::new(literal(*value, ty)),
                }
            }
            Op::Take { axis } => {
                let (x, ix) = (ins[0], ins[1]);
                let k = self.dims_of(ix).len();
                let j = self.access(ix, &idx[*axis..*axis + k])?;
                let mut xi = idx[..*axis].to_vec();
                xi.push(self.checked(ix, j, x, *axis));
                xi.extend_from_slice(&idx[*axis + k..]);
                self.access(x, &xi)?
            }
            Op::Gather { axis } => {
                let (x, ix) = (ins[0], ins[1]);
                let j = self.access(ix, idx)?;
                let mut xi = idx.to_vec();
                xi[*axis] = self.checked(ix, j, x, *axis);
                self.access(x, &xi)?
            }
            _ => return Err(self.invalid(id, "internal: not an elementwise or view operator")),
        })
    }

    /// An index value `j` read from node `ix`, checked against axis `axis` of `x`.
    fn checked(&self, ix: NodeId, j: Expr, x: NodeId, axis: usize) -> Expr {
        Expr::Checked {
            index: Box::new(Expr::Cast {
                from: self.ty(ix),
                to: Ty::I64,
                x: Box::new(j),
            }),
            len: Box::new(self.shapes[x.index()][axis].clone()),
        }
    }

    pub(super) fn dimx(&self, id: NodeId, d: &DimExpr) -> Result<Expr, KernelError> {
        dim(d, &self.g.dims).map_err(|m| self.invalid(id, &m))
    }

    fn reduce(
        &mut self,
        id: NodeId,
        out: BufId,
        op: ReduceOp,
        axes: &[usize],
        keepdim: bool,
    ) -> Result<Loop, KernelError> {
        let x = self.g.node(id).inputs[0];
        let (xty, ty) = (self.ty(x), self.ty(id));
        if xty == Ty::Bool || (xty.is_int() && matches!(op, ReduceOp::Mean | ReduceOp::LogSumExp)) {
            return Err(self.invalid(id, &format!("does not accept dtype {}", xty.name())));
        }
        let xs = self.shapes[x.index()].clone();
        let out_shape = self.shapes[id.index()].clone();
        let ovars: Vec<Var> = out_shape.iter().map(|_| self.var()).collect();
        let mut xi = Vec::new();
        let (mut rvars, mut rext) = (Vec::new(), Vec::new());
        let mut o = 0;
        for (i, d) in xs.iter().enumerate() {
            if axes.contains(&i) {
                let v = self.var();
                rvars.push(v);
                rext.push(d.clone());
                xi.push(Expr::Var(v));
                if keepdim {
                    o += 1;
                }
            } else {
                xi.push(Expr::Var(ovars[o]));
                o += 1;
            }
        }
        let wide = xty.wide();
        let xv = Expr::Cast {
            from: xty,
            to: wide,
            x: Box::new(self.access(x, &xi)?),
        };
        let a = self.acc(wide);
        let fold = |op: BinaryOp, v: Expr| Stmt::Assign {
            acc: a,
            value: wbin(op, wide, Expr::Acc(a), v),
        };
        let (init, step) = match op {
            ReduceOp::Sum | ReduceOp::Mean => (zero(wide), fold(BinaryOp::Add, xv.clone())),
            ReduceOp::Max => (lowest(wide), fold(BinaryOp::Max, xv.clone())),
            ReduceOp::Min => (highest(wide), fold(BinaryOp::Min, xv.clone())),
            ReduceOp::LogSumExp => (lowest(wide), fold(BinaryOp::Max, xv.clone())),
        };
        let mut body = vec![
            Stmt::Assign {
                acc: a,
                value: init,
            },
            nest_serial(&rvars, &rext, vec![step]),
        ];
        let result = match op {
            ReduceOp::Mean => {
                let count = rext.iter().fold(int(1), |c, d| mul(c, d.clone()));
                wbin(
                    BinaryOp::Div,
                    Ty::F64,
                    Expr::Acc(a),
                    Expr::Cast {
                        from: Ty::I64,
                        to: Ty::F64,
                        x: Box::new(count),
                    },
                )
            }
            ReduceOp::LogSumExp => {
                let s = self.acc(Ty::F64);
                let e = Expr::Unary {
                    op: UnaryOp::Exp,
                    ty: Ty::F64,
                    x: Box::new(wbin(BinaryOp::Sub, Ty::F64, xv, Expr::Acc(a))),
                };
                body.push(Stmt::Assign {
                    acc: s,
                    value: Expr::Float(0.0, Ty::F64),
                });
                body.push(nest_serial(
                    &rvars,
                    &rext,
                    vec![Stmt::Assign {
                        acc: s,
                        value: wbin(BinaryOp::Add, Ty::F64, Expr::Acc(s), e),
                    }],
                ));
                let log = Expr::Unary {
                    op: UnaryOp::Log,
                    ty: Ty::F64,
                    x: Box::new(Expr::Acc(s)),
                };
                Expr::Select {
                    cond: Box::new(wbin(
                        BinaryOp::Eq,
                        Ty::F64,
                        Expr::Acc(a),
                        Expr::Float(f64::NEG_INFINITY, Ty::F64),
                    )),
                    a: Box::new(Expr::Float(f64::NEG_INFINITY, Ty::F64)),
                    b: Box::new(wbin(BinaryOp::Add, Ty::F64, Expr::Acc(a), log)),
                }
            }
            _ => Expr::Acc(a),
        };
        let oidx: Vec<Expr> = ovars.iter().map(|v| Expr::Var(*v)).collect();
        body.push(Stmt::Store {
            buf: out,
            index: flat(&oidx, &out_shape),
            value: Expr::Cast {
                from: wide,
                to: ty,
                x: Box::new(result),
            },
        });
        Ok(self.nest(&ovars, &out_shape, body))
    }

    fn einsum(&mut self, id: NodeId, out: BufId, spec: &str) -> Result<Loop, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let (lhs, rhs) = spec
            .split_once("->")
            .ok_or_else(|| self.invalid(id, "spec without `->`"))?;
        let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
        if terms.len() != ins.len() {
            return Err(self.invalid(id, "spec and operands disagree"));
        }
        let mut letters: Vec<(char, Expr, Var)> = Vec::new();
        for (t, x) in terms.iter().zip(&ins) {
            for (c, d) in t.iter().zip(self.shapes[x.index()].clone()) {
                if !letters.iter().any(|(l, ..)| l == c) {
                    let v = self.var();
                    letters.push((*c, d, v));
                }
            }
        }
        let rchars: Vec<char> = rhs.chars().collect();
        if let Some(l) = self.gemm(id, out, &terms, &rchars, &letters)? {
            return Ok(l);
        }
        let find = |c: char| letters.iter().find(|(l, ..)| *l == c).cloned();
        let (mut ovars, mut oext) = (Vec::new(), Vec::new());
        for c in rhs.chars() {
            let (_, d, v) =
                find(c).ok_or_else(|| self.invalid(id, "an output letter is in no operand"))?;
            ovars.push(v);
            oext.push(d);
        }
        let (mut svars, mut sext) = (Vec::new(), Vec::new());
        for (c, d, v) in &letters {
            if !rhs.contains(*c) {
                svars.push(*v);
                sext.push(d.clone());
            }
        }
        let (xty, ty) = (self.ty(ins[0]), self.ty(id));
        if !(xty.is_float() || xty.is_int()) {
            return Err(self.invalid(id, "einsum of bool"));
        }
        let wide = xty.wide();
        let mut prod: Option<Expr> = None;
        for (t, x) in terms.iter().zip(&ins) {
            let xi: Vec<Expr> = t
                .iter()
                .map(|c| Expr::Var(find(*c).expect("collected").2))
                .collect();
            let v = Expr::Cast {
                from: self.ty(*x),
                to: wide,
                x: Box::new(self.access(*x, &xi)?),
            };
            prod = Some(match prod {
                None => v,
                Some(p) => wbin(BinaryOp::Mul, wide, p, v),
            });
        }
        let prod = prod.ok_or_else(|| self.invalid(id, "einsum without operands"))?;
        let a = self.acc(wide);
        let oidx: Vec<Expr> = ovars.iter().map(|v| Expr::Var(*v)).collect();
        let body = vec![
            Stmt::Assign {
                acc: a,
                value: zero(wide),
            },
            nest_serial(
                &svars,
                &sext,
                vec![Stmt::Assign {
                    acc: a,
                    value: wbin(BinaryOp::Add, wide, Expr::Acc(a), prod),
                }],
            ),
            Stmt::Store {
                buf: out,
                index: flat(&oidx, &oext),
                value: Expr::Cast {
                    from: wide,
                    to: ty,
                    x: Box::new(Expr::Acc(a)),
                },
            },
        ];
        Ok(self.nest(&ovars, &oext, body))
    }

    /// h_t = a_t ⊙ h_{t−1} + b_t, each h rounded to the dtype.
    fn scan(
        &mut self,
        id: NodeId,
        out: BufId,
        axis: usize,
        reverse: bool,
    ) -> Result<Loop, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        if !ty.is_float() {
            return Err(self.invalid(id, "scan of a non-float"));
        }
        let shape = self.shapes[id.index()].clone();
        let vars: Vec<Var> = shape.iter().map(|_| self.var()).collect();
        let t = vars[axis];
        let len = shape[axis].clone();
        let tt = if reverse {
            sub(sub(len.clone(), int(1)), Expr::Var(t))
        } else {
            Expr::Var(t)
        };
        let mut idx: Vec<Expr> = vars.iter().map(|v| Expr::Var(*v)).collect();
        idx[axis] = tt;
        let h = self.acc(ty);
        let init = match ins.get(2) {
            Some(h0) => {
                let mut hi = idx.clone();
                hi.remove(axis);
                self.access(*h0, &hi)?
            }
            None => Expr::Float(0.0, ty),
        };
        let av = self.access(ins[0], &broadcast_index(&idx, self.dims_of(ins[0])))?;
        let bv = self.access(ins[1], &idx)?;
        let next = scan_step(av, Expr::Acc(h), bv, ty);
        let step = vec![
            Stmt::Assign {
                acc: h,
                value: next,
            },
            Stmt::Store {
                buf: out,
                index: flat(&idx, &shape),
                value: Expr::Acc(h),
            },
        ];
        let (ovars, oext) = without(&vars, &shape, axis);
        let body = vec![
            Stmt::Assign {
                acc: h,
                value: init,
            },
            serial(t, len, step),
        ];
        Ok(self.nest(&ovars, &oext, body))
    }

    /// h_t[n] = Σ_m a_t[n, m] h_{t−1}[m] + b_t[n]; h_{t−1} is read back from the output.
    fn scan_matrix(&mut self, id: NodeId, out: BufId, axis: usize) -> Result<Loop, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        let shape = self.shapes[id.index()].clone();
        if !ty.is_float() || shape.len() < 2 || axis != shape.len() - 2 {
            return Err(self.invalid(id, "expects a float [..., T, N] input"));
        }
        let vars: Vec<Var> = shape.iter().map(|_| self.var()).collect();
        let m = self.var();
        let (t, n) = (vars[axis], vars[axis + 1]);
        let nn = shape[axis + 1].clone();
        let idx: Vec<Expr> = vars.iter().map(|v| Expr::Var(*v)).collect();
        let mut ai = idx.clone();
        ai.push(Expr::Var(m));
        let mut prev = idx.clone();
        prev[axis] = sub(Expr::Var(t), int(1));
        prev[axis + 1] = Expr::Var(m);
        let h_prev = Expr::Load {
            buf: out,
            index: Box::new(flat(&prev, &shape)),
        };
        let h_init = match ins.get(2) {
            Some(h0) => {
                let mut hi = idx[..axis].to_vec();
                hi.push(Expr::Var(m));
                self.access(*h0, &hi)?
            }
            None => Expr::Float(0.0, ty),
        };
        let h = Expr::Select {
            cond: Box::new(lt(Expr::Var(t), int(1))),
            a: Box::new(h_init),
            b: Box::new(h_prev),
        };
        let av = self.access(ins[0], &ai)?;
        let bv = self.access(ins[1], &idx)?;
        let (s, [reset, sum]) = self.dot_f64(m, nn.clone(), av, h, ty);
        let inner = vec![
            reset,
            sum,
            Stmt::Store {
                buf: out,
                index: flat(&idx, &shape),
                value: Expr::Cast {
                    from: Ty::F64,
                    to: ty,
                    x: Box::new(wbin(BinaryOp::Add, Ty::F64, Expr::Acc(s), widen(bv, ty))),
                },
            },
        ];
        let body = vec![serial(t, shape[axis].clone(), vec![serial(n, nn, inner)])];
        Ok(self.nest(&vars[..axis], &shape[..axis], body))
    }

    /// `acc = Σ_{v < n} a·b` in f64 (a and b of type `ty`, widened): the accumulator and
    /// the two statements (reset, then the serial loop over `v`).
    pub(super) fn dot_f64(
        &mut self,
        v: Var,
        n: Expr,
        a: Expr,
        b: Expr,
        ty: Ty,
    ) -> (Acc, [Stmt; 2]) {
        let s = self.acc(Ty::F64);
        let reset = Stmt::Assign {
            acc: s,
            value: Expr::Float(0.0, Ty::F64),
        };
        let sum = serial(
            v,
            n,
            vec![Stmt::Assign {
                acc: s,
                value: wbin(
                    BinaryOp::Add,
                    Ty::F64,
                    Expr::Acc(s),
                    wbin(BinaryOp::Mul, Ty::F64, widen(a, ty), widen(b, ty)),
                ),
            }],
        );
        (s, [reset, sum])
    }

    /// out[..., t, c] = Σ_k w[c, k] · x[..., t − (K−1) + k, c].
    fn conv1d(&mut self, id: NodeId, out: BufId) -> Result<Loop, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        let shape = self.shapes[id.index()].clone();
        let r = shape.len();
        if !ty.is_float() || r < 2 {
            return Err(self.invalid(id, "expects a float [..., T, C] input"));
        }
        let kk = self.shapes[ins[1].index()][1].clone();
        let vars: Vec<Var> = shape.iter().map(|_| self.var()).collect();
        let j = self.var();
        let idx: Vec<Expr> = vars.iter().map(|v| Expr::Var(*v)).collect();
        let src = sub(
            add(idx[r - 2].clone(), Expr::Var(j)),
            sub(kk.clone(), int(1)),
        );
        let mut xi = idx.clone();
        xi[r - 2] = src.clone();
        let xv = self.access(ins[0], &xi)?;
        let wv = self.access(ins[1], &[idx[r - 1].clone(), Expr::Var(j)])?;
        let s = self.acc(Ty::F64);
        let term = Expr::Select {
            cond: Box::new(ge(src, int(0))),
            a: Box::new(wbin(BinaryOp::Mul, Ty::F64, widen(wv, ty), widen(xv, ty))),
            b: Box::new(Expr::Float(0.0, Ty::F64)),
        };
        let body = vec![
            Stmt::Assign {
                acc: s,
                value: Expr::Float(0.0, Ty::F64),
            },
            serial(
                j,
                kk,
                vec![Stmt::Assign {
                    acc: s,
                    value: wbin(BinaryOp::Add, Ty::F64, Expr::Acc(s), term),
                }],
            ),
            Stmt::Store {
                buf: out,
                index: flat(&idx, &shape),
                value: Expr::Cast {
                    from: Ty::F64,
                    to: ty,
                    x: Box::new(Expr::Acc(s)),
                },
            },
        ];
        Ok(self.nest(&vars, &shape, body))
    }

    /// The index of the first maximum along `axis`.
    fn argmax(&mut self, id: NodeId, out: BufId, axis: usize) -> Result<Loop, KernelError> {
        let x = self.g.node(id).inputs[0];
        let xty = self.ty(x);
        if xty == Ty::Bool {
            return Err(self.invalid(id, "argmax of bool"));
        }
        let wide = xty.wide();
        let out_shape = self.shapes[id.index()].clone();
        let ovars: Vec<Var> = out_shape.iter().map(|_| self.var()).collect();
        let j = self.var();
        let mut xi: Vec<Expr> = ovars.iter().map(|v| Expr::Var(*v)).collect();
        xi.insert(axis, Expr::Var(j));
        let xv = widen_to(self.access(x, &xi)?, xty, wide);
        let (best, at) = (self.acc(wide), self.acc(Ty::I64));
        let better = total_gt(wide, xv.clone(), Expr::Acc(best));
        let body = vec![
            Stmt::Assign {
                acc: best,
                value: lowest(wide),
            },
            Stmt::Assign {
                acc: at,
                value: int(0),
            },
            serial(
                j,
                self.shapes[x.index()][axis].clone(),
                vec![
                    Stmt::Assign {
                        acc: at,
                        value: Expr::Select {
                            cond: Box::new(better.clone()),
                            a: Box::new(Expr::Var(j)),
                            b: Box::new(Expr::Acc(at)),
                        },
                    },
                    Stmt::Assign {
                        acc: best,
                        value: Expr::Select {
                            cond: Box::new(better),
                            a: Box::new(xv),
                            b: Box::new(Expr::Acc(best)),
                        },
                    },
                ],
            ),
            Stmt::Store {
                buf: out,
                index: flat(
                    &ovars.iter().map(|v| Expr::Var(*v)).collect::<Vec<_>>(),
                    &out_shape,
                ),
                value: Expr::Cast {
                    from: Ty::I64,
                    to: self.ty(id),
                    x: Box::new(Expr::Acc(at)),
                },
            },
        ];
        Ok(self.nest(&ovars, &out_shape, body))
    }

    /// Sort, argsort and top-k by ranking: element i goes to position
    /// rank(i) = #{j : j comes before i in the stable order} (NaN largest, ties by index),
    /// written only when rank(i) < k. Quadratic in the axis length; a real sort comes later.
    fn rank_select(
        &mut self,
        id: NodeId,
        out: BufId,
        axis: usize,
        descending: bool,
        k: Option<Expr>,
        indices: bool,
    ) -> Result<Loop, KernelError> {
        let x = self.g.node(id).inputs[0];
        let xty = self.ty(x);
        let wide = xty.wide();
        let xs = self.shapes[x.index()].clone();
        let out_shape = self.shapes[id.index()].clone();
        let vars: Vec<Var> = xs.iter().map(|_| self.var()).collect();
        let j = self.var();
        let idx: Vec<Expr> = vars.iter().map(|v| Expr::Var(*v)).collect();
        let mut jdx = idx.clone();
        jdx[axis] = Expr::Var(j);
        let xi = widen_to(self.access(x, &idx)?, xty, wide);
        let xj = widen_to(self.access(x, &jdx)?, xty, wide);
        let first = if descending {
            total_gt(wide, xj.clone(), xi.clone())
        } else {
            total_gt(wide, xi.clone(), xj.clone())
        };
        let tie = and(total_eq(wide, xj, xi), lt(Expr::Var(j), idx[axis].clone()));
        let before = wbin(BinaryOp::Or, Ty::Bool, first, tie);
        let r = self.acc(Ty::I64);
        let mut oi = idx.clone();
        oi[axis] = Expr::Acc(r);
        let value = if indices {
            Expr::Cast {
                from: Ty::I64,
                to: self.ty(id),
                x: Box::new(idx[axis].clone()),
            }
        } else {
            self.access(x, &idx)?
        };
        let store = Stmt::Store {
            buf: out,
            index: flat(&oi, &out_shape),
            value,
        };
        let body = vec![
            Stmt::Assign {
                acc: r,
                value: int(0),
            },
            serial(
                j,
                xs[axis].clone(),
                vec![Stmt::Assign {
                    acc: r,
                    value: add(
                        Expr::Acc(r),
                        Expr::Cast {
                            from: Ty::Bool,
                            to: Ty::I64,
                            x: Box::new(before),
                        },
                    ),
                }],
            ),
            match k {
                Some(k) => Stmt::If {
                    cond: lt(Expr::Acc(r), k),
                    body: vec![store],
                },
                None => store,
            },
        ];
        Ok(self.nest(&vars, &xs, body))
    }

    /// Two kernels: copy the base, then add every source element at its index (serially:
    /// indices may repeat).
    fn scatter_add(
        &mut self,
        id: NodeId,
        out: BufId,
        axis: usize,
    ) -> Result<Vec<Loop>, KernelError> {
        let ins = self.g.node(id).inputs.clone();
        let ty = self.ty(id);
        if ty == Ty::Bool {
            return Err(self.invalid(id, "scatter_add of bool"));
        }
        let shape = self.shapes[id.index()].clone();
        let copy = self.map_kernel(out, &shape, |l, idx| l.access(ins[0], idx))?;
        let ishape = self.shapes[ins[1].index()].clone();
        let vars: Vec<Var> = ishape.iter().map(|_| self.var()).collect();
        let idx: Vec<Expr> = vars.iter().map(|v| Expr::Var(*v)).collect();
        let j = self.access(ins[1], &idx)?;
        let mut oi = idx.clone();
        oi[axis] = self.checked(ins[1], j, id, axis);
        let at = flat(&oi, &shape);
        let src = self.access(ins[2], &idx)?;
        let cur = Expr::Load {
            buf: out,
            index: Box::new(at.clone()),
        };
        let store = Stmt::Store {
            buf: out,
            index: at,
            value: Expr::Binary {
                op: BinaryOp::Add,
                ty,
                a: Box::new(cur),
                b: Box::new(src),
            },
        };
        let mut add_loop = self.nest(&vars, &ishape, vec![store]);
        add_loop.sched = Sched::Serial;
        Ok(vec![copy, add_loop])
    }
}

/// The index into a reshape's operand when the reshape only inserts or drops axes of size 1
/// (`unsqueeze`): the other axes map one to one, with no division by the shape.
fn unit_reshape(idx: &[Expr], from: &[DimExpr], to: &[DimExpr]) -> Option<Vec<Expr>> {
    let unit = |d: &&DimExpr| d.as_const() == Some(1);
    let kept = |s: &[DimExpr]| s.iter().filter(|d| !unit(d)).cloned().collect::<Vec<_>>();
    if kept(from) != kept(to) {
        return None;
    }
    let mut src = idx.iter().zip(to).filter(|(_, d)| !unit(d)).map(|(i, _)| i);
    from.iter()
        .map(|d| {
            if unit(&d) {
                Some(int(0))
            } else {
                src.next().cloned()
            }
        })
        .collect()
}

pub(super) fn serial(var: Var, extent: Expr, body: Vec<Stmt>) -> Stmt {
    Stmt::Loop(Loop {
        var,
        extent,
        sched: Sched::Serial,
        body,
    })
}

/// Serial loops over `vars` around a single statement (just it when there are none).
fn nest_serial(vars: &[Var], extents: &[Expr], body: Vec<Stmt>) -> Stmt {
    let mut body = body;
    for k in (0..vars.len()).rev() {
        body = vec![serial(vars[k], extents[k].clone(), body)];
    }
    debug_assert_eq!(body.len(), 1);
    body.pop().expect("one statement")
}

fn without(vars: &[Var], shape: &[Expr], axis: usize) -> (Vec<Var>, Vec<Expr>) {
    let mut v = vars.to_vec();
    let mut s = shape.to_vec();
    v.remove(axis);
    s.remove(axis);
    (v, s)
}

/// One step of a linear scan, h ← a·h + b, computed in f64 and rounded once to `ty` (as the
/// interpreter computes it).
pub(super) fn scan_step(a: Expr, h: Expr, b: Expr, ty: Ty) -> Expr {
    Expr::Cast {
        from: Ty::F64,
        to: ty,
        x: Box::new(wbin(
            BinaryOp::Add,
            Ty::F64,
            wbin(BinaryOp::Mul, Ty::F64, widen(a, ty), widen(h, ty)),
            widen(b, ty),
        )),
    }
}

pub(super) fn wbin(op: BinaryOp, ty: Ty, a: Expr, b: Expr) -> Expr {
    Expr::Binary {
        op,
        ty,
        a: Box::new(a),
        b: Box::new(b),
    }
}

pub(super) fn widen(x: Expr, from: Ty) -> Expr {
    widen_to(x, from, from.wide())
}

fn widen_to(x: Expr, from: Ty, to: Ty) -> Expr {
    if from == to {
        x
    } else {
        Expr::Cast {
            from,
            to,
            x: Box::new(x),
        }
    }
}

/// a > b in the sort order of the interpreter: NaN is the largest float.
fn total_gt(ty: Ty, a: Expr, b: Expr) -> Expr {
    let gt = wbin(BinaryOp::Gt, ty, a.clone(), b.clone());
    if !ty.is_float() {
        return gt;
    }
    let a_nan = wbin(BinaryOp::Ne, ty, a.clone(), a);
    let b_num = wbin(BinaryOp::Eq, ty, b.clone(), b);
    wbin(BinaryOp::Or, Ty::Bool, and(a_nan, b_num), gt)
}

/// a = b in that order (two NaNs are equal).
fn total_eq(ty: Ty, a: Expr, b: Expr) -> Expr {
    let eq = wbin(BinaryOp::Eq, ty, a.clone(), b.clone());
    if !ty.is_float() {
        return eq;
    }
    let both_nan = and(
        wbin(BinaryOp::Ne, ty, a.clone(), a),
        wbin(BinaryOp::Ne, ty, b.clone(), b),
    );
    wbin(BinaryOp::Or, Ty::Bool, eq, both_nan)
}

fn zero(ty: Ty) -> Expr {
    if ty.is_float() {
        Expr::Float(0.0, ty)
    } else {
        Expr::Int(0, ty)
    }
}

fn lowest(ty: Ty) -> Expr {
    if ty.is_float() {
        Expr::Float(f64::NEG_INFINITY, ty)
    } else {
        Expr::Int(i64::MIN, ty)
    }
}

fn highest(ty: Ty) -> Expr {
    if ty.is_float() {
        Expr::Float(f64::INFINITY, ty)
    } else {
        Expr::Int(i64::MAX, ty)
    }
}

fn literal(v: Literal, ty: Ty) -> Expr {
    match v {
        Literal::Float(f) => Expr::Float(f, ty),
        Literal::Int(i) if ty.is_float() => Expr::Float(i as f64, ty),
        Literal::Int(i) => Expr::Int(i, ty),
        Literal::Bool(b) => Expr::Bool(b),
    }
}
