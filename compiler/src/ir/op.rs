//! The operators of the tensor IR and their exact semantics. This file is the contract that
//! the interpreter, the type inference, the text form and every later backend implement.
//!
//! Conventions: shapes are row-major; axes are non-negative (the front end normalises
//! negative axes); broadcasting is NumPy's (align right; a dim broadcasts only if it is the
//! constant 1). Index results (`iota`, `argmax`, `argsort`, `topk` indices) are `i32`.

use super::dim::DimExpr;
use super::graph::Graph;
use super::mask::Mask;
use seqc_runtime::DType;

/// Elementwise unary functions. Float only unless noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryOp {
    /// −x (float or int).
    Neg,
    /// |x| (float or int).
    Abs,
    Exp,
    /// Natural logarithm.
    Log,
    /// log(1 + x).
    Log1p,
    Sqrt,
    /// 1 / sqrt(x).
    Rsqrt,
    /// 1 / x.
    Recip,
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// log(1 + e^x), computed stably (x for x > 20, as torch does).
    Softplus,
    /// x · sigmoid(x).
    Silu,
    /// x · Φ(x) with the exact erf: 0.5·x·(1 + erf(x/√2)).
    Gelu,
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    GeluTanh,
    /// max(x, 0) (float or int).
    Relu,
    /// x if x > 0 else e^x − 1.
    Elu,
    Tanh,
    Erf,
    Sin,
    Cos,
    /// Largest integer ≤ x, as a float.
    Floor,
    /// Logical not (bool only).
    Not,
}

/// Elementwise binary functions with broadcasting. Both operands have the same dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Float: true division. Int: floor division (rounds toward −∞, like Python's //).
    Div,
    /// Float: x − y·floor(x/y). Int: Python's %, sign of the divisor. Division by zero is an
    /// evaluation error for ints.
    Rem,
    /// x^y (float only).
    Pow,
    Max,
    Min,
    /// Comparisons produce `bool`.
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    /// Logical and / or (bool only).
    And,
    Or,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Ne
        )
    }
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceOp {
    /// Σ (accumulated in f64 by the interpreter).
    Sum,
    /// Σ / count.
    Mean,
    Max,
    Min,
    /// log Σ e^x, computed as m + log Σ e^{x−m} with m the max (−∞ if all are −∞).
    LogSumExp,
}

/// Distributions for compile-time random constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Distribution {
    /// Standard normal N(0, 1).
    Normal,
    /// Uniform on [0, 1).
    Uniform,
    /// Standard normal as PyTorch's CPU `torch.randn` (float32) draws it after
    /// `torch.manual_seed(seed)` (`seqc::rng::torch_randn`), in row-major order.
    TorchNormal,
}

/// A scalar literal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Literal {
    Float(f64),
    Int(i64),
    Bool(bool),
}

