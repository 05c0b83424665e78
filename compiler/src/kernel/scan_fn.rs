//! Lowering of `scan_fn`: one kernel whose root is the serial loop over the scan axis, its
//! body the kernels of the body graph lowered by a nested [`Lowerer`] (so the body may hold
//! any operator the backend lowers), each turned into a serial loop nest run once per step.
//!
//! No value is copied: state k is written straight into slice t of its stacked output
//! buffer (the buffer of the `extract` of it) and read back from slice t − 1, or from the
//! init value at t = 0; the sequences are read at step t and the captures whole through the
//! outer graph's index maps. The body's temporaries are buffers of the program, live only
//! during this kernel. Nested `scan_fn`s lower the same way, one level deeper.

use super::access::{add, div, flat, int, lt, mul, rem, sub};
use super::lower::{KernelError, Lowerer};
use super::{Acc, BufId, BufKind, Buffer, Expr, Loop, Sched, Stmt, Ty, Var};
use crate::ir::{BinaryOp, DimExpr, Graph, NodeId, Op, Type};
use seqc_runtime::DType;

/// An input of a body graph: its value at index `params` (placeholder variables) is `expr`.
#[derive(Clone, Debug)]
pub(super) struct Template {
    params: Vec<Var>,
    expr: Expr,
}

/// How a `scan_fn` body is lowered inside its scan: its inputs' values, the stand-in buffer
/// of each output (rewritten to the stacked slice afterwards) and the first free variable.
#[derive(Clone, Debug)]
pub(super) struct BodyScope {
    bound: Vec<Option<Template>>,
    redirect: Vec<Option<BufId>>,
    var_base: u32,
    depth: u32,
}

/// Placeholder variables and stand-in buffers use ids far above any real one; each nesting
/// level has its own range so an inner scan never rewrites an outer one's.
const FAR: u32 = 1 << 31;
const LEVEL: u32 = 1 << 20;

fn placeholder(depth: u32, k: usize) -> u32 {
    FAR + depth * LEVEL + k as u32
}

/// The state buffers a `scan_fn` writes and the shapes it needs.
struct Stacked {
    buf: BufId,
    /// The state's shape (without the scan axis).
    shape: Vec<Expr>,
    /// The stacked output's shape (T inserted at the axis).
    stacked: Vec<Expr>,
}

impl<'g> Lowerer<'g> {
    /// The first variable number of a kernel (above the enclosing scans' variables).
    pub(super) fn var_base(&self) -> u32 {
        self.scope.as_ref().map_or(0, |s| s.var_base)
    }

    /// Whether `id` is a body input whose value comes from the enclosing scan.
    pub(super) fn is_bound(&self, id: NodeId) -> bool {
        self.scope
            .as_ref()
            .is_some_and(|s| s.bound.get(id.index()).is_some_and(|b| b.is_some()))
    }

    /// A body input's value at `idx`, if `id` is one.
    pub(super) fn bound_access(&self, id: NodeId, idx: &[Expr]) -> Option<Expr> {
        let t = self.scope.as_ref()?.bound.get(id.index())?.as_ref()?;
        Some(subst(&t.expr, &t.params, idx))
    }

    /// Inside a body: the stand-in buffer of an output, or the program's existing buffer of
    /// the same parameter (a body names the outer graph's weights by the same key).
    pub(super) fn scoped_buffer(&self, id: NodeId, kind: &BufKind) -> Option<BufId> {
        let s = self.scope.as_ref()?;
        if let Some(b) = s.redirect.get(id.index()).copied().flatten() {
            return Some(b);
        }
        if matches!(kind, BufKind::Param(_)) {
            let i = self.prog.buffers.iter().position(|b| &b.kind == kind)?;
            return Some(BufId(i as u32));
        }
        None
    }

