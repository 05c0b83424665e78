//! The cost model: FLOPs and bytes moved per node at concrete dims, combined as a roofline
//! time against a [`Target`]. Used by extraction (per e-node) and by `seqc stats` (per graph).
//!
//! Per node: FLOPs as listed in [`node_cost`]; bytes = every operand read once plus the result
//! written once. Views (`reshape`, `transpose`, `broadcast`, `slice`, `extract`) and leaves
//! (`input`, `param`, `const`) cost 0 FLOPs and 0 bytes: their readers pay for the reads.
//! Time = max(FLOPs / peak FLOP/s, bytes / bandwidth), with the contraction peak for einsums
//! and the vector peak for everything else. Symbolic dims are evaluated at the user's dims;
//! unbound ones take [`default_dims`]. All arithmetic is f64 (no overflow).

use crate::ir::{DimBindings, DimExpr, Graph, Op, ReduceOp, TensorType, Type};
use serde::Serialize;

/// Throughput figures of a machine. The one place where hardware numbers live.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    pub name: &'static str,
    /// Peak FLOP/s of contractions (matmul units).
    pub contraction_flops: f64,
    /// Peak FLOP/s of everything else.
    pub vector_flops: f64,
    /// Memory bandwidth, bytes/s (read + written).
    pub bandwidth: f64,
}

impl Target {
    /// This project's build machine (shared/notes/toolchain.md, "This machine's CPU,
    /// measured"): AMD EPYC Zen 4, 2 cores, AVX-512; numpy f32 matmul 185–190 GFLOP/s on both
    /// cores; a 256 MB copy at about 22 GB/s counting bytes read and written. No separate
    /// vector figure was measured, so the matmul figure stands for both.
    pub fn cpu() -> Target {
        Target {
            name: "cpu",
            contraction_flops: 187.5e9,
            vector_flops: 187.5e9,
            bandwidth: 22e9,
        }
    }

    /// NVIDIA H100 SXM: 989 TFLOP/s bf16 tensor cores, 67 TFLOP/s fp32, 3.35 TB/s HBM3.
    pub fn h100() -> Target {
        Target {
            name: "h100",
            contraction_flops: 989e12,
            vector_flops: 67e12,
            bandwidth: 3.35e12,
        }
    }

    /// Roofline time of one node, in seconds.
    pub fn time(&self, c: &NodeCost) -> f64 {
        let peak = if c.contraction {
            self.contraction_flops
        } else {
            self.vector_flops
        };
        (c.flops / peak).max(c.bytes / self.bandwidth)
    }
}

/// The dims used when none is given: `B` = 1, `T` = 4096, any other dim 1. `given` wins;
/// names the graph does not declare are kept as given.
pub fn default_dims(g: &Graph, given: &DimBindings) -> DimBindings {
    let mut d = given.clone();
    for name in &g.dims {
        d.entry(name.clone()).or_insert(match name.as_str() {
            "B" => 1,
            "T" => 4096,
            _ => 1,
        });
    }
    d
}

/// What one node costs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeCost {
    pub flops: f64,
    pub bytes: f64,
    /// Bytes of the result if it is materialised (0 for views and leaves).
    pub out_bytes: f64,
    /// Whether the FLOPs run on contraction units.
    pub contraction: bool,
}

fn dim(d: &DimExpr, dims: &DimBindings) -> f64 {
    d.eval(dims).map_or(1.0, |v| v.max(0) as f64)
}

fn numel(t: &TensorType, dims: &DimBindings) -> f64 {
    t.shape.iter().map(|d| dim(d, dims)).product()
}

fn tensor_bytes(t: &TensorType, dims: &DimBindings) -> f64 {
    numel(t, dims) * t.dtype.size_bytes() as f64
}

fn type_bytes(t: &Type, dims: &DimBindings) -> f64 {
    match t {
        Type::Tensor(t) => tensor_bytes(t, dims),
        Type::Tuple(ts) => ts.iter().map(|t| tensor_bytes(t, dims)).sum(),
    }
}