/// One operator. Inputs are listed per variant as `inputs: [..]`; attributes are fields.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A run-time input; inputs: []. Type given by the declaration.
    Input { name: String },
    /// A weight; inputs: []. `name` is the checkpoint key (may contain dots).
    Param { name: String },
    /// A scalar constant of `dtype`; inputs: []. Shape [].
    Const { value: Literal, dtype: DType },
    /// inputs: []. Out[i₀..iₙ] = i_axis, dtype i32, of the given shape.
    Iota { shape: Vec<DimExpr>, axis: usize },
    /// inputs: []. A constant f32 tensor drawn from `dist` with the project's seeded RNG
    /// (`seqc::rng`): the same seed and shape give the same values on every backend.
    Random {
        shape: Vec<DimExpr>,
        dist: Distribution,
        seed: u64,
    },
    /// inputs: [x]. Elementwise.
    Unary(UnaryOp),
    /// inputs: [a, b]. Elementwise with broadcasting; out dtype = a's, bool for comparisons.
    Binary(BinaryOp),
    /// inputs: [cond (bool), a, b]. Out = cond ? a : b, broadcasting all three.
    Select,
    /// inputs: [x]. Converts each element: float→int truncates toward zero; bool→number is 0/1;
    /// number→bool is x ≠ 0.
    Cast { to: DType },
    /// inputs: [x]. Reduces the sorted, distinct `axes`; with `keepdim` they stay as 1.
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keepdim: bool,
    },
    /// inputs: one per operand term. `spec` is e.g. `"bhtd,bhsd->bhts"`: one lowercase letter
    /// per axis, each letter of equal size wherever it appears (no broadcasting), output
    /// letters distinct and drawn from the inputs; letters missing from the output are
    /// summed (f64 accumulation in the interpreter).
    Einsum { spec: String },
    /// inputs: [x]. Same elements in row-major order; products of shapes are equal.
    Reshape { shape: Vec<DimExpr> },
    /// inputs: [x]. Out axis i is input axis perm[i].
    Transpose { perm: Vec<usize> },
    /// inputs: [x]. Broadcasts to `shape` (NumPy rules, rank may grow on the left).
    Broadcast { shape: Vec<DimExpr> },
    /// inputs: [x]. Elements start, start+step, … < end along `axis`; 0 ≤ start ≤ end ≤ dim,
    /// step ≥ 1. Out size ceil((end − start) / step).
    Slice {
        axis: usize,
        start: DimExpr,
        end: DimExpr,
        step: i64,
    },
    /// inputs: [x₀, x₁, …] (at least one). Joined along `axis`; other dims equal.
    Concat { axis: usize },
    /// inputs: [x]. `before` and `after` copies of `value` added along `axis`.
    Pad {
        axis: usize,
        before: DimExpr,
        after: DimExpr,
        value: Literal,
    },
    /// inputs: [x, idx (int)]. Index select: out shape = x[..axis] ++ idx.shape ++ x[axis+1..],
    /// out[a, j…, b] = x[a, idx[j…], b]. Out-of-range indices are an evaluation error.
    Take { axis: usize },
    /// inputs: [x, idx (int)]. torch.gather: same rank, idx dims ≤ x dims except along `axis`
    /// where any size is allowed; out shape = idx shape; out[p] = x[p with p_axis = idx[p]].
    Gather { axis: usize },
    /// inputs: [base, idx (int), src]. torch.scatter_add: idx and src have the same shape,
    /// out = base; out[p with p_axis = idx[p]] += src[p] for every p of idx.
    ScatterAdd { axis: usize },
    /// inputs: [x: float[N, I], w: float[E, O, I] (x's dtype), group (int): [N]]. Grouped
    /// matrix product, each row through the weights of its group (a mixture-of-experts
    /// expert): out[n, o] = Σ_i x[n, i]·w[group[n], o, i], out: [N, O] (f64 accumulation in
    /// the interpreter, as `einsum`). Rows are independent, so their order does not change
    /// the result. A group outside 0..E is an evaluation error.
    GroupedMatmul,
    /// inputs: [x]. Values sorted along `axis` (stable).
    Sort { axis: usize, descending: bool },
    /// inputs: [x]. The stable permutation that sorts along `axis`, i32.
    Argsort { axis: usize, descending: bool },
    /// inputs: [x]. The k largest (or smallest) along `axis`, in sorted order, ties broken by
    /// lower index first; `indices` selects returning their i32 positions instead of values.
    TopK {
        axis: usize,
        k: DimExpr,
        largest: bool,
        indices: bool,
    },
    /// inputs: [x]. Index of the first maximum along `axis` (axis removed), i32.
    ArgMax { axis: usize },
    /// inputs: [a, b] or [a, b, h0]. Linear recurrence along `axis`:
    /// h_t = a_t ⊙ h_{t−1} + b_t with h_{−1} = h0 (zeros when absent); out = all h_t.
    /// a broadcasts to b's shape; h0 has b's shape without `axis`. `reverse` runs t downwards.
    Scan { axis: usize, reverse: bool },
    /// inputs: [a, b] or [a, b, h0]. Matrix recurrence: a: [..., T, N, N], b: [..., T, N],
    /// h_t[n] = Σ_m a_t[n, m] h_{t−1}[m] + b_t[n]; `axis` is b's time axis (rank(b) − 2).
    ScanMatrix { axis: usize },
    /// inputs: [init₀..init_{s−1}, xs₀..xs_{m−1}, captures…]. General scan along `axis` of
    /// the `xs`: the body graph takes (state₀..state_{s−1}, x₀[t]..x_{m−1}[t], captures…) as its
    /// inputs in that order and returns the new states as its outputs in order. Result is a
    /// tuple of the s states stacked along `axis` (each state's shape with T inserted at
    /// `axis`). `n_state` = s, `n_xs` = m.
    ScanFn {
        axis: usize,
        n_state: usize,
        n_xs: usize,
        body: Box<Graph>,
    },
    /// inputs: [tuple]. Element `index` of a tuple value.
    Extract { index: usize },
    /// inputs: [x: [..., T, C], w: [C, K]]. Depthwise causal conv along axis rank−2:
    /// out[..., t, c] = Σ_{k<K} w[c, k] · x[..., t − (K−1) + k, c], zeros before t = 0.
    Conv1dCausal,
    /// inputs: [x₀..x_{n−1}] (at least one). A fusion group made by the optimizer: the `body`
    /// graph takes the xᵢ as its inputs in order (same types) and returns one value, the
    /// result. The body holds only elementwise operators (unary, binary, `select`, `cast`),
    /// `const`, `iota` and at most one reduction, which must be its output: one loop nest reads each
    /// xᵢ once and writes the result once, with no intermediate in memory.
    Fused { body: Box<Graph> },
    /// inputs: [q, k, v] or [q, k, v, g]. Causal linear attention with decay, computed in
    /// chunks of `chunk` ≥ 1 steps. q, k: [..., T, K]; v: [..., T, V] (the same leading dims,
    /// no broadcasting); g (the log-decay of each step, float): [..., T] (one per step) or
    /// [..., T, K] (one per step and key channel). With G the inclusive cumulative sum of g
    /// along T (G = 0 without g; a per-step g counts for every channel):
    /// `strict = false`: out_t = Σ_{s≤t} Σ_c q_tc k_sc e^{G_tc − G_sc} v_s;
    /// `strict = true`:  out_t = Σ_{s<t} Σ_c q_tc k_sc e^{G_{t−1,c} − G_sc} v_s (out_0 = 0).
    /// Out: [..., T, V]. The chunk size changes the order of evaluation, never the values:
    /// within a chunk the decays are taken relative to the chunk's start (intra-chunk
    /// quadratic form), across chunks a [K, V] state is passed on (docs/rewrites.md, R5).
    LinearAttn { chunk: usize, strict: bool },
    /// inputs: [q: [..., T, D], k: [..., S, D], v: [..., S, E]], one float dtype; the leading
    /// (batch) dims broadcast NumPy-style to the result's [..., T, E]. Fused softmax
    /// attention, per batch index, query t and key s (`mask` over t, s: ir/mask.rs):
    ///   x[t, s] = mask(t, s) ? r(r(Σ_d q[t, d]·k[s, d]) · r(scale)) : −∞
    ///   out[t, e] = Σ_s softmax_s(x[t, ·]) · v[s, e]
    /// where r rounds to the dtype and the dot product accumulates in f64 — exactly what the
    /// unfused `einsum(q, k) · scale`, `select(mask, ·, −inf)`, the prelude's softmax and
    /// `einsum(p, v)` compute, up to summation order. A row with no visible key is NaN in
    /// every column (the unfused form gives −∞ − (−∞)). `tile_q`, `tile_k` (≥ 1) are a
    /// schedule and change no value: the interpreter runs the online-softmax tiled algorithm
    /// (per tile of `tile_q` queries, over tiles of `tile_k` keys with a running max and sum
    /// rescaled as the max grows), skips tiles where the mask is all false and evaluates it
    /// only in tiles where it is not all true (`Mask::classify`). Inputs after v, if any, are
    /// the i32 or bool tensors the mask reads with `operand(3, [...])`, `operand(4, [...])`,
    /// … (e.g. BigBird's random-block table, computed by the graph): exactly those, in order;
    /// the tiles are then classified from their values at run time.
    Attention {
        mask: Mask,
        scale: f64,
        tile_q: usize,
        tile_k: usize,
    },
    /// inputs and attributes as `Attention`. A tuple (out, lse): `out` is `Attention`'s
    /// result and lse[..., t, 0] = log Σ_s e^{x[t, s]} over the visible keys (−∞ when none),
    /// what `logsumexp(select(mask, scores, −inf))` with `keepdim` gives: the partial results
    /// that log-sum-exp merging combines (LongNet's segments).
    AttentionLse {
        mask: Mask,
        scale: f64,
        tile_q: usize,
        tile_k: usize,
    },
}

