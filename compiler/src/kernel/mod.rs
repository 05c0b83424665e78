//! The kernel IR: what a backend executes. A [`Program`] is an ordered list of kernels over
//! numbered buffers plus a memory plan; a [`Kernel`] is one loop nest (the algorithm) whose
//! loops carry a schedule tag (the how), in the spirit of Halide's split between the two.
//!
//! Lowering (`lower.rs`) turns a tensor-IR graph into a program: views (`reshape`,
//! `transpose`, `broadcast`, `slice`), constants and `iota` become index maps folded into
//! loads, single-use elementwise producers are fused into their elementwise consumer, and
//! everything else is materialised into a buffer by one kernel. Reductions and einsums are
//! loop nests with an accumulator. A `scan_fn` is one kernel: a serial loop over its axis
//! around its body's kernels (`scan_fn.rs`), its states written into their stacked outputs.
//! A `scan` read only by an `einsum` contracting some of its axes is computed inside that
//! einsum's kernel, its states never stored (`scan_einsum.rs`). Sizes and extents stay symbolic ([`DimExpr`]); the runtime
//! evaluates them once the dims are bound. `schedule.rs` then tags inner loops vectorised or
//! unrolled. `print.rs` gives the text form
//! (`seqc dump --stage kernels`); `plan.rs` the live ranges the runtime places buffers by.
//!
//! Scalar semantics: float values are computed in f64 and rounded to f32, f16 or bf16 after
//! every operation whose type is f32, f16 or bf16 (round to nearest even, one rounding from
//! the f64 value), integers in i64 wrapped to i32 likewise, so a fused expression rounds
//! exactly where the interpreter rounds each node. Reductions and contractions of f16/bf16
//! accumulate in f64 like those of f32 and round once at the store. The block statements
//! (`Gemm`, `Recur`, `AttnTile`) are f32 only: f16/bf16 operands get the scalar loop nests.

mod access;
mod attn;
pub mod expand;
mod flash;
pub mod gemm;
mod grouped;
mod inline;
mod linear_attn;
mod lower;
mod mask_tile;
pub mod plan;
pub mod print;
pub mod recur;
mod scan_einsum;
mod scan_fn;
pub mod schedule;
mod subst;

#[cfg(test)]
mod tests;

pub use lower::{KernelError, lower};

/// Operators the optimizer can produce that this backend cannot lower yet: none now.
/// `fused` groups are expanded into their body before lowering (`inline.rs`, this backend
/// fuses the elementwise chain itself); `linear_attn` becomes its recurrence with a [K, V]
/// state (`linear_attn.rs`); `attention` and each `extract` of an `attention_lse` become
/// direct loop nests (`attn.rs`). The compile path passes the list as
/// `OptOptions::avoid_ops`, so an operator added here is avoided by the optimizer.
pub const UNSUPPORTED_OPT_OPS: &[&str] = &[];

use crate::ir::{BinaryOp, DimExpr, NodeId, UnaryOp};
use seqc_runtime::DType;

/// The scalar type of a kernel expression. `F64` is the unrounded accumulator type; `F16`
/// and `BF16` are held in f64 registers like `F32`, rounded to their format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    F32,
    F64,
    F16,
    BF16,
    I32,
    I64,
    Bool,
}

impl Ty {
    /// The kernel type of a storage dtype (every dtype is one).
    pub fn of(d: DType) -> Ty {
        match d {
            DType::F32 => Ty::F32,
            DType::F16 => Ty::F16,
            DType::BF16 => Ty::BF16,
            DType::I32 => Ty::I32,
            DType::I64 => Ty::I64,
            DType::Bool => Ty::Bool,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Ty::F32 | Ty::F64 | Ty::F16 | Ty::BF16)
    }

    pub fn is_int(self) -> bool {
        matches!(self, Ty::I32 | Ty::I64)
    }

    /// The accumulator type for values of this type (f64 for floats, i64 for ints).
    pub fn wide(self) -> Ty {
        match self {
            Ty::F32 | Ty::F64 | Ty::F16 | Ty::BF16 => Ty::F64,
            Ty::I32 | Ty::I64 => Ty::I64,
            Ty::Bool => Ty::Bool,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::F16 => "f16",
            Ty::BF16 => "bf16",
            Ty::I32 => "i32",
            Ty::I64 => "i64",
            Ty::Bool => "bool",
        }
    }
}

