//! The reference interpreter: the numerical oracle for every later stage.
//!
//! It evaluates a [`Graph`] node by node in f64 (floats) / i64 (ints), rounding every node's
//! result to its dtype (f32, f16, bf16 round to nearest even; i32 wraps), so a result is what
//! a backend computing each node in its dtype would produce up to accumulation order. Sums,
//! means, log-sum-exp and einsum contractions accumulate in f64. Every node's result is
//! checked against its type evaluated at the bound dims; nothing reachable from a valid graph
//! panics: bad indices, integer division by zero, negative or huge dims are [`InterpError`]s.

mod attention;
mod einsum;
mod elementwise;
mod index;
mod layout;
mod linear_attn;
mod reduce;
mod round;
mod scan;
mod value;

#[cfg(test)]
mod tests;

pub use elementwise::{erf, unary_f};

use crate::ir::{DimBindings, DimExpr, Graph, NodeId, Op, Type};
use seqc_runtime::HostTensor;
use std::collections::BTreeMap;
use thiserror::Error;
use value::{Tensor, Val, describe, numel};

/// Why evaluation failed. Every message names the tensor or node concerned.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum InterpError {
    #[error("the graph's {kind} `{name}` was not provided (expected {expected})")]
    Missing {
        kind: &'static str,
        name: String,
        expected: String,
    },
    #[error("{kind} `{name}`: expected {expected}, found {found}")]
    Mismatch {
        kind: &'static str,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{node} `{op}`: dim `{name}` is not bound (give it a value, e.g. --dims {name}=<n>)")]
    UnboundDim {
        node: String,
        op: &'static str,
        name: String,
    },
    #[error("{node} `{op}`: {msg}")]
    Eval {
        node: String,
        op: &'static str,
        msg: String,
    },
    #[error("output `{name}`: {msg}")]
    Output { name: String, msg: String },
}

/// Runs `graph` with the dims bound by `dims` on `tensors` (every input and param by name)
/// and returns the graph's outputs by name.
pub fn run(
    graph: &Graph,
    dims: &DimBindings,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<BTreeMap<String, HostTensor>, InterpError> {
    let mut named = BTreeMap::new();
    for (name, h) in tensors {
        let t = Tensor::from_host(h).map_err(|msg| InterpError::Mismatch {
            kind: "tensor",
            name: name.clone(),
            expected: "a buffer matching its shape".into(),
            found: msg,
        })?;
        named.insert(name.clone(), t);
    }
    let ctx = Ctx {
        dims,
        named: &named,
    };
    let vals = eval_graph(graph, &ctx, None)?;
    let mut out = BTreeMap::new();
    for ((name, _), v) in graph.outputs.iter().zip(vals) {
        let h = v.to_host().map_err(|msg| InterpError::Output {
            name: name.clone(),
            msg,
        })?;
        out.insert(name.clone(), h);
    }
    Ok(out)
}

/// What every node evaluation sees: the dim values and the named tensors.
pub(crate) struct Ctx<'a> {
    pub dims: &'a DimBindings,
    pub named: &'a BTreeMap<String, Tensor>,
}