    /// Lowers `scan_fn` node `id` into one kernel (see the module doc).
    pub(super) fn scan_fn(&mut self, id: NodeId) -> Result<(), KernelError> {
        let n = self.g.node(id);
        let Op::ScanFn {
            axis,
            n_state,
            n_xs,
            body,
        } = &n.op
        else {
            return Err(self.invalid(id, "internal: not a scan_fn"));
        };
        let (axis, n_state, n_xs) = (*axis, *n_state, *n_xs);
        let ins = n.inputs.clone();
        let Type::Tuple(state_tys) = &n.ty else {
            return Err(self.invalid(id, "expects a tuple type"));
        };
        if n_state == 0 || n_xs == 0 || ins.len() < n_state + n_xs || state_tys.len() != n_state {
            return Err(self.invalid(
                id,
                &format!(
                    "expects at least one state and one sequence, found {n_state} state(s), \
                     {n_xs} sequence(s) and {} operand(s)",
                    ins.len()
                ),
            ));
        }
        if self.shapes[ins[n_state].index()].len() <= axis {
            return Err(self.invalid(id, &format!("the sequences have no axis {axis}")));
        }
        let len = self.shapes[ins[n_state].index()][axis].clone();
        self.vars = self.var_base();
        self.accs.clear();
        let mut outs = Vec::with_capacity(n_state);
        for (k, st) in state_tys.iter().enumerate() {
            // The tuple element is the stacked state; the init has the state's shape.
            let shape = self.shapes[ins[k].index()].clone();
            if axis > shape.len() || st.shape.len() != shape.len() + 1 {
                return Err(self.invalid(
                    id,
                    &format!("state {k} ({st}) does not stack its init along axis {axis}"),
                ));
            }
            let stacked = st
                .shape
                .iter()
                .map(|d| self.dimx(id, d))
                .collect::<Result<Vec<_>, _>>()?;
            let buf = self.state_buffer(id, k, st.dtype, st.shape.clone());
            outs.push(Stacked {
                buf,
                shape,
                stacked,
            });
        }
        let t = self.var();
        let depth = self.scope.as_ref().map_or(0, |s| s.depth + 1);
        // The body's inputs: states (init at t = 0, else slice t − 1), steps, captures.
        let mut bound = Vec::with_capacity(ins.len());
        for (i, x) in ins.iter().enumerate() {
            let rank = if i < n_state {
                outs[i].shape.len()
            } else if i < n_state + n_xs {
                self.shapes[x.index()].len() - 1
            } else {
                self.shapes[x.index()].len()
            };
            let params: Vec<Var> = (0..rank).map(|k| Var(placeholder(depth, k))).collect();
            let p: Vec<Expr> = params.iter().map(|v| Expr::Var(*v)).collect();
            let expr = if i < n_state {
                let s = &outs[i];
                let mut prev = p.clone();
                prev.insert(axis, sub(Expr::Var(t), int(1)));
                Expr::Select {
                    cond: Box::new(lt(Expr::Var(t), int(1))),
                    a: Box::new(self.access(*x, &p)?),
                    b: Box::new(Expr::Load {
                        buf: s.buf,
                        index: Box::new(flat(&prev, &s.stacked)),
                    }),
                }
            } else if i < n_state + n_xs {
                let mut xi = p.clone();
                xi.insert(axis, Expr::Var(t));
                self.access(*x, &xi)?
            } else {
                self.access(*x, &p)?
            };
            bound.push(Template { params, expr });
        }
        let body_kernels = self.lower_body(id, body, bound, &outs, depth)?;
        // Stand-in buffer k (state layout) → slice t of stacked output k.
        let fakes: Vec<Slot> = outs
            .iter()
            .enumerate()
            .map(|(k, s)| Slot {
                fake: BufId(placeholder(depth, k)),
                real: s.buf,
                map: slice_map(s, axis, &len, Expr::Var(t)),
                shape: s.shape.clone(),
                stacked: s.stacked.clone(),
                axis,
                t: Expr::Var(t),
            })
            .collect();
        let mut stmts = Vec::new();
        for (kaccs, root) in body_kernels {
            let off = self.accs.len() as u32;
            self.accs.extend(kaccs);
            let mut root = root;
            root.sched = Sched::Serial;
            let mut s = Stmt::Loop(root);
            rewrite_stmt(&mut s, off, &fakes);
            stmts.push(s);
        }
        let root = Loop {
            var: t,
            extent: len,
            sched: Sched::Serial,
            body: stmts,
        };
        self.push_kernel(id, root);
        Ok(())
    }

