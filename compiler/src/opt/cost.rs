//! The cost model: FLOPs and bytes moved per node at concrete dims, combined as a roofline
//! time against a [`Target`]. Used by extraction (per e-node) and by `seqc stats` (per graph).
//!
//! Per node: FLOPs as listed in [`node_cost`]; bytes = every operand read once plus the result
//! written once. Views (`reshape`, `transpose`, `broadcast`, `slice`, `extract`) and leaves
//! (`input`, `param`, `const`) cost 0 FLOPs and 0 bytes: their readers pay for the reads.
//! Time = max(FLOPs / peak FLOP/s, bytes / bandwidth), with the contraction peak for einsums
//! and the vector peak for everything else, at least the node's sequential depth (dependent
//! steps: a scan's length, `linear_attn`'s chunk count) times the target's step latency,
//! plus the target's fixed cost per kernel for every node that does work. Nodes that depend on no input and have a shape free of symbolic dims
//! (weight concatenations, transposes of weights, `−exp(A_log)`) are *load-time* nodes:
//! computed once when the weights are bound, they cost nothing per run
//! ([`load_time_nodes`]). Symbolic dims are evaluated at the user's dims; unbound ones take
//! [`default_dims`]. All arithmetic is f64 (no overflow).

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
    /// Fixed cost of one kernel (dispatch to the thread pool, or a GPU launch), seconds.
    pub kernel_overhead: f64,
    /// Latency of one dependent step of a sequential loop (a scan's h_t needs h_{t−1}),
    /// seconds: a node of sequential depth d takes at least d times this, however few FLOPs
    /// and bytes it has.
    pub step_latency: f64,
}

impl Target {
    /// This project's build machine (shared/notes/toolchain.md, "This machine's CPU,
    /// measured"): AMD EPYC Zen 4, 2 cores, AVX-512; numpy f32 matmul 185–190 GFLOP/s on both
    /// cores; a 256 MB copy at about 22 GB/s counting bytes read and written. No separate
    /// vector figure was measured, so the matmul figure stands for both. Kernel overhead: an
    /// estimate of one dispatch to and join of the runtime's thread pool (not yet measured:
    /// the CPU backend does not exist yet). Step latency: a scan step's dependent
    /// multiply-add, about 4 cycles at about 4 GHz, 1 ns (its loads do not depend on the
    /// state and are prefetched; an estimate, not measured).
    pub fn cpu() -> Target {
        Target {
            name: "cpu",
            contraction_flops: 187.5e9,
            vector_flops: 187.5e9,
            bandwidth: 22e9,
            kernel_overhead: 2e-6,
            step_latency: 1e-9,
        }
    }

    /// NVIDIA H100 SXM: 989 TFLOP/s bf16 tensor cores, 67 TFLOP/s fp32, 3.35 TB/s HBM3; a
    /// kernel launch costs a few microseconds (estimate, not measured here). Step latency:
    /// 100 ns, about one L2 round trip (≈ 200 cycles at 1.755–1.98 GHz, published
    /// microbenchmarks) per step of a sequential loop, whose few threads (one per independent
    /// lane) leave nothing else to hide it behind (an estimate, not measured here). This is
    /// the term that makes a long sequential scan expensive on a GPU.
    pub fn h100() -> Target {
        Target {
            name: "h100",
            contraction_flops: 989e12,
            vector_flops: 67e12,
            bandwidth: 3.35e12,
            kernel_overhead: 4e-6,
            step_latency: 100e-9,
        }
    }