impl Op {
    /// The operator's name in the IR text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Const { .. } => "const",
            Op::Iota { .. } => "iota",
            Op::Random { .. } => "random",
            Op::Unary(u) => unary_name(*u),
            Op::Binary(b) => binary_name(*b),
            Op::Select => "select",
            Op::Cast { .. } => "cast",
            Op::Reduce { op, .. } => reduce_name(*op),
            Op::Einsum { .. } => "einsum",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Broadcast { .. } => "broadcast",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Pad { .. } => "pad",
            Op::Take { .. } => "take",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::GroupedMatmul => "grouped_matmul",
            Op::Sort { .. } => "sort",
            Op::Argsort { .. } => "argsort",
            Op::TopK { .. } => "topk",
            Op::ArgMax { .. } => "argmax",
            Op::Scan { .. } => "scan",
            Op::ScanMatrix { .. } => "scan_matrix",
            Op::ScanFn { .. } => "scan_fn",
            Op::Extract { .. } => "extract",
            Op::Conv1dCausal => "conv1d_causal",
            Op::Fused { .. } => "fused",
            Op::LinearAttn { .. } => "linear_attn",
            Op::Attention { .. } => "attention",
            Op::AttentionLse { .. } => "attention_lse",
        }
    }
}

pub const UNARY_OPS: [UnaryOp; 21] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Log1p,
    UnaryOp::Sqrt,
    UnaryOp::Rsqrt,
    UnaryOp::Recip,
    UnaryOp::Sigmoid,
    UnaryOp::Softplus,
    UnaryOp::Silu,
    UnaryOp::Gelu,
    UnaryOp::GeluTanh,
    UnaryOp::Relu,
    UnaryOp::Elu,
    UnaryOp::Tanh,
    UnaryOp::Erf,
    UnaryOp::Sin,
    UnaryOp::Cos,
    UnaryOp::Floor,
    UnaryOp::Not,
];