/// Whether `op` is a view: it moves no data and does no arithmetic.
pub fn is_view(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Extract { .. }
    )
}

/// The cost of `op` on operands of types `inputs` giving `out`, at `dims`.
///
/// FLOPs: `attention` as in `attention_cost.rs` (only the tiles it computes); elementwise ops,
/// casts and selects 1 per output element; reductions and `argmax`
/// 1 per input element; an einsum of n operands n per point of its iteration space (the
/// product of every letter's size: n − 1 multiplies and an add); `scan` 2 per element,
/// `scan_matrix` 2·N per element; `conv1d_causal` 2·K per output element; sorts and top-k
/// n·log₂(axis length) per element; `scatter_add` 1 per source element; `scan_fn` its body's
/// FLOPs times the sequence length (the body's bytes too are counted once per step). Gathers,
/// `take`, `concat`, `pad`, `iota` and `random` move bytes only.
pub fn node_cost(op: &Op, inputs: &[&Type], out: &Type, dims: &DimBindings) -> NodeCost {
    if is_view(op) || matches!(op, Op::Input { .. } | Op::Param { .. } | Op::Const { .. }) {
        return NodeCost::default();
    }
    let ins: Vec<&TensorType> = inputs.iter().filter_map(|t| t.tensor()).collect();
    let in_elems = |i: usize| ins.get(i).map_or(0.0, |t| numel(t, dims));
    let in_bytes: f64 = inputs.iter().map(|t| type_bytes(t, dims)).sum();
    let out_bytes = type_bytes(out, dims);
    let out_elems = out.tensor().map_or(0.0, |t| numel(t, dims));
    let mut bytes = in_bytes + out_bytes;
    let mut contraction = false;
    let flops = match op {
        Op::Iota { .. } | Op::Random { .. } | Op::Concat { .. } | Op::Pad { .. } => 0.0,
        Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast { .. } => out_elems,
        Op::Reduce { op: r, .. } => match r {
            ReduceOp::LogSumExp => 3.0 * in_elems(0),
            _ => in_elems(0),
        },
        Op::ArgMax { .. } => in_elems(0),
        Op::Einsum { spec } => {
            contraction = true;
            einsum_points(spec, &ins, dims) * ins.len().max(1) as f64
        }
        Op::Take { .. } | Op::Gather { .. } => {
            // Reads the selected elements and the indices, not the whole source.
            bytes = inputs.get(1).map_or(0.0, |t| type_bytes(t, dims)) + 2.0 * out_bytes;
            0.0
        }
        Op::ScatterAdd { .. } => in_elems(2),
        Op::Sort { axis, .. } | Op::Argsort { axis, .. } | Op::TopK { axis, .. } => {
            let n = ins
                .first()
                .and_then(|t| t.shape.get(*axis))
                .map_or(1.0, |d| dim(d, dims));
            in_elems(0) * n.max(2.0).log2()
        }
        Op::Scan { .. } => 2.0 * in_elems(1),
        Op::ScanMatrix { .. } => {
            let n = ins
                .get(1)
                .and_then(|t| t.shape.last())
                .map_or(1.0, |d| dim(d, dims));
            2.0 * n * in_elems(1)
        }
        Op::Conv1dCausal => {
            let k = ins
                .get(1)
                .and_then(|t| t.shape.get(1))
                .map_or(1.0, |d| dim(d, dims));
            2.0 * k * out_elems
        }
        Op::Attention {
            mask,
            tile_q,
            tile_k,
            ..
        }
        | Op::AttentionLse {
            mask,
            tile_q,
            tile_k,
            ..
        } => {
            contraction = true;
            let c = super::attention_cost::attention_cost(mask, (*tile_q, *tile_k), &ins, dims);
            // The log-sum-exp result (if any) is written too.
            let lse = match out {
                Type::Tuple(ts) => ts.get(1).map_or(0.0, |t| tensor_bytes(t, dims)),
                Type::Tensor(_) => 0.0,
            };
            bytes = c.bytes + lse;
            c.flops
        }
        Op::ScanFn {
            axis,
            n_state,
            body,
            ..
        } => {
            let steps = ins
                .get(*n_state)
                .and_then(|t| t.shape.get(*axis))
                .map_or(1.0, |d| dim(d, dims));
            let s = graph_cost(body, dims);
            bytes += s.bytes * steps;
            s.flops * steps
        }
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Const { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Extract { .. } => 0.0,
    };
    NodeCost {
        flops,
        bytes,
        out_bytes,
        contraction,
    }
}

/// The size of an einsum's iteration space: the product of every letter's size.
fn einsum_points(spec: &str, ins: &[&TensorType], dims: &DimBindings) -> f64 {
    let Some((lhs, _)) = spec.split_once("->") else {
        return 0.0;
    };
    let mut sizes: std::collections::BTreeMap<char, f64> = Default::default();
    for (term, t) in lhs.split(',').zip(ins) {
        for (c, d) in term.chars().zip(&t.shape) {
            sizes.insert(c, dim(d, dims));
        }
    }
    sizes.values().product()
}

/// A dim's value at `dims` (1 when unbound, 0 when negative).
pub(crate) fn dim_value(d: &DimExpr, dims: &DimBindings) -> f64 {
    dim(d, dims)
}

/// FLOPs, bytes moved and the largest materialised intermediate of a graph at some dims
/// (counted in f64, rounded to integers; saturating at `u64::MAX`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub flops: u64,
    pub bytes: u64,
    pub largest_intermediate_bytes: u64,
}