/// Evaluates `g` and returns its outputs in order. Input leaves take their values from
/// `positional` (in order) when given (a scan body), else by name; params always by name.
pub(crate) fn eval_graph(
    g: &Graph,
    ctx: &Ctx,
    positional: Option<&[Tensor]>,
) -> Result<Vec<Tensor>, InterpError> {
    let mut vals: Vec<Val> = Vec::with_capacity(g.nodes.len());
    let mut next_input = 0usize;
    for (i, node) in g.nodes.iter().enumerate() {
        let id = NodeId(i as u32);
        let op = node.op.name();
        let fail = |msg: String| InterpError::Eval {
            node: id.to_string(),
            op,
            msg,
        };
        let expect = eval_type(&node.ty, ctx.dims).map_err(|e| e.at(id, op))?;
        let v = match &node.op {
            Op::Input { name } | Op::Param { name } => {
                // Scan-body inputs come by position; everything else by name.
                let (kind, by_position) = match node.op {
                    Op::Input { .. } => ("input", positional),
                    _ => ("param", None),
                };
                let t = match by_position {
                    Some(p) => {
                        next_input += 1;
                        p.get(next_input - 1).ok_or_else(|| {
                            fail(format!(
                                "the scan body has more inputs than the {} passed",
                                p.len()
                            ))
                        })?
                    }
                    None => ctx.named.get(name).ok_or_else(|| InterpError::Missing {
                        kind,
                        name: name.clone(),
                        expected: expect.describe(),
                    })?,
                };
                if !expect.matches_t(t) {
                    return Err(InterpError::Mismatch {
                        kind,
                        name: name.clone(),
                        expected: format!("{} = {}", node.ty, expect.describe()),
                        found: t.describe(),
                    });
                }
                Val::T(t.clone())
            }
            _ => {
                let mut args = Vec::with_capacity(node.inputs.len());
                for a in &node.inputs {
                    if a.index() >= i {
                        return Err(fail(format!("operand {a} is not computed before {id}")));
                    }
                    args.push(&vals[a.index()]);
                }
                eval_op(&node.op, &args, &expect, ctx, id).map_err(|e| match e {
                    OpError::Msg(m) => fail(m),
                    OpError::Dim(d) => d.at(id, op),
                    OpError::Nested(e) => e,
                })?
            }
        };
        if !expect.matches(&v) {
            return Err(fail(format!(
                "internal: the result is {} but the node's type {} evaluates to {}",
                val_describe(&v),
                node.ty,
                expect.describe()
            )));
        }
        vals.push(v);
    }
    let mut out = Vec::with_capacity(g.outputs.len());
    for (name, id) in &g.outputs {
        match vals.get(id.index()) {
            Some(Val::T(t)) => out.push(t.clone()),
            _ => {
                return Err(InterpError::Output {
                    name: name.clone(),
                    msg: format!("{id} is not a tensor value of the graph"),
                });
            }
        }
    }
    Ok(out)
}