    /// The stacked buffer of state `k`: that of its `extract` (shared by repeated extracts),
    /// or a temporary of its own when no extract reads it.
    fn state_buffer(&mut self, id: NodeId, k: usize, dtype: DType, shape: Vec<DimExpr>) -> BufId {
        let extracts: Vec<NodeId> = self
            .g
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                matches!(m.op, Op::Extract { index } if index == k) && m.inputs.first() == Some(&id)
            })
            .map(|(i, _)| NodeId(i as u32))
            .collect();
        let b = match extracts.first() {
            Some(e) => self.add_buffer(*e, BufKind::Temp),
            None => {
                self.prog.buffers.push(Buffer {
                    kind: BufKind::Temp,
                    dtype,
                    shape,
                    node: id,
                });
                BufId(self.prog.buffers.len() as u32 - 1)
            }
        };
        for e in extracts.iter().skip(1) {
            self.buf_of[e.index()] = Some(b);
        }
        b
    }

    /// Lowers the body graph with a nested lowerer sharing this program's buffers; returns
    /// each body kernel's accumulators and root loop, in order. Outputs that are no kernel's
    /// result (an input returned as is, an output returned twice) get a copy loop.
    fn lower_body(
        &mut self,
        id: NodeId,
        body: &Graph,
        bound: Vec<Template>,
        outs: &[Stacked],
        depth: u32,
    ) -> Result<Vec<(Vec<super::Ty>, Loop)>, KernelError> {
        let wrap = |e: KernelError| KernelError::Invalid {
            node: id,
            op: "scan_fn".into(),
            msg: format!("in its body: {e}"),
        };
        let mut g = super::inline::expand_fused(body)
            .map_err(wrap)?
            .into_owned();
        // The body's dims are a subset of the graph's (verified): index them the same way.
        g.dims = self.g.dims.clone();
        let inputs: Vec<NodeId> = g.inputs().map(|(_, x)| x).collect();
        if inputs.len() != bound.len() || g.outputs.len() != outs.len() {
            return Err(self.invalid(id, "the body's inputs or outputs do not match the scan"));
        }
        let mut slots = vec![None; g.nodes.len()];
        for (x, t) in inputs.iter().zip(bound) {
            slots[x.index()] = Some(t);
        }
        let mut redirect = vec![None; g.nodes.len()];
        let mut copies = Vec::new();
        for (k, (_, o)) in g.outputs.iter().enumerate() {
            let fake = BufId(placeholder(depth, k));
            let leaf = matches!(
                g.node(*o).op,
                Op::Input { .. } | Op::Param { .. } | Op::Random { .. }
            );
            if leaf || redirect[o.index()].is_some() {
                copies.push((k, *o, fake));
            } else {
                redirect[o.index()] = Some(fake);
            }
        }
        let mut inner = Lowerer::new(&g).map_err(wrap)?;
        inner.scope = Some(BodyScope {
            bound: slots,
            redirect,
            var_base: self.vars,
            depth,
        });
        inner.prog.buffers = std::mem::take(&mut self.prog.buffers);
        let mut run = || -> Result<(), KernelError> {
            for i in 0..g.nodes.len() {
                let x = NodeId(i as u32);
                if let Op::Param { name } = &inner.g.node(x).op
                    && inner
                        .scoped_buffer(x, &BufKind::Param(name.clone()))
                        .is_none()
                {
                    return Err(inner.invalid(
                        x,
                        &format!("param `{name}` is not a param of the enclosing graph"),
                    ));
                }
                inner.node(x)?;
            }
            for (k, o, fake) in &copies {
                inner.vars = inner.var_base();
                inner.accs.clear();
                let shape = outs[*k].shape.clone();
                let root = inner.map_kernel(*fake, &shape, |l, idx| l.access(*o, idx))?;
                inner.push_kernel(*o, root);
            }
            Ok(())
        };
        let r = run();
        self.prog.buffers = std::mem::take(&mut inner.prog.buffers);
        r.map_err(wrap)?;
        Ok(inner
            .prog
            .kernels
            .into_iter()
            .map(|k| (k.accs, k.root))
            .collect())
    }
}

/// The flat index in stacked output `s` of element `f` (flat, state layout) at step `t`:
/// with P the size of the state's axes from `axis` on, (f / P)·T·P + t·P + f mod P.
fn slice_map(s: &Stacked, axis: usize, len: &Expr, t: Expr) -> Expr {
    let inner = s.shape[axis..]
        .iter()
        .fold(int(1), |a, d| mul(a, d.clone()));
    let f = Expr::Var(Var(u32::MAX));
    if axis == 0 {
        return add(mul(t, inner), f);
    }
    add(
        mul(
            div(f.clone(), inner.clone()),
            mul(len.clone(), inner.clone()),
        ),
        add(mul(t, inner.clone()), rem(f, inner)),
    )
}

/// `e` with each `params[k]` replaced by `idx[k]` (all at once).
fn subst(e: &Expr, params: &[Var], idx: &[Expr]) -> Expr {
    map_expr(e, &mut |x| match x {
        Expr::Var(v) => params.iter().position(|p| p == v).map(|k| idx[k].clone()),
        _ => None,
    })
}