/// A buffer of a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufId(pub u32);

/// A loop variable of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Var(pub u32);

/// An accumulator (a mutable scalar local) of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acc(pub u32);

/// A scalar expression. Index arithmetic is ordinary `I64` arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// The current value of a loop variable (i64).
    Var(Var),
    /// The run-time value of the program's dim number `n` (i64).
    Dim(usize),
    Int(i64, Ty),
    Float(f64, Ty),
    Bool(bool),
    /// Element `index` (row-major flat) of a buffer, in the buffer's type.
    Load {
        buf: BufId,
        index: Box<Expr>,
    },
    /// The current value of an accumulator.
    Acc(Acc),
    /// `op` in type `ty` (the operand's type).
    Unary {
        op: UnaryOp,
        ty: Ty,
        x: Box<Expr>,
    },
    /// `op` on two operands of type `ty`; comparisons give `Bool`. Integer division and
    /// remainder are Python's (floor); a zero divisor sets the status and yields 0.
    Binary {
        op: BinaryOp,
        ty: Ty,
        a: Box<Expr>,
        b: Box<Expr>,
    },
    /// `cond ? a : b`, evaluating only the branch taken (so a branch may hold a load that
    /// is out of range when not taken).
    Select {
        cond: Box<Expr>,
        a: Box<Expr>,
        b: Box<Expr>,
    },
    /// Conversion from `from` to `to` (semantics of the IR's `cast`).
    Cast {
        from: Ty,
        to: Ty,
        x: Box<Expr>,
    },
    /// An index read from data: `index` (i64) if 0 ≤ index < len, else the status is set to
    /// "index out of range" and the value is 0.
    Checked {
        index: Box<Expr>,
        len: Box<Expr>,
    },
}

/// How a loop is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sched {
    Serial,
    /// Iterations are independent: the runtime splits the range over its threads. Only a
    /// kernel's outermost loop is parallel.
    Parallel,
    /// An innermost loop whose iterations run as SIMD lanes (`schedule.rs` says when); the
    /// backend picks the width from the target's vector registers.
    Vector,
    /// An innermost loop of this constant extent, repeated in full without a loop.
    Unroll(u32),
}

/// A statement of a loop body.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Loop(Loop),
    /// `buf[index] = value` (value converted to the buffer's type).
    Store {
        buf: BufId,
        index: Expr,
        value: Expr,
    },
    /// `acc = value` (value in the accumulator's type).
    Assign {
        acc: Acc,
        value: Expr,
    },
    /// `if cond { body }`.
    If {
        cond: Expr,
        body: Vec<Stmt>,
    },
    /// One block of a matrix product (see [`Gemm`]).
    Gemm(Box<Gemm>),
    /// One block of columns of a linear-attention recurrence (see [`Recur`]).
    Recur(Box<Recur>),
    /// One (query tile, key tile) step of tiled softmax attention (see [`AttnTile`]).
    AttnTile(Box<AttnTile>),
}

/// A strided view of a buffer as a matrix: element (i, j) is `buf[offset + i·rows + j·cols]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Strided {
    pub buf: BufId,
    pub offset: Expr,
    /// The stride of the first index (elements).
    pub rows: Expr,
    /// The stride of the second index (elements).
    pub cols: Expr,
}

/// `c[i, j] = Σ_{p < k} a[i, p] · b[p, j]` for i < m, j < n: an f32 block product that a
/// backend computes with its register-blocked micro-kernel over packed panels (the CPU backend:
/// `codegen/cpu/gemm.rs`). Products accumulate in f32 with fused multiply-adds, in an order
/// the backend chooses (blocks of k), so the result may differ from the f64-accumulated
/// einsum in the last bits of f32; `c` is overwritten, or added to when `accumulate`. `a`,
/// `b` and `c` must not overlap; m ≤ `gemm::BLOCK_M` and n ≤ `gemm::BLOCK_N`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub m: Expr,
    pub n: Expr,
    pub k: Expr,
    pub a: Strided,
    pub b: Strided,
    pub c: Strided,
    pub accumulate: bool,
}