fn val_describe(v: &Val) -> String {
    match v {
        Val::T(t) => t.describe(),
        Val::Tuple(ts) => {
            let parts: Vec<String> = ts.iter().map(|t| t.describe()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// A node's type evaluated at the bound dims.
pub(crate) enum Expect {
    T(seqc_runtime::DType, Vec<usize>),
    Tuple(Vec<(seqc_runtime::DType, Vec<usize>)>),
}

impl Expect {
    fn describe(&self) -> String {
        match self {
            Expect::T(d, s) => describe(*d, s),
            Expect::Tuple(ts) => {
                let parts: Vec<String> = ts.iter().map(|(d, s)| describe(*d, s)).collect();
                format!("({})", parts.join(", "))
            }
        }
    }

    /// Whether `v` has the expected dtype(s) and shape(s).
    fn matches(&self, v: &Val) -> bool {
        match (self, v) {
            (Expect::T(..), Val::T(t)) => self.matches_t(t),
            (Expect::Tuple(es), Val::Tuple(ts)) => {
                es.len() == ts.len()
                    && es
                        .iter()
                        .zip(ts)
                        .all(|((d, s), t)| t.dtype == *d && t.shape == *s)
            }
            _ => false,
        }
    }

    fn matches_t(&self, t: &Tensor) -> bool {
        matches!(self, Expect::T(d, s) if t.dtype == *d && t.shape == *s)
    }

    /// The expected tensor's dtype and shape (an error for a tuple).
    pub(crate) fn tensor(&self) -> Result<(seqc_runtime::DType, &[usize]), String> {
        match self {
            Expect::T(d, s) => Ok((*d, s)),
            Expect::Tuple(_) => Err("internal: a tensor operator with a tuple type".into()),
        }
    }
}

/// A dim that does not evaluate to a usable size.
pub(crate) enum DimError {
    Unbound(String),
    Bad(String),
}

impl DimError {
    fn at(self, id: NodeId, op: &'static str) -> InterpError {
        match self {
            DimError::Unbound(name) => InterpError::UnboundDim {
                node: id.to_string(),
                op,
                name,
            },
            DimError::Bad(msg) => InterpError::Eval {
                node: id.to_string(),
                op,
                msg,
            },
        }
    }
}

/// What an operator's evaluation can fail with.
pub(crate) enum OpError {
    Msg(String),
    Dim(DimError),
    /// An error inside a scan body, already wrapped.
    Nested(InterpError),
}

impl From<String> for OpError {
    fn from(m: String) -> Self {
        OpError::Msg(m)
    }
}

impl From<DimError> for OpError {
    fn from(d: DimError) -> Self {
        OpError::Dim(d)
    }
}

/// Evaluates a dim to a non-negative size.
pub(crate) fn eval_dim(d: &DimExpr, dims: &DimBindings) -> Result<usize, DimError> {
    let v = d.eval(dims).map_err(DimError::Unbound)?;
    if v < 0 {
        return Err(DimError::Bad(format!(
            "dim {d} evaluates to {v}, which is negative"
        )));
    }
    usize::try_from(v)
        .ok()
        .filter(|&u| u <= value::MAX_ELEMS)
        .ok_or_else(|| DimError::Bad(format!("dim {d} evaluates to {v}, more than 2^31")))
}

fn eval_shape(shape: &[DimExpr], dims: &DimBindings) -> Result<Vec<usize>, DimError> {
    let s = shape
        .iter()
        .map(|d| eval_dim(d, dims))
        .collect::<Result<Vec<_>, _>>()?;
    numel(&s).map_err(DimError::Bad)?;
    Ok(s)
}

fn eval_type(ty: &Type, dims: &DimBindings) -> Result<Expect, DimError> {
    Ok(match ty {
        Type::Tensor(t) => Expect::T(t.dtype, eval_shape(&t.shape, dims)?),
        Type::Tuple(ts) => Expect::Tuple(
            ts.iter()
                .map(|t| Ok((t.dtype, eval_shape(&t.shape, dims)?)))
                .collect::<Result<_, DimError>>()?,
        ),
    })
}

fn arg<'v>(args: &[&'v Val], k: usize) -> Result<&'v Tensor, String> {
    match args.get(k) {
        Some(Val::T(t)) => Ok(t),
        Some(Val::Tuple(_)) => Err(format!("operand {} is a tuple", k + 1)),
        None => Err(format!("operand {} is missing", k + 1)),
    }
}

fn eval_op(op: &Op, args: &[&Val], expect: &Expect, ctx: &Ctx, id: NodeId) -> Result<Val, OpError> {
    let a = |k: usize| arg(args, k);
    let dim = |d: &DimExpr| eval_dim(d, ctx.dims);
    let t = match op {
        Op::Input { .. } | Op::Param { .. } => {
            return Err("internal: a leaf as an operator".to_string().into());
        }
        Op::Const { value, dtype } => elementwise::constant(*value, *dtype)?,
        Op::Iota { axis, .. } => index::iota(expect.tensor()?.1, *axis)?,
        Op::Random { dist, seed, .. } => {
            let shape = expect.tensor()?.1.to_vec();
            let n = numel(&shape)?;
            let normal = !matches!(dist, crate::ir::Distribution::Uniform);
            let torch = matches!(dist, crate::ir::Distribution::TorchNormal);
            let v = crate::rng::fill_dist(*seed, n, normal, torch);
            let data = value::Data::F(v.into_iter().map(f64::from).collect());
            Tensor::new(seqc_runtime::DType::F32, shape, data)?
        }
        Op::Unary(u) => elementwise::unary(*u, a(0)?)?,
        Op::Binary(b) => elementwise::binary(*b, a(0)?, a(1)?)?,
        Op::Select => elementwise::select(a(0)?, a(1)?, a(2)?)?,
        Op::Cast { to } => elementwise::cast(a(0)?, *to)?,
        Op::Reduce { op, axes, keepdim } => reduce::reduce(*op, a(0)?, axes, *keepdim)?,
        Op::Einsum { spec } => {
            let xs = (0..args.len()).map(a).collect::<Result<Vec<_>, _>>()?;
            einsum::einsum(spec, &xs)?
        }
        Op::Reshape { .. } => layout::reshape(a(0)?, expect.tensor()?.1)?,
        Op::Transpose { perm } => layout::transpose(a(0)?, perm)?,
        Op::Broadcast { .. } => layout::broadcast(a(0)?, expect.tensor()?.1)?,
        Op::Slice {
            axis,
            start,
            end,
            step,
        } => layout::slice(a(0)?, *axis, dim(start)?, dim(end)?, *step)?,
        Op::Concat { axis } => {
            let xs = (0..args.len()).map(a).collect::<Result<Vec<_>, _>>()?;
            layout::concat(&xs, *axis)?
        }
        Op::Pad {
            axis,
            before,
            after,
            value,
        } => layout::pad(a(0)?, *axis, dim(before)?, dim(after)?, *value)?,
        Op::Take { axis } => index::take(a(0)?, a(1)?, *axis)?,
        Op::Gather { axis } => index::gather(a(0)?, a(1)?, *axis)?,
        Op::ScatterAdd { axis } => index::scatter_add(a(0)?, a(1)?, a(2)?, *axis)?,
        Op::GroupedMatmul => index::grouped_matmul(a(0)?, a(1)?, a(2)?)?,
        Op::Sort { axis, descending } => index::sort(a(0)?, *axis, *descending, false)?,
        Op::Argsort { axis, descending } => index::sort(a(0)?, *axis, *descending, true)?,
        Op::TopK {
            axis,
            k,
            largest,
            indices,
        } => index::topk(a(0)?, *axis, dim(k)?, *largest, *indices)?,
        Op::ArgMax { axis } => index::argmax(a(0)?, *axis)?,
        Op::Scan { axis, reverse } => {
            let h0 = if args.len() > 2 { Some(a(2)?) } else { None };
            scan::scan(a(0)?, a(1)?, h0, *axis, *reverse)?
        }
        Op::ScanMatrix { axis } => {
            let h0 = if args.len() > 2 { Some(a(2)?) } else { None };
            scan::scan_matrix(a(0)?, a(1)?, h0, *axis)?
        }
        Op::ScanFn {
            axis,
            n_state,
            n_xs,
            body,
        } => {
            let xs = (0..args.len()).map(a).collect::<Result<Vec<_>, _>>()?;
            return scan::scan_fn(&xs, *axis, *n_state, *n_xs, body, ctx, id).map(Val::Tuple);
        }
        Op::Extract { index } => match args.first() {
            Some(Val::Tuple(ts)) => ts.get(*index).cloned().ok_or_else(|| {
                format!("the tuple has {} elements, no element {index}", ts.len())
            })?,
            _ => return Err("the operand is not a tuple".to_string().into()),
        },
        Op::Conv1dCausal => scan::conv1d_causal(a(0)?, a(1)?)?,
        Op::Fused { body } => {
            let xs = (0..args.len())
                .map(|k| a(k).cloned())
                .collect::<Result<Vec<_>, _>>()?;
            let mut out =
                eval_graph(body, ctx, Some(&xs)).map_err(|e| format!("fused body: {e}"))?;
            if out.len() != 1 {
                return Err(format!("internal: a fused body returned {} values", out.len()).into());
            }
            out.pop().expect("one value")
        }
        Op::LinearAttn { chunk, strict } => {
            let g = if args.len() > 3 { Some(a(3)?) } else { None };
            linear_attn::linear_attn(a(0)?, a(1)?, a(2)?, g, *chunk, *strict)?
        }
        Op::Attention {
            mask,
            scale,
            tile_q,
            tile_k,
        } => {
            let tiles = (*tile_q, *tile_k);
            let shape = expect.tensor()?.1;
            let extra = (3..args.len()).map(a).collect::<Result<Vec<_>, _>>()?;
            let ops = attention::mask_operands(&extra)?;
            attention::attention(a(0)?, a(1)?, a(2)?, (mask, &ops), *scale, tiles, shape)?.0
        }
        Op::AttentionLse {
            mask,
            scale,
            tile_q,
            tile_k,
        } => {
            let shape = match expect {
                Expect::Tuple(ts) if ts.len() == 2 => ts[0].1.clone(),
                _ => {
                    return Err("internal: `attention_lse` without a pair type"
                        .to_string()
                        .into());
                }
            };
            let tiles = (*tile_q, *tile_k);
            let extra = (3..args.len()).map(a).collect::<Result<Vec<_>, _>>()?;
            let ops = attention::mask_operands(&extra)?;
            let (out, lse) =
                attention::attention(a(0)?, a(1)?, a(2)?, (mask, &ops), *scale, tiles, &shape)?;
            return Ok(Val::Tuple(vec![out, lse]));
        }
    };
    Ok(Val::T(t))
}
