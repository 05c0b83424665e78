//! Recognisers for the chunked linear-attention rules (`linear.rs`): small facts about
//! e-classes proved by looking at their e-nodes, recursively and to a bounded depth. Each
//! recogniser returns a description of the e-class's value that holds for every e-node it
//! accepted, or `None` when unsure; any accepted e-node is a proof (e-nodes of one e-class
//! have equal values), so the first one found is used.
//!
//! Notation: an e-class of shape [..., T, T] is read as a function of (t, s) = (row, column)
//! of its last two axes. Facts proved:
//! - `causal`: a bool e-class equal to s ≤ t (`strict_lower`: s < t), built from `iota`s;
//! - `dist`: a float e-class equal to t − s wherever s ≤ t;
//! - `log_decay`: a float e-class equal to G_t − G_s wherever s ≤ t, with G the inclusive
//!   cumulative sum of a per-step g: c·(t − s) for a c constant in (t, s) (g = c), or the
//!   segment sum cumsum_t(where(t > s, w_t, 0)) (g = w);
//! - [`Form`]: an e-class equal to [causal] · (q_t · k_s) · e^{G_t − G_s}, the quadratic form
//!   of causal linear attention, assembled from products of these factors.

use super::Arg;
use super::Plan;
use crate::ir::{BinaryOp, DimExpr, Literal, Op, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::einsum::Spec;
use egg::Id;
use seqc_runtime::DType;

/// How deep a recogniser looks through e-nodes (each level is one operator).
const DEPTH: usize = 12;

/// A value to build: an existing e-class, or an operator applied to values to build.
#[derive(Clone, Debug)]
pub enum Ex {
    Class(Id),
    Op(Op, Vec<Ex>),
}

/// A value to build and its shape.
#[derive(Clone, Debug)]
pub struct Val {
    pub ex: Ex,
    pub shape: Vec<DimExpr>,
}

impl Val {
    /// An existing tensor e-class.
    pub fn class(eg: &EG, id: Id) -> Option<Val> {
        Some(Val {
            ex: Ex::Class(id),
            shape: eg[id].data.tensor()?.shape.clone(),
        })
    }

    fn apply(self, op: Op, shape: Vec<DimExpr>) -> Val {
        Val {
            ex: Ex::Op(op, vec![self.ex]),
            shape,
        }
    }

    /// A reshape to `shape` (nothing when the shape is already that).
    pub fn reshape(self, shape: Vec<DimExpr>) -> Val {
        if self.shape == shape {
            return self;
        }
        self.apply(
            Op::Reshape {
                shape: shape.clone(),
            },
            shape,
        )
    }

    /// A broadcast to `shape` (nothing when the shape is already that). Whether it is valid
    /// is checked when the plan's types are inferred.
    pub fn broadcast(self, shape: Vec<DimExpr>) -> Val {
        if self.shape == shape {
            return self;
        }
        self.apply(
            Op::Broadcast {
                shape: shape.clone(),
            },
            shape,
        )
    }

    /// A transpose (nothing for the identity permutation); `perm` must be one.
    pub fn transpose(self, perm: Vec<usize>) -> Val {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return self;
        }
        let shape = perm.iter().map(|&p| self.shape[p].clone()).collect();
        self.apply(Op::Transpose { perm }, shape)
    }

    /// `self` without its last axis (which must be 1) or its axis `axis`.
    pub fn drop_axis(self, axis: usize) -> Val {
        let mut shape = self.shape.clone();
        shape.remove(axis);
        self.reshape(shape)
    }

    /// Adds the value's new nodes to `plan`.
    pub fn push(&self, plan: &mut Plan) -> Arg {
        push(&self.ex, plan)
    }
}

fn push(ex: &Ex, plan: &mut Plan) -> Arg {
    match ex {
        Ex::Class(id) => Arg::Class(*id),
        Ex::Op(op, args) => {
            let args = args.iter().map(|a| push(a, plan)).collect();
            plan.push(op.clone(), args)
        }
    }
}

/// A log-decay per step: `g` is broadcastable to [..., T] (its last axis is the time axis)
/// or, when `per_channel`, to [..., T, K].
#[derive(Clone, Debug)]
pub struct Decay {
    pub g: Val,
    pub per_channel: bool,
}