/// One step of f32 online-softmax attention for a tile of `rows` queries against a tile of
/// `cols` keys (1 ≤ cols ≤ [`AttnTile::KEYS`]), every view indexed [row, column]: with
/// s[i, j] = Σ_{d < depth} q[i, d]·k[j, d] and x = s·scale (scale rounded to f32) where
/// j < cols and (`masked` is false or mask[i, j] ≠ 0), −∞ elsewhere:
///   mx = max(max[i], max_j x);  p = e^{x − mx} (0 where x = −∞);
///   α = e^{max[i] − mx} (0 while max[i] = −∞);  sum[i] = sum[i]·α + Σ_j p;  max[i] = mx;
///   out[i, e] = out[i, e]·α + Σ_j p·v[j, e]  for e < width.
/// A NaN score makes its row's sum and output NaN (the maximum may or may not be NaN).
/// depth and width are at most `gemm::BLOCK_N`; `out` has unit column stride and columns up
/// to `width` rounded up to 16 (the columns past `width` get products with zeros); `max` and
/// `sum` are read at [i, 0]; `mask` spans rows × KEYS and its values matter only when
/// `masked`. The backend fuses the products and the softmax step in registers (CPU:
/// `codegen/cpu/attn_tile.rs`), summing in an order it chooses.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnTile {
    pub rows: Expr,
    pub cols: Expr,
    pub depth: Expr,
    pub width: Expr,
    pub scale: f64,
    pub q: Strided,
    pub k: Strided,
    pub v: Strided,
    pub out: Strided,
    pub max: Strided,
    pub sum: Strided,
    pub mask: Strided,
    pub masked: Expr,
}

impl AttnTile {
    /// Keys per tile at most (the backend's score strip is this wide).
    pub const KEYS: i64 = 64;

    /// The views with whether each is written.
    pub fn views(&self) -> Vec<(&Strided, bool)> {
        vec![
            (&self.q, false),
            (&self.k, false),
            (&self.v, false),
            (&self.out, true),
            (&self.max, true),
            (&self.sum, true),
            (&self.mask, false),
        ]
    }
}

/// The f32 recurrence of causal linear attention over the columns e < `width` of one batch
/// index (`width` ≤ `recur::BLOCK_W`), every view indexed [step or row, column]: with
/// S = `state` (rows × width, set to 0 first), for t < `steps`, o = 0, for c < `rows`:
///   s = d[t, c]·S[c, e] + k[t, c]·v[t, e]   (no `decay`: d = 1);  S[c, e] = s;
///   o[e] += q[t, c]·s   (`strict`: q[t, c]·S[c, e] before the update);
/// then out[t, e] = o[e]. The backend fuses each multiply-add (one rounding) and sums over c
/// in order. `v`, `out` and `state` have unit column stride; `out` and `state` must not
/// overlap each other or any operand.
///
/// With `norm` (n = the K floats at `norm.offset`, unit stride, set to 0 first; they too
/// must overlap nothing else) the task also runs the normaliser, the same recurrence with
/// v = 1: per step den = 0, for c < `rows`: n[c] = d[t, c]·n[c] + k[t, c];
/// den += q[t, c]·n[c] (`strict`: before the update); then out[t, e] = o[e] / den in f32
/// (0/0 = NaN, x/0 = ±inf). Each task computes n itself: with V > `BLOCK_W` the tasks of
/// one batch index repeat it (K multiply-adds per step against K·64 of the block).
#[derive(Clone, Debug, PartialEq)]
pub struct Recur {
    pub steps: Expr,
    pub rows: Expr,
    pub width: Expr,
    pub q: Strided,
    pub k: Strided,
    pub v: Strided,
    pub out: Strided,
    pub state: Strided,
    pub decay: Option<Strided>,
    pub strict: bool,
    pub norm: Option<Strided>,
}