/// Rebuilds `e` top-down: where `f` gives a replacement it is taken as is, elsewhere the
/// children are rebuilt.
fn map_expr(e: &Expr, f: &mut impl FnMut(&Expr) -> Option<Expr>) -> Expr {
    if let Some(r) = f(e) {
        return r;
    }
    let mut m = |x: &Expr| Box::new(map_expr(x, f));
    match e {
        Expr::Var(_)
        | Expr::Dim(_)
        | Expr::Int(..)
        | Expr::Float(..)
        | Expr::Bool(_)
        | Expr::Acc(_) => e.clone(),
        Expr::Load { buf, index } => Expr::Load {
            buf: *buf,
            index: m(index),
        },
        Expr::Unary { op, ty, x } => Expr::Unary {
            op: *op,
            ty: *ty,
            x: m(x),
        },
        Expr::Binary { op, ty, a, b } => {
            let a = m(a);
            Expr::Binary {
                op: *op,
                ty: *ty,
                a,
                b: m(b),
            }
        }
        Expr::Select { cond, a, b } => {
            let cond = m(cond);
            let a = m(a);
            Expr::Select { cond, a, b: m(b) }
        }
        Expr::Cast { from, to, x } => Expr::Cast {
            from: *from,
            to: *to,
            x: m(x),
        },
        Expr::Checked { index, len } => {
            let index = m(index);
            Expr::Checked { index, len: m(len) }
        }
    }
}

/// A body output's stand-in buffer and where its elements go: slice `t` of `real`.
struct Slot {
    fake: BufId,
    real: BufId,
    /// The flat index in `real` of the stand-in's flat index `Var(u32::MAX)`.
    map: Expr,
    shape: Vec<Expr>,
    stacked: Vec<Expr>,
    axis: usize,
    t: Expr,
}

impl Slot {
    /// The index in the stacked buffer of flat index `f` of the stand-in: when `f` is a
    /// row-major flattening over the state's shape (as every store and load the lowering
    /// builds is), its multi-index with `t` inserted, flattened again; else the slice map.
    fn index(&self, f: &Expr) -> Expr {
        match unflat(f, &self.shape) {
            Some(mut idx) => {
                idx.insert(self.axis, self.t.clone());
                flat(&idx, &self.stacked)
            }
            None => at(&self.map, f),
        }
    }
}

/// The multi-index `idx` if `e` is `flat(idx, shape)` in the Horner form `flat` builds
/// (each step `rest · d + i`, with d the shape's dim); `None` otherwise. Each i is then below
/// its d (the lowering flattens in-range indices), so the split is the unique one.
fn unflat(e: &Expr, shape: &[Expr]) -> Option<Vec<Expr>> {
    let Some((_, tail)) = shape.split_first() else {
        return (*e == int(0)).then(Vec::new);
    };
    let mut out = Vec::with_capacity(shape.len());
    let mut e = e;
    for d in tail.iter().rev() {
        let Expr::Binary {
            op: BinaryOp::Add,
            ty: Ty::I64,
            a,
            b,
        } = e
        else {
            return None;
        };
        let Expr::Binary {
            op: BinaryOp::Mul,
            ty: Ty::I64,
            a: rest,
            b: m,
        } = &**a
        else {
            return None;
        };
        if **m != *d {
            return None;
        }
        out.push((**b).clone());
        e = rest;
    }
    out.push(e.clone());
    out.reverse();
    Some(out)
}

/// Shifts accumulators by `off` and moves loads and stores of each stand-in buffer to its
/// stacked buffer at slice t ([`Slot::index`]).
fn rewrite_stmt(s: &mut Stmt, off: u32, fakes: &[Slot]) {
    // Body kernels hold no block products, recurrences or attention tiles (`gemm.rs`,
    // `recur.rs` and `flash.rs` decline inside a body), so no strided view reads a stand-in
    // buffer; only their expressions shift.
    for e in s.exprs_mut() {
        *e = rewrite_expr(e, off, fakes);
    }
    match s {
        Stmt::Store { buf, index, .. } => {
            if let Some(slot) = fakes.iter().find(|f| f.fake == *buf) {
                *index = slot.index(index);
                *buf = slot.real;
            }
        }
        Stmt::Assign { acc, .. } => *acc = Acc(acc.0 + off),
        _ => {}
    }
    for b in s.body_mut().into_iter().flatten() {
        rewrite_stmt(b, off, fakes);
    }
}

fn rewrite_expr(e: &Expr, off: u32, fakes: &[Slot]) -> Expr {
    map_expr(e, &mut |x| match x {
        Expr::Acc(a) => Some(Expr::Acc(Acc(a.0 + off))),
        Expr::Load { buf, index } => {
            let index = rewrite_expr(index, off, fakes);
            Some(match fakes.iter().find(|f| f.fake == *buf) {
                Some(slot) => Expr::Load {
                    buf: slot.real,
                    index: Box::new(slot.index(&index)),
                },
                None => Expr::Load {
                    buf: *buf,
                    index: Box::new(index),
                },
            })
        }
        _ => None,
    })
}

/// `map` with its index placeholder replaced by `index`.
fn at(map: &Expr, index: &Expr) -> Expr {
    subst(map, &[Var(u32::MAX)], std::slice::from_ref(index))
}