/// The totals over the nodes that the outputs depend on (dead nodes are not counted).
/// `dims` are completed with [`default_dims`].
pub fn stats(g: &Graph, dims: &DimBindings) -> Stats {
    graph_cost(g, &default_dims(g, dims)).stats()
}

/// The roofline time of a graph on `target` (sum over its live nodes), in seconds.
pub fn graph_time(g: &Graph, dims: &DimBindings, target: &Target) -> f64 {
    let dims = default_dims(g, dims);
    live(g)
        .into_iter()
        .map(|i| target.time(&node_cost_in(g, i, &dims)))
        .sum()
}

fn node_cost_in(g: &Graph, i: usize, dims: &DimBindings) -> NodeCost {
    let n = &g.nodes[i];
    let tys: Vec<&Type> = n.inputs.iter().map(|x| g.ty(*x)).collect();
    node_cost(&n.op, &tys, &n.ty, dims)
}

fn graph_cost(g: &Graph, dims: &DimBindings) -> Totals {
    let mut s = Totals::default();
    for i in live(g) {
        let c = node_cost_in(g, i, dims);
        s.flops += c.flops;
        s.bytes += c.bytes;
        s.largest = s.largest.max(c.out_bytes);
    }
    s
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    flops: f64,
    bytes: f64,
    largest: f64,
}

impl Totals {
    fn stats(self) -> Stats {
        // `as` from f64 to u64 saturates (and maps NaN to 0).
        Stats {
            flops: self.flops.round() as u64,
            bytes: self.bytes.round() as u64,
            largest_intermediate_bytes: self.largest.round() as u64,
        }
    }
}

/// Indices of the nodes the outputs depend on, ascending.
fn live(g: &Graph) -> Vec<usize> {
    let mut keep = vec![false; g.nodes.len()];
    let mut stack: Vec<usize> = g.outputs.iter().map(|(_, id)| id.index()).collect();
    while let Some(i) = stack.pop() {
        if i >= keep.len() || std::mem::replace(&mut keep[i], true) {
            continue;
        }
        stack.extend(g.nodes[i].inputs.iter().map(|x| x.index()));
    }
    (0..g.nodes.len()).filter(|&i| keep[i]).collect()
}