impl Recur {
    /// The views with whether each is written.
    pub fn views(&self) -> Vec<(&Strided, bool)> {
        let mut v = vec![
            (&self.q, false),
            (&self.k, false),
            (&self.v, false),
            (&self.out, true),
            (&self.state, true),
        ];
        v.extend(self.decay.iter().map(|d| (d, false)));
        v.extend(self.norm.iter().map(|n| (n, true)));
        v
    }
}

/// `for var in 0..extent { body }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Loop {
    pub var: Var,
    pub extent: Expr,
    pub sched: Sched,
    pub body: Vec<Stmt>,
}

/// One kernel: a loop nest computing one buffer (or updating it, for `scatter_add`; for a
/// `scan_fn`, the stacked buffer of every state and its body's temporaries).
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// The symbol name in the generated code, `k<index>_<op>`.
    pub name: String,
    /// The IR node it computes and that node's operator name.
    pub node: NodeId,
    pub op: String,
    /// The types of its accumulators, by number.
    pub accs: Vec<Ty>,
    /// The outermost loop; its range is what the runtime splits when it is parallel.
    pub root: Loop,
}

/// Where a buffer's memory comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum BufKind {
    /// A run-time input, by name.
    Input(String),
    /// A weight, by checkpoint name.
    Param(String),
    /// A constant filled by the runtime with the project's seeded RNG (`torch`: with
    /// `rng::torch_randn` instead, always normal).
    Random {
        seed: u64,
        normal: bool,
        torch: bool,
    },
    /// Memory in the per-run arena.
    Temp,
}

/// A buffer: a dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub kind: BufKind,
    pub dtype: DType,
    pub shape: Vec<DimExpr>,
    /// The IR node whose value it holds.
    pub node: NodeId,
}

impl Buffer {
    /// The number of elements, symbolically.
    pub fn numel(&self) -> DimExpr {
        self.shape
            .iter()
            .fold(DimExpr::constant(1), |acc, d| acc.mul(d))
    }
}

/// A lowered graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The symbolic dims, in the graph's order: `Expr::Dim(n)` is `dims[n]`.
    pub dims: Vec<String>,
    pub buffers: Vec<Buffer>,
    /// Kernels in execution order.
    pub kernels: Vec<Kernel>,
    /// The graph's outputs, by name, in declaration order.
    pub outputs: Vec<(String, BufId)>,
}

impl Program {
    pub fn buffer(&self, b: BufId) -> &Buffer {
        &self.buffers[b.0 as usize]
    }
}

impl Expr {
    /// The type of the value.
    pub fn ty(&self, p: &Program, k: &[Ty]) -> Ty {
        match self {
            Expr::Var(_) | Expr::Dim(_) | Expr::Checked { .. } => Ty::I64,
            Expr::Int(_, t) | Expr::Float(_, t) => *t,
            Expr::Bool(_) => Ty::Bool,
            Expr::Load { buf, .. } => Ty::of(p.buffer(*buf).dtype),
            Expr::Acc(a) => k[a.0 as usize],
            Expr::Unary { ty, .. } => *ty,
            Expr::Binary { op, ty, .. } => {
                if op.is_comparison() {
                    Ty::Bool
                } else {
                    *ty
                }
            }
            Expr::Select { a, .. } => a.ty(p, k),
            Expr::Cast { to, .. } => *to,
        }
    }

    /// Visits every load's buffer.
    pub fn for_each_load(&self, f: &mut impl FnMut(BufId)) {
        match self {
            Expr::Var(_)
            | Expr::Dim(_)
            | Expr::Int(..)
            | Expr::Float(..)
            | Expr::Bool(_)
            | Expr::Acc(_) => {}
            Expr::Load { buf, index } => {
                f(*buf);
                index.for_each_load(f);
            }
            Expr::Unary { x, .. } | Expr::Cast { x, .. } => x.for_each_load(f),
            Expr::Binary { a, b, .. } => {
                a.for_each_load(f);
                b.for_each_load(f);
            }
            Expr::Select { cond, a, b } => {
                cond.for_each_load(f);
                a.for_each_load(f);
                b.for_each_load(f);
            }
            Expr::Checked { index, len } => {
                index.for_each_load(f);
                len.for_each_load(f);
            }
        }
    }
}

