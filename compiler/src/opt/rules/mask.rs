//! Mask recognition: the predicate over (query t, key s, batch indices b0, b1, …) that a bool
//! e-class broadcasting to the scores [batch…, T, S] computes, built from `iota`, i32 and bool
//! constants, integer arithmetic (add, sub, mul, div and rem by constants, minimum, maximum,
//! neg), comparisons, and/or/not, broadcasts and reshapes that only add or drop leading 1s.
//! Axes are right-aligned as in broadcasting: the last axis is s, the one before it t, the
//! others the scores' batch axes (a pattern per head reads the head axis); an axis of size 1
//! contributes index 0. `take` along an axis with a 1-D index that is itself recognised
//! (BigBird's `take(table, iota / BS)`, block → position) substitutes the index into that
//! axis. An i32 or bool value that nothing above recognises becomes an operand of the fused
//! node, read with `operand(J, [...])` at the frame's indices; at most `MAX_OPERANDS` of
//! them. It may depend on no input (BigBird's seeded random-block table, a length computed as
//! `sum(ones([T]))`) or on the inputs (Longformer's global tokens, a padding mask from
//! `attention_mask`): the fused node reads its values at run time, where the tiles it hides
//! are skipped, while the cost model, which cannot see them, counts every tile that the rest
//! of the mask does not rule out.

use crate::ir::mask::{FIRST_OPERAND, MAX_DEPTH, Mask};
use crate::ir::{BinaryOp, DimExpr, Literal, Op, UnaryOp};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use seqc_runtime::DType;

/// Most operands a recognised mask reads.
const MAX_OPERANDS: usize = 4;

/// A recognised mask and the e-classes of the operands it reads: `operand(3 + i, …)` reads
/// `operands[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognised {
    pub mask: Mask,
    pub operands: Vec<Id>,
}

/// Recognition state: the operands found so far.
struct St {
    operands: Vec<Id>,
}

/// The predicate of a bool e-class that broadcasts to scores of rank `rank`, if it is a
/// structured mask.
pub fn recognise(eg: &EG, class: Id, rank: usize) -> Option<Recognised> {
    let mut st = St {
        operands: Vec::new(),
    };
    let m = rec(eg, eg.find(class), rank, &mut Vec::new(), &mut st)?;
    m.check().ok()?;
    Some(Recognised {
        mask: m,
        operands: st.operands,
    })
}

/// The frame variable of the axis `from_right` places from the last of a value that
/// broadcasts to scores of rank `rank`: s, t, then the batch axes.
fn frame_var(from_right: usize, rank: usize) -> Option<Mask> {
    match from_right {
        0 => Some(Mask::K),
        1 => Some(Mask::Q),
        j => Some(Mask::Batch(rank.checked_sub(j + 1)?)),
    }
}

/// `m` with every occurrence of the variable `var` replaced by `by`.
fn subst(m: &Mask, var: &Mask, by: &Mask) -> Mask {
    if m == var {
        return by.clone();
    }
    match m {
        Mask::Operand(j, idx) => Mask::Operand(*j, idx.iter().map(|x| subst(x, var, by)).collect()),
        Mask::Not(x) => Mask::Not(Box::new(subst(x, var, by))),
        Mask::Bin(op, a, b) => Mask::bin(*op, subst(a, var, by), subst(b, var, by)),
        Mask::Q | Mask::K | Mask::Batch(_) | Mask::Table(..) | Mask::Int(_) | Mask::Bool(_) => {
            m.clone()
        }
    }
}

/// An i32 or bool class read as an operand at the frame's indices (index 0 along
/// its axes of size 1).
fn operand(class: Id, ty: &crate::ir::TensorType, rank: usize, st: &mut St) -> Option<Mask> {
    if !matches!(ty.dtype, DType::I32 | DType::Bool) {
        return None;
    }
    let r = ty.rank();
    let one = DimExpr::constant(1);
    let idx = (0..r)
        .map(|a| {
            if ty.shape[a] == one {
                Some(Mask::Int(0))
            } else {
                frame_var(r - 1 - a, rank)
            }
        })
        .collect::<Option<Vec<_>>>()?;
    let i = match st.operands.iter().position(|c| *c == class) {
        Some(i) => i,
        None if st.operands.len() < MAX_OPERANDS => {
            st.operands.push(class);
            st.operands.len() - 1
        }
        None => return None,
    };
    let read = Mask::Operand(FIRST_OPERAND + i, idx);
    Some(match ty.dtype {
        DType::Bool => Mask::bin(BinaryOp::Ne, read, Mask::Int(0)),
        _ => read,
    })
}

fn strip_leading_ones(shape: &[DimExpr]) -> &[DimExpr] {
    let one = DimExpr::constant(1);
    let n = shape.iter().take_while(|d| **d == one).count();
    &shape[n..]
}

/// The predicate of `class`; `path` holds the e-classes being recognised (the e-graph may
/// have cycles).
fn rec(eg: &EG, class: Id, rank: usize, path: &mut Vec<Id>, st: &mut St) -> Option<Mask> {
    let class = eg.find(class);
    if path.len() > MAX_DEPTH || path.contains(&class) {
        return None;
    }
    let ty = eg[class].data.tensor()?;
    if !matches!(ty.dtype, DType::I32 | DType::Bool) || ty.rank() > rank {
        return None;
    }
    if let Some(t) = table(eg, class, ty, rank) {
        return Some(t);
    }
    path.push(class);
    let mut found = None;
    for n in &eg[class].nodes {
        let mark = st.operands.len();
        match node_pred(eg, n, rank, path, st).filter(|m| m.kind().is_ok()) {
            Some(m) => {
                found = Some(m);
                break;
            }
            // Operands taken by a failed attempt are given back.
            None => st.operands.truncate(mark),
        }
    }
    path.pop();
    found.or_else(|| operand(class, ty, rank, st))
}