    /// Roofline time of one node, in seconds.
    pub fn time(&self, c: &NodeCost) -> f64 {
        let peak = if c.contraction {
            self.contraction_flops
        } else {
            self.vector_flops
        };
        let work = (c.flops / peak)
            .max(c.bytes / self.bandwidth)
            .max(c.depth * self.step_latency);
        if c.flops > 0.0 || c.bytes > 0.0 {
            work + self.kernel_overhead
        } else {
            work
        }
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
    /// Sequential depth: dependent steps that cannot run in parallel (0 for parallel work).
    pub depth: f64,
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
/// n·log₂(axis length) per element; `scatter_add` 1 per source element; `grouped_matmul`
/// 2·N·O·I, moving x, the groups, the result and the weights of at most min(E, N) experts; `scan_fn` its body's
/// FLOPs times the sequence length (the body's bytes too are counted once per step). Gathers,
/// `take`, `concat`, `pad`, `iota` and `random` move bytes only. Sequential depth: a scan's
/// length (`scan`, `scan_matrix`, `scan_fn`), `linear_attn`'s chunk count; 0 otherwise. A `fused` group does its
/// body's FLOPs and moves only its operands and result. `linear_attn`: see
/// [`linear_attn_cost`].
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
    let mut depth = 0.0;
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
        Op::GroupedMatmul => {
            contraction = true;
            // Only the experts some row selects are read: at most min(E, N) of them.
            let (n, i) = ins.first().map_or((0.0, 0.0), |x| {
                (dim(&x.shape[0], dims), dim(&x.shape[1], dims))
            });
            let o = out_elems / n.max(1.0);
            let (e, elem) = ins.get(1).map_or((0.0, 4.0), |w| {
                (dim(&w.shape[0], dims), w.dtype.size_bytes() as f64)
            });
            let x_g = ins.first().map_or(0.0, |t| tensor_bytes(t, dims))
                + ins.get(2).map_or(0.0, |t| tensor_bytes(t, dims));
            bytes = x_g + out_bytes + e.min(n) * o * i * elem;
            2.0 * n * o * i
        }
        Op::Sort { axis, .. } | Op::Argsort { axis, .. } | Op::TopK { axis, .. } => {
            let n = ins
                .first()
                .and_then(|t| t.shape.get(*axis))
                .map_or(1.0, |d| dim(d, dims));
            in_elems(0) * n.max(2.0).log2()
        }
        Op::Scan { axis, .. } | Op::ScanMatrix { axis } => {
            depth = ins
                .get(1)
                .and_then(|t| t.shape.get(*axis))
                .map_or(1.0, |d| dim(d, dims));
            // `scan_matrix`: an N × N matrix–vector product per step.
            let per_element = match op {
                Op::ScanMatrix { .. } => ins
                    .get(1)
                    .and_then(|t| t.shape.last())
                    .map_or(1.0, |d| dim(d, dims)),
                _ => 1.0,
            };
            2.0 * per_element * in_elems(1)
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
            let s = graph_cost(body, dims, |_| true);
            depth = steps;
            bytes += s.bytes * steps;
            s.flops * steps
        }
        // One loop nest: the body's arithmetic, the operands read once, the result written
        // once (the body's intermediates never reach memory).
        Op::Fused { body } => graph_cost(body, dims, |_| true).flops,
        Op::LinearAttn { chunk, .. } => {
            contraction = true;
            let la = linear_attn_cost(*chunk, &ins, dims);
            bytes += la.state_bytes;
            depth = la.chunks;
            la.flops
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
        depth,
    }
}

/// What `linear_attn` costs beyond reading its operands and writing its result.
struct LinearAttnCost {
    flops: f64,
    /// The [K, V] state of every chunk boundary, written once and read once.
    state_bytes: f64,
    /// The chunks, whose states are passed on one after another (the sequential depth).
    chunks: f64,
}

/// The chunked algorithm with chunk C (`interp/linear_attn.rs`), per leading index, with
/// C′ = min(C, T) and N = ⌈T / C⌉ chunks: intra-chunk scores q·kᵀ and their product with v,
/// 2·T·C′·(K + V) (each chunk's full C′×C′ block, as a matmul unit computes it); the decay
/// factors of the block, T·C′ (per step) or T·C′·K (per channel); the state read by the
/// queries and the state update, 4·T·K·V; the state decay, N·K·V. Bytes beyond operands and
/// result: each chunk's state written and read, 2·N·K·V elements. No T×T intermediate.
fn linear_attn_cost(chunk: usize, ins: &[&TensorType], dims: &DimBindings) -> LinearAttnCost {
    let (Some(q), Some(v)) = (ins.first(), ins.get(2)) else {
        return LinearAttnCost {
            flops: 0.0,
            state_bytes: 0.0,
            chunks: 0.0,
        };
    };
    let r = q.shape.len();
    let at = |t: &TensorType, i: usize| t.shape.get(i).map_or(1.0, |d| dim(d, dims));
    let lead: f64 = q.shape[..r.saturating_sub(2)]
        .iter()
        .map(|d| dim(d, dims))
        .product();
    let (t, k, vd) = (
        at(q, r.wrapping_sub(2)),
        at(q, r.wrapping_sub(1)),
        at(v, r.wrapping_sub(1)),
    );
    let c = (chunk as f64).min(t).max(1.0);
    let n = (t / chunk.max(1) as f64).ceil();
    let decay = match ins.get(3) {
        None => 0.0,
        Some(g) if g.shape.len() == r => t * c * k,
        Some(_) => t * c,
    };
    let flops = 2.0 * t * c * (k + vd) + decay + 4.0 * t * k * vd + n * k * vd;
    LinearAttnCost {
        flops: lead * flops,
        state_bytes: lead * 2.0 * n * k * vd * q.dtype.size_bytes() as f64,
        chunks: n,
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
    /// Work done once when the weights are bound (load-time nodes), not per run.
    pub load_time_flops: u64,
    pub load_time_bytes: u64,
}

/// The per-run totals over the nodes that the outputs depend on (dead nodes and load-time
/// nodes are not counted; the latter's work is reported apart). `dims` are completed with
/// [`default_dims`].
pub fn stats(g: &Graph, dims: &DimBindings) -> Stats {
    let dims = default_dims(g, dims);
    let load = load_time_nodes(g);
    let mut s = graph_cost(g, &dims, |i| !load[i]).stats();
    let l = graph_cost(g, &dims, |i| load[i]);
    s.load_time_flops = l.flops.round() as u64;
    s.load_time_bytes = l.bytes.round() as u64;
    s
}

/// The per-run roofline time of a graph on `target` (sum over its live nodes that are not
/// load-time nodes), in seconds.
pub fn graph_time(g: &Graph, dims: &DimBindings, target: &Target) -> f64 {
    let dims = default_dims(g, dims);
    let load = load_time_nodes(g);
    live(g)
        .into_iter()
        .filter(|&i| !load[i])
        .map(|i| target.time(&node_cost_in(g, i, &dims)))
        .sum()
}

/// Whether a node with operator `op`, whose operands all depend on no input (`operands_static`),
/// producing `out`, is a load-time node: it depends on no input, is not a leaf, and its shape
/// has no symbolic dim (so it is computed once when weights are bound, not per run, and its
/// size does not grow with the sequence).
pub fn is_load_time(op: &Op, operands_static: bool, out: &Type) -> bool {
    let leaf = matches!(op, Op::Input { .. } | Op::Param { .. } | Op::Const { .. });
    let fixed_shape = |t: &TensorType| t.shape.iter().all(|d| d.is_const());
    let fixed = match out {
        Type::Tensor(t) => fixed_shape(t),
        Type::Tuple(ts) => ts.iter().all(fixed_shape),
    };
    !leaf && operands_static && fixed
}

/// Whether each node of `g` depends on no input (params, constants, `iota`, `random` only).
pub fn static_nodes(g: &Graph) -> Vec<bool> {
    let mut st = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        st[i] = !matches!(n.op, Op::Input { .. }) && n.inputs.iter().all(|x| st[x.index()]);
    }
    st
}

/// Which nodes of `g` are load-time nodes (see [`is_load_time`]).
pub fn load_time_nodes(g: &Graph) -> Vec<bool> {
    let st = static_nodes(g);
    g.nodes
        .iter()
        .map(|n| is_load_time(&n.op, n.inputs.iter().all(|x| st[x.index()]), &n.ty))
        .collect()
}

fn node_cost_in(g: &Graph, i: usize, dims: &DimBindings) -> NodeCost {
    let n = &g.nodes[i];
    let tys: Vec<&Type> = n.inputs.iter().map(|x| g.ty(*x)).collect();
    node_cost(&n.op, &tys, &n.ty, dims)
}

fn graph_cost(g: &Graph, dims: &DimBindings, counted: impl Fn(usize) -> bool) -> Totals {
    let mut s = Totals::default();
    for i in live(g).into_iter().filter(|&i| counted(i)) {
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
            load_time_flops: 0,
            load_time_bytes: 0,
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