/// A value [..., T, T] equal, wherever s ≤ t, to (q_t · k_s) · e^{G_t − G_s} (each factor
/// present or 1), and, when `masked`, 0 wherever s > t (assuming finite values).
/// `q`, `k` are [lead..., T, K] for exactly the form's own leading dims; `decay` broadcasts.
#[derive(Clone, Debug, Default)]
pub struct Form {
    pub qk: Option<(Val, Val)>,
    pub decay: Option<Decay>,
    pub masked: bool,
}

fn shape(eg: &EG, id: Id) -> Option<&[DimExpr]> {
    eg[id].data.tensor().map(|t| t.shape.as_slice())
}

/// Whether the e-class holds the scalar float constant `v` (−∞ allowed).
pub fn is_float_const(eg: &EG, id: Id, v: f64) -> bool {
    eg[id]
        .nodes
        .iter()
        .any(|n| matches!(n.op.op(), Op::Const { value: Literal::Float(x), .. } if *x == v))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Index {
    Row,
    Col,
}

/// An `iota` giving the row index t (axis rank − 2) or the column index s (axis rank − 1)
/// of a [..., T, T] value.
fn index(eg: &EG, id: Id, t: &DimExpr) -> Option<Index> {
    eg[id].nodes.iter().find_map(|n| match n.op.op() {
        Op::Iota { shape, axis } if shape.len() >= 2 && shape[*axis] == *t => {
            let r = shape.len();
            match *axis {
                a if a == r - 2 => Some(Index::Row),
                a if a == r - 1 => Some(Index::Col),
                _ => None,
            }
        }
        _ => None,
    })
}

/// A comparison of row and column indices: `Some(false)` for s ≤ t (causal), `Some(true)`
/// for s < t (strictly lower).
fn mask(eg: &EG, id: Id, t: &DimExpr) -> Option<bool> {
    eg[id].nodes.iter().find_map(|n| {
        let Op::Binary(b) = n.op.op() else {
            return None;
        };
        let (x, y) = (index(eg, n.children[0], t)?, index(eg, n.children[1], t)?);
        use Index::{Col, Row};
        match (b, x, y) {
            (BinaryOp::Le, Col, Row) | (BinaryOp::Ge, Row, Col) => Some(false),
            (BinaryOp::Lt, Col, Row) | (BinaryOp::Gt, Row, Col) => Some(true),
            _ => None,
        }
    })
}

/// s ≤ t.
pub fn causal(eg: &EG, id: Id, t: &DimExpr) -> bool {
    mask(eg, id, t) == Some(false)
}

/// s < t.
fn strict_lower(eg: &EG, id: Id, t: &DimExpr) -> bool {
    mask(eg, id, t) == Some(true)
}

/// A float e-class equal to t − s wherever s ≤ t: cast(row − col) or cast(relu(row − col))
/// to f32, or
/// max(that, 0) (either operand order).
fn dist(eg: &EG, id: Id, t: &DimExpr, depth: usize) -> bool {
    if depth == 0 {
        return false;
    }
    eg[id].nodes.iter().any(|n| match n.op.op() {
        // f32 holds every t − s exactly (up to 2^24); f16 and bf16 do not.
        Op::Cast { to } if *to == DType::F32 => eg[n.children[0]].nodes.iter().any(|d| {
            match d.op.op() {
                Op::Binary(BinaryOp::Sub) => row_minus_col(eg, d, t),
                // relu(t − s) = t − s wherever s ≤ t.
                Op::Unary(UnaryOp::Relu) => eg[d.children[0]].nodes.iter().any(|x| {
                    matches!(x.op.op(), Op::Binary(BinaryOp::Sub)) && row_minus_col(eg, x, t)
                }),
                _ => false,
            }
        }),
        Op::Binary(BinaryOp::Max) => (0..2).any(|i| {
            is_float_const(eg, n.children[1 - i], 0.0) && dist(eg, n.children[i], t, depth - 1)
        }),
        _ => false,
    })
}

/// A `sub` e-node of the row index and the column index (integers): t − s.
fn row_minus_col(eg: &EG, d: &crate::opt::lang::TNode, t: &DimExpr) -> bool {
    index(eg, d.children[0], t) == Some(Index::Row)
        && index(eg, d.children[1], t) == Some(Index::Col)
}

/// A float e-class equal to G_t − G_s wherever s ≤ t, for a per-step log-decay g.
fn log_decay(eg: &EG, id: Id, t: &DimExpr, depth: usize) -> Option<Decay> {
    if depth == 0 {
        return None;
    }
    eg[id].nodes.iter().find_map(|n| match n.op.op() {
        // c·(t − s) with c constant in (t, s): g_t = c. c is a scalar or [..., 1, 1].
        Op::Binary(BinaryOp::Mul) => (0..2).find_map(|i| {
            let c = n.children[1 - i];
            if !dist(eg, n.children[i], t, depth - 1) {
                return None;
            }
            let cs = shape(eg, c)?;
            let r = cs.len();
            let one = DimExpr::constant(1);
            let g = match r {
                0 => Val::class(eg, c)?.reshape(vec![one]),
                _ if r >= 2 && cs[r - 2] == one && cs[r - 1] == one => {
                    Val::class(eg, c)?.drop_axis(r - 1)
                }
                _ => return None,
            };
            Some(Decay {
                g,
                per_channel: false,
            })
        }),
        // The segment sum Σ_{s<j≤t} w_j: a cumsum down the rows of where(t > s, w_t, 0), w of
        // shape [..., T or 1, 1] (a function of the row only).
        Op::Scan {
            axis,
            reverse: false,
        } if n.children.len() == 2 && is_float_const(eg, n.children[0], 1.0) => {
            let r = shape(eg, id)?.len();
            if r < 2 || *axis != r - 2 {
                return None;
            }
            eg[n.children[1]].nodes.iter().find_map(|e| {
                if !matches!(e.op.op(), Op::Select)
                    || !strict_lower(eg, e.children[0], t)
                    || !is_float_const(eg, e.children[2], 0.0)
                {
                    return None;
                }
                let w = e.children[1];
                let ws = shape(eg, w)?;
                let wr = ws.len();
                if wr < 2 || ws[wr - 1] != DimExpr::constant(1) {
                    return None;
                }
                Some(Decay {
                    g: Val::class(eg, w)?.drop_axis(wr - 1),
                    per_channel: false,
                })
            })
        }
        _ => None,
    })
}

/// q = operand in [batch..., t, c] order and k likewise in [batch..., s, c], from a
/// two-operand einsum [batch..., t, s] that sums exactly one letter c, which both operands
/// carry, as do the batch letters.
fn scores(eg: &EG, n: &crate::opt::lang::TNode) -> Option<(Val, Val)> {
    let Op::Einsum { spec } = n.op.op() else {
        return None;
    };
    let spec = Spec::parse(spec)?;
    if spec.inputs.len() != 2 || spec.output.len() < 2 {
        return None;
    }
    let o = &spec.output;
    let (x, y, batch) = (o[o.len() - 2], o[o.len() - 1], &o[..o.len() - 2]);
    let summed: Vec<char> = spec
        .letters()
        .into_iter()
        .filter(|l| !o.contains(l))
        .collect();
    let [c] = summed[..] else {
        return None;
    };
    let (qi, ki) = if spec.inputs[0].contains(&x) {
        (0, 1)
    } else {
        (1, 0)
    };
    let ordered = |term: &[char], own: char| -> Option<Vec<usize>> {
        let mut want: Vec<char> = batch.to_vec();
        want.extend([own, c]);
        let distinct = term
            .iter()
            .all(|l| term.iter().filter(|m| *m == l).count() == 1);
        if term.len() != want.len() || !distinct {
            return None;
        }
        want.iter()
            .map(|l| term.iter().position(|m| m == l))
            .collect()
    };
    let qp = ordered(&spec.inputs[qi], x)?;
    let kp = ordered(&spec.inputs[ki], y)?;
    Some((
        Val::class(eg, n.children[qi])?.transpose(qp),
        Val::class(eg, n.children[ki])?.transpose(kp),
    ))
}

/// The product of two forms: at most one q·k factor and at most one decay.
fn product(a: Form, b: Form) -> Option<Form> {
    if (a.qk.is_some() && b.qk.is_some()) || (a.decay.is_some() && b.decay.is_some()) {
        return None;
    }
    Some(Form {
        qk: a.qk.or(b.qk),
        decay: a.decay.or(b.decay),
        masked: a.masked || b.masked,
    })
}

/// Describes a float e-class of shape [..., T, T] as a [`Form`].
pub fn form(eg: &EG, id: Id, t: &DimExpr, depth: usize) -> Option<Form> {
    let s = shape(eg, id)?;
    let r = s.len();
    if depth == 0 || r < 2 || s[r - 2] != *t || s[r - 1] != *t {
        return None;
    }
    let lead = s[..r - 2].to_vec();
    eg[id].nodes.iter().find_map(|n| match n.op.op() {
        Op::Einsum { .. } => Some(Form {
            qk: Some(scores(eg, n)?),
            ..Form::default()
        }),
        Op::Select if causal(eg, n.children[0], t) && is_float_const(eg, n.children[2], 0.0) => {
            let inner = form(eg, n.children[1], t, depth - 1)?;
            Some(Form {
                masked: true,
                ..inner
            })
        }
        Op::Binary(BinaryOp::Mul) => product(
            form(eg, n.children[0], t, depth - 1)?,
            form(eg, n.children[1], t, depth - 1)?,
        ),
        Op::Unary(UnaryOp::Exp) => {
            let y = n.children[0];
            if let Some(d) = log_decay(eg, y, t, depth - 1) {
                return Some(Form {
                    decay: Some(d),
                    ..Form::default()
                });
            }
            // exp(where(s ≤ t, G_t − G_s, −∞)): the decay, exactly 0 above the diagonal.
            eg[y].nodes.iter().find_map(|m| {
                if !matches!(m.op.op(), Op::Select)
                    || !causal(eg, m.children[0], t)
                    || !is_float_const(eg, m.children[2], f64::NEG_INFINITY)
                {
                    return None;
                }
                Some(Form {
                    decay: Some(log_decay(eg, m.children[1], t, depth - 1)?),
                    qk: None,
                    masked: true,
                })
            })
        }
        // A reshape that only inserts or removes unit leading dims: the same (t, s) values.
        Op::Reshape { .. } => {
            let x = n.children[0];
            let xs = shape(eg, x)?;
            let xr = xs.len();
            if xr < 2 || xs[xr - 2] != *t || xs[xr - 1] != *t {
                return None;
            }
            let one = DimExpr::constant(1);
            let non_unit = |d: &[DimExpr]| -> Vec<DimExpr> {
                d.iter().filter(|x| **x != one).cloned().collect()
            };
            let xlead = xs[..xr - 2].to_vec();
            if non_unit(&xlead) != non_unit(&lead) {
                return None;
            }
            let inner = form(eg, x, t, depth - 1)?;
            let relead = |v: Val, lead_from: &[DimExpr], lead_to: &[DimExpr]| -> Val {
                let tail = v.shape[v.shape.len() - 1].clone();
                let mut from = lead_from.to_vec();
                from.extend([t.clone(), tail.clone()]);
                let mut to = lead_to.to_vec();
                to.extend([t.clone(), tail]);
                v.broadcast(from).reshape(to)
            };
            let qk = inner
                .qk
                .map(|(q, k)| (relead(q, &xlead, &lead), relead(k, &xlead, &lead)));
            // A decay broadcasts, and its leading dims align on the right: a reshape that
            // changes unit dims is only followed when the decay has none of its own.
            let decay = match inner.decay {
                None => None,
                Some(d) => {
                    let own = d.g.shape.len() - if d.per_channel { 2 } else { 1 };
                    if d.g.shape[..own].iter().any(|x| *x != one) {
                        return None;
                    }
                    Some(d)
                }
            };
            Some(Form {
                qk,
                decay,
                masked: inner.masked,
            })
        }
        _ => None,
    })
}

/// The q, k and log-decay of a [`Form`] that is a complete masked quadratic form, each
/// broadcast to the full leading dims `lead`: q, k [lead..., T, K], g [lead..., T] or
/// [lead..., T, K].
pub fn assemble(f: Form, lead: &[DimExpr], t: &DimExpr) -> Option<(Val, Val, Option<Val>)> {
    let (q, k) = f.qk?;
    if !f.masked {
        return None;
    }
    let kd = q.shape.last()?.clone();
    let mut qs = lead.to_vec();
    qs.extend([t.clone(), kd]);
    let g = f.decay.map(|d| {
        let mut gs = lead.to_vec();
        gs.push(t.clone());
        if d.per_channel {
            gs.push(qs[qs.len() - 1].clone());
        }
        d.g.broadcast(gs)
    });
    Some((q.broadcast(qs.clone()), k.broadcast(qs), g))
}

/// The recognisers' default depth.
pub fn depth() -> usize {
    DEPTH
}