/// The predicate of one e-node of a recognisable class.
fn node_pred(eg: &EG, n: &TNode, rank: usize, path: &mut Vec<Id>, st: &mut St) -> Option<Mask> {
    let kids = &n.children;
    match n.op.op() {
        Op::Iota { shape, axis } => {
            if shape[*axis] == DimExpr::constant(1) {
                return Some(Mask::Int(0));
            }
            match shape.len().checked_sub(axis + 1)? {
                0 => Some(Mask::K),
                1 => Some(Mask::Q),
                j => Some(Mask::Batch(rank.checked_sub(j + 1)?)),
            }
        }
        Op::Const {
            value: Literal::Int(c),
            dtype: DType::I32,
        } => i32::try_from(*c).ok().map(|c| Mask::Int(c.into())),
        Op::Const {
            value: Literal::Bool(b),
            dtype: DType::Bool,
        } => Some(Mask::Bool(*b)),
        Op::Unary(UnaryOp::Not) => rec(eg, kids[0], rank, path, st).map(|x| Mask::Not(Box::new(x))),
        Op::Unary(UnaryOp::Abs) => {
            // |x| = max(x, 0 − x), also for i32::MIN (both wrap to itself).
            let x = rec(eg, kids[0], rank, path, st)?;
            let neg = Mask::bin(BinaryOp::Sub, Mask::Int(0), x.clone());
            Some(Mask::bin(BinaryOp::Max, x, neg))
        }
        Op::Unary(UnaryOp::Neg) => {
            rec(eg, kids[0], rank, path, st).map(|x| Mask::bin(BinaryOp::Sub, Mask::Int(0), x))
        }
        Op::Binary(op) if *op != BinaryOp::Pow => {
            let a = rec(eg, kids[0], rank, path, st)?;
            let b = rec(eg, kids[1], rank, path, st)?;
            Some(Mask::bin(*op, a, b))
        }
        Op::Broadcast { .. } => rec(eg, kids[0], rank, path, st),
        Op::Take { axis } => {
            // out[…, i, …] = x[…, idx[i], …]: the index (1-D, recognised in its own frame,
            // where its axis is the last) is substituted for x's variable of that axis.
            let x_ty = eg[eg.find(kids[0])].data.tensor()?;
            let idx_ty = eg[eg.find(kids[1])].data.tensor()?;
            if idx_ty.rank() != 1 || *axis >= x_ty.rank() {
                return None;
            }
            let var = frame_var(x_ty.rank() - 1 - axis, rank)?;
            let x = rec(eg, kids[0], rank, path, st)?;
            let idx = rec(eg, kids[1], 1, path, st)?;
            Some(subst(&x, &var, &subst(&idx, &Mask::K, &var)))
        }
        Op::Reshape { shape } => {
            let from = eg[eg.find(kids[0])].data.tensor()?;
            if strip_leading_ones(&from.shape) == strip_leading_ones(shape) {
                rec(eg, kids[0], rank, path, st)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Most values of a recognised table.
const MAX_TABLE: usize = 4096;

/// A constant i32 e-class that varies along one batch axis only (size > 1, every other axis
/// 1), as `table(bJ, [...])`.
fn table(eg: &EG, class: Id, ty: &crate::ir::TensorType, rank: usize) -> Option<Mask> {
    if ty.dtype != DType::I32 {
        return None;
    }
    let one = DimExpr::constant(1);
    let mut varying = ty.shape.iter().enumerate().filter(|(_, d)| **d != one);
    let (axis, d) = varying.next()?;
    if varying.next().is_some() {
        return None;
    }
    let n = usize::try_from(d.as_const()?).ok()?;
    let from_right = ty.rank() - 1 - axis;
    if from_right < 2 || n > MAX_TABLE {
        return None;
    }
    let vs = const_values(eg, class, 0)?;
    if vs.len() != n {
        return None;
    }
    Some(Mask::Table(rank.checked_sub(from_right + 1)?, vs))
}

/// The row-major values of a constant i32 e-class built from constants, broadcasts of a
/// single value, concatenations and reshapes.
fn const_values(eg: &EG, class: Id, depth: usize) -> Option<Vec<i64>> {
    let class = eg.find(class);
    let ty = eg[class].data.tensor()?;
    if depth > MAX_DEPTH || ty.dtype != DType::I32 {
        return None;
    }
    let n = ty
        .shape
        .iter()
        .map(|d| d.as_const().and_then(|c| usize::try_from(c).ok()))
        .product::<Option<usize>>()?;
    if n > MAX_TABLE {
        return None;
    }
    eg[class].nodes.iter().find_map(|node| {
        let kids = &node.children;
        let vs = match node.op.op() {
            Op::Const {
                value: Literal::Int(c),
                ..
            } => vec![*c],
            Op::Broadcast { .. } => {
                let v = const_values(eg, kids[0], depth + 1)?;
                match v[..] {
                    [x] => vec![x; n],
                    _ => return None,
                }
            }
            Op::Reshape { .. } => const_values(eg, kids[0], depth + 1)?,
            Op::Concat { axis } => {
                // Row-major concatenation is plain appending when the axes before `axis`
                // are all 1.
                let one = DimExpr::constant(1);
                if ty.shape[..*axis].iter().any(|d| *d != one) {
                    return None;
                }
                let mut all = Vec::new();
                for k in kids {
                    all.extend(const_values(eg, *k, depth + 1)?);
                }
                all
            }
            _ => return None,
        };
        (vs.len() == n).then_some(vs)
    })
}