impl Strided {
    fn exprs_mut(&mut self) -> [&mut Expr; 3] {
        [&mut self.offset, &mut self.rows, &mut self.cols]
    }
}

impl Stmt {
    /// The statement's own expressions (not those of the statements in its body): a loop's
    /// extent, a store's index and value, an assignment's value, a condition, and a block
    /// statement's sizes and the offsets and strides of its views.
    pub fn exprs_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Stmt::Loop(l) => vec![&mut l.extent],
            Stmt::Store { index, value, .. } => vec![index, value],
            Stmt::Assign { value, .. } => vec![value],
            Stmt::If { cond, .. } => vec![cond],
            Stmt::Gemm(g) => {
                let mut v = vec![&mut g.m, &mut g.n, &mut g.k];
                for s in [&mut g.a, &mut g.b, &mut g.c] {
                    v.extend(s.exprs_mut());
                }
                v
            }
            Stmt::Recur(r) => {
                let mut v = vec![&mut r.steps, &mut r.rows, &mut r.width];
                let mut views = vec![&mut r.q, &mut r.k, &mut r.v, &mut r.out, &mut r.state];
                views.extend(r.decay.as_mut());
                views.extend(r.norm.as_mut());
                for s in views {
                    v.extend(s.exprs_mut());
                }
                v
            }
            Stmt::AttnTile(t) => {
                let mut v = vec![
                    &mut t.rows,
                    &mut t.cols,
                    &mut t.depth,
                    &mut t.width,
                    &mut t.masked,
                ];
                for s in [
                    &mut t.q,
                    &mut t.k,
                    &mut t.v,
                    &mut t.out,
                    &mut t.max,
                    &mut t.sum,
                    &mut t.mask,
                ] {
                    v.extend(s.exprs_mut());
                }
                v
            }
        }
    }

    /// The statements nested in this one (a loop's or an `if`'s body).
    pub fn body_mut(&mut self) -> Option<&mut Vec<Stmt>> {
        match self {
            Stmt::Loop(l) => Some(&mut l.body),
            Stmt::If { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Visits every buffer read (`false`) and written (`true`).
    pub fn for_each_access(&self, f: &mut impl FnMut(BufId, bool)) {
        match self {
            Stmt::Loop(l) => l.for_each_access(f),
            Stmt::Store { buf, index, value } => {
                index.for_each_load(&mut |b| f(b, false));
                value.for_each_load(&mut |b| f(b, false));
                f(*buf, true);
            }
            Stmt::Assign { value, .. } => value.for_each_load(&mut |b| f(b, false)),
            Stmt::If { cond, body } => {
                cond.for_each_load(&mut |b| f(b, false));
                for s in body {
                    s.for_each_access(f);
                }
            }
            Stmt::Gemm(g) => {
                for e in [&g.m, &g.n, &g.k] {
                    e.for_each_load(&mut |b| f(b, false));
                }
                for (s, write) in [(&g.a, false), (&g.b, false), (&g.c, true)] {
                    for e in [&s.offset, &s.rows, &s.cols] {
                        e.for_each_load(&mut |b| f(b, false));
                    }
                    f(s.buf, write);
                }
            }
            Stmt::Recur(r) => {
                for e in [&r.steps, &r.rows, &r.width] {
                    e.for_each_load(&mut |b| f(b, false));
                }
                for (s, write) in r.views() {
                    for e in [&s.offset, &s.rows, &s.cols] {
                        e.for_each_load(&mut |b| f(b, false));
                    }
                    f(s.buf, write);
                }
            }
            Stmt::AttnTile(t) => {
                for e in [&t.rows, &t.cols, &t.depth, &t.width, &t.masked] {
                    e.for_each_load(&mut |b| f(b, false));
                }
                for (s, write) in t.views() {
                    for e in [&s.offset, &s.rows, &s.cols] {
                        e.for_each_load(&mut |b| f(b, false));
                    }
                    f(s.buf, write);
                }
            }
        }
    }
}

impl Loop {
    pub fn for_each_access(&self, f: &mut impl FnMut(BufId, bool)) {
        self.extent.for_each_load(&mut |b| f(b, false));
        for s in &self.body {
            s.for_each_access(f);
        }
    }
}