pub const BINARY_OPS: [BinaryOp; 16] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Rem,
    BinaryOp::Pow,
    BinaryOp::Max,
    BinaryOp::Min,
    BinaryOp::Lt,
    BinaryOp::Le,
    BinaryOp::Gt,
    BinaryOp::Ge,
    BinaryOp::Eq,
    BinaryOp::Ne,
    BinaryOp::And,
    BinaryOp::Or,
];

pub const REDUCE_OPS: [ReduceOp; 5] = [
    ReduceOp::Sum,
    ReduceOp::Mean,
    ReduceOp::Max,
    ReduceOp::Min,
    ReduceOp::LogSumExp,
];

pub fn unary_name(u: UnaryOp) -> &'static str {
    match u {
        UnaryOp::Neg => "neg",
        UnaryOp::Abs => "abs",
        UnaryOp::Exp => "exp",
        UnaryOp::Log => "log",
        UnaryOp::Log1p => "log1p",
        UnaryOp::Sqrt => "sqrt",
        UnaryOp::Rsqrt => "rsqrt",
        UnaryOp::Recip => "recip",
        UnaryOp::Sigmoid => "sigmoid",
        UnaryOp::Softplus => "softplus",
        UnaryOp::Silu => "silu",
        UnaryOp::Gelu => "gelu",
        UnaryOp::GeluTanh => "gelu_tanh",
        UnaryOp::Relu => "relu",
        UnaryOp::Elu => "elu",
        UnaryOp::Tanh => "tanh",
        UnaryOp::Erf => "erf",
        UnaryOp::Sin => "sin",
        UnaryOp::Cos => "cos",
        UnaryOp::Floor => "floor",
        UnaryOp::Not => "not",
    }
}

pub fn binary_name(b: BinaryOp) -> &'static str {
    match b {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Rem => "rem",
        BinaryOp::Pow => "pow",
        BinaryOp::Max => "maximum",
        BinaryOp::Min => "minimum",
        BinaryOp::Lt => "lt",
        BinaryOp::Le => "le",
        BinaryOp::Gt => "gt",
        BinaryOp::Ge => "ge",
        BinaryOp::Eq => "eq",
        BinaryOp::Ne => "ne",
        BinaryOp::And => "and",
        BinaryOp::Or => "or",
    }
}

pub fn reduce_name(r: ReduceOp) -> &'static str {
    match r {
        ReduceOp::Sum => "sum",
        ReduceOp::Mean => "mean",
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
        ReduceOp::LogSumExp => "logsumexp",
    }
}

pub fn unary_from_name(s: &str) -> Option<UnaryOp> {
    UNARY_OPS.into_iter().find(|u| unary_name(*u) == s)
}

pub fn binary_from_name(s: &str) -> Option<BinaryOp> {
    BINARY_OPS.into_iter().find(|b| binary_name(*b) == s)
}

pub fn reduce_from_name(s: &str) -> Option<ReduceOp> {
    REDUCE_OPS.into_iter().find(|r| reduce_name(*r) == s)
}
