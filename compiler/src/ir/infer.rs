//! Type inference: the one place that says which operand types an operator accepts and what
//! type it produces. The front end, the verifier and later passes all call [`infer`].

use super::dim::DimExpr;
use super::op::{BinaryOp, Literal, Op, ReduceOp, UnaryOp};
use super::types::{Shape, TensorType, Type};
use seqc_runtime::DType;

mod linear_attn;

type R<T> = Result<T, String>;

fn fmt_shape(s: &[DimExpr]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[DimExpr], b: &[DimExpr]) -> R<Shape> {
    let n = a.len().max(b.len());
    let one = DimExpr::constant(1);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            &a[i + a.len() - n]
        } else {
            &one
        };
        let db = if i + b.len() >= n {
            &b[i + b.len() - n]
        } else {
            &one
        };
        if da == db || *db == one {
            out.push(da.clone());
        } else if *da == one {
            out.push(db.clone());
        } else {
            return Err(format!(
                "shapes {} and {} do not broadcast: dim {} is {} in one and {} in the other",
                fmt_shape(a),
                fmt_shape(b),
                i as i64 - n as i64,
                da,
                db
            ));
        }
    }
    Ok(out)
}

fn tensor<'a>(t: &'a Type, what: &str) -> R<&'a TensorType> {
    t.tensor()
        .ok_or_else(|| format!("{what} is a tuple; take an element of it first"))
}

fn arity(op: &Op, inputs: &[&Type], n: usize) -> R<()> {
    if inputs.len() != n {
        return Err(format!(
            "`{}` takes {n} operand(s), found {}",
            op.name(),
            inputs.len()
        ));
    }
    Ok(())
}

fn check_axis(axis: usize, rank: usize, what: &str) -> R<()> {
    if axis >= rank {
        return Err(format!(
            "{what}: axis {axis} is out of range for a tensor of rank {rank}"
        ));
    }
    Ok(())
}

fn check_nonneg_shape(shape: &[DimExpr]) -> R<()> {
    for d in shape {
        if let Some(c) = d.as_const()
            && c < 0
        {
            return Err(format!("dimension {c} is negative"));
        }
    }
    Ok(())
}

fn product(shape: &[DimExpr]) -> DimExpr {
    shape.iter().fold(DimExpr::constant(1), |acc, d| acc.mul(d))
}

/// The dtype a literal of this kind defaults to.
pub fn literal_dtype(l: &Literal) -> DType {
    match l {
        Literal::Float(_) => DType::F32,
        Literal::Int(_) => DType::I32,
        Literal::Bool(_) => DType::Bool,
    }
}

/// Infers the result type of `op` applied to operands of types `inputs`.
pub fn infer(op: &Op, inputs: &[&Type]) -> R<Type> {
    let t = |i: usize| tensor(inputs[i], &format!("operand {}", i + 1));
    let out = match op {
        Op::Input { .. } | Op::Param { .. } => {
            return Err("inputs and params carry declared types".into());
        }
        Op::Const { value, dtype } => {
            arity(op, inputs, 0)?;
            let ok = match value {
                Literal::Float(_) => dtype.is_float(),
                Literal::Int(_) => dtype.is_float() || dtype.is_int(),
                Literal::Bool(_) => *dtype == DType::Bool,
            };
            if !ok {
                return Err(format!("literal {value:?} cannot have dtype {dtype}"));
            }
            TensorType::scalar(*dtype)
        }
        Op::Iota { shape, axis } => {
            arity(op, inputs, 0)?;
            check_nonneg_shape(shape)?;
            check_axis(*axis, shape.len(), "iota")?;
            TensorType::new(DType::I32, shape.clone())
        }
        Op::Random { shape, .. } => {
            arity(op, inputs, 0)?;
            check_nonneg_shape(shape)?;
            TensorType::new(DType::F32, shape.clone())
        }
        Op::Unary(u) => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            let ok = match u {
                UnaryOp::Not => x.dtype == DType::Bool,
                UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu => {
                    x.dtype.is_float() || x.dtype.is_int()
                }
                _ => x.dtype.is_float(),
            };
            if !ok {
                return Err(format!("`{}` does not accept dtype {}", op.name(), x.dtype));
            }
            x.clone()
        }
        Op::Binary(b) => {
            arity(op, inputs, 2)?;
            let (x, y) = (t(0)?, t(1)?);
            if x.dtype != y.dtype {
                return Err(format!(
                    "`{}` needs operands of one dtype, found {} and {}",
                    op.name(),
                    x.dtype,
                    y.dtype
                ));
            }
            let ok = match b {
                BinaryOp::And | BinaryOp::Or => x.dtype == DType::Bool,
                BinaryOp::Eq | BinaryOp::Ne => true,
                BinaryOp::Pow => x.dtype.is_float(),
                _ => x.dtype != DType::Bool,
            };
            if !ok {
                return Err(format!("`{}` does not accept dtype {}", op.name(), x.dtype));
            }
            let shape = broadcast_shapes(&x.shape, &y.shape)?;
            let dtype = if b.is_comparison() {
                DType::Bool
            } else {
                x.dtype
            };
            TensorType::new(dtype, shape)
        }
        Op::Select => {
            arity(op, inputs, 3)?;
            let (c, a, b) = (t(0)?, t(1)?, t(2)?);
            if c.dtype != DType::Bool {
                return Err(format!("the condition must be bool, found {}", c.dtype));
            }
            if a.dtype != b.dtype {
                return Err(format!(
                    "`select` branches must have one dtype, found {} and {}",
                    a.dtype, b.dtype
                ));
            }
            let s = broadcast_shapes(&c.shape, &a.shape)?;
            TensorType::new(a.dtype, broadcast_shapes(&s, &b.shape)?)
        }
        Op::Cast { to } => {
            arity(op, inputs, 1)?;
            TensorType::new(*to, t(0)?.shape.clone())
        }
        Op::Reduce {
            op: r,
            axes,
            keepdim,
        } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            if axes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "reduction axes {axes:?} must be sorted and distinct"
                ));
            }
            for a in axes {
                check_axis(*a, x.rank(), op.name())?;
            }
            let float_only = matches!(r, ReduceOp::Mean | ReduceOp::LogSumExp);
            if x.dtype == DType::Bool || (float_only && !x.dtype.is_float()) {
                return Err(format!("`{}` does not accept dtype {}", op.name(), x.dtype));
            }
            let mut shape = Vec::new();
            for (i, d) in x.shape.iter().enumerate() {
                if axes.contains(&i) {
                    if *keepdim {
                        shape.push(DimExpr::constant(1));
                    }
                } else {
                    shape.push(d.clone());
                }
            }
            TensorType::new(x.dtype, shape)
        }
        Op::Einsum { spec } => infer_einsum(spec, inputs)?,
        Op::Reshape { shape } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_nonneg_shape(shape)?;
            if product(&x.shape) != product(shape) {
                return Err(format!(
                    "cannot reshape {} ({} elements) to {} ({} elements)",
                    fmt_shape(&x.shape),
                    product(&x.shape),
                    fmt_shape(shape),
                    product(shape)
                ));
            }
            TensorType::new(x.dtype, shape.clone())
        }
        Op::Transpose { perm } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank() {
                return Err(format!(
                    "permutation {perm:?} has {} entries for a tensor of rank {}",
                    perm.len(),
                    x.rank()
                ));
            }
            for &p in perm {
                if p >= x.rank() || seen[p] {
                    return Err(format!("{perm:?} is not a permutation of 0..{}", x.rank()));
                }
                seen[p] = true;
            }
            TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p].clone()).collect())
        }
        Op::Broadcast { shape } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_nonneg_shape(shape)?;
            let b = broadcast_shapes(&x.shape, shape)?;
            if b != *shape {
                return Err(format!(
                    "cannot broadcast {} to {}",
                    fmt_shape(&x.shape),
                    fmt_shape(shape)
                ));
            }
            TensorType::new(x.dtype, shape.clone())
        }
        Op::Slice {
            axis,
            start,
            end,
            step,
        } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_axis(*axis, x.rank(), "slice")?;
            if *step < 1 {
                return Err(format!("slice step must be at least 1, found {step}"));
            }
            let len = end.sub(start);
            if let Some(c) = len.as_const()
                && c < 0
            {
                return Err(format!("slice end {end} is before its start {start}"));
            }
            if let (Some(e), Some(d)) = (end.as_const(), x.shape[*axis].as_const())
                && e > d
            {
                return Err(format!("slice end {e} is past the dim's size {d}"));
            }
            if let Some(s) = start.as_const()
                && s < 0
            {
                return Err(format!("slice start {s} is negative"));
            }
            let mut shape = x.shape.clone();
            shape[*axis] = len.ceil_div(*step).expect("step >= 1");
            TensorType::new(x.dtype, shape)
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err("`concat` needs at least one operand".into());
            }
            let first = t(0)?;
            check_axis(*axis, first.rank(), "concat")?;
            let mut total = DimExpr::constant(0);
            for i in 0..inputs.len() {
                let x = t(i)?;
                if x.dtype != first.dtype || x.rank() != first.rank() {
                    return Err(format!(
                        "`concat` operand {} is {}, but operand 1 is {}",
                        i + 1,
                        x,
                        first
                    ));
                }
                for (k, (a, b)) in x.shape.iter().zip(&first.shape).enumerate() {
                    if k != *axis && a != b {
                        return Err(format!(
                            "`concat` operand {} has {} at axis {k}, operand 1 has {}",
                            i + 1,
                            a,
                            b
                        ));
                    }
                }
                total = total.add(&x.shape[*axis]);
            }
            let mut shape = first.shape.clone();
            shape[*axis] = total;
            TensorType::new(first.dtype, shape)
        }
        Op::Pad {
            axis,
            before,
            after,
            ..
        } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_axis(*axis, x.rank(), "pad")?;
            for p in [before, after] {
                if p.as_const().is_some_and(|c| c < 0) {
                    return Err(format!("padding {p} is negative"));
                }
            }
            let mut shape = x.shape.clone();
            shape[*axis] = shape[*axis].add(before).add(after);
            TensorType::new(x.dtype, shape)
        }
        Op::Take { axis } => {
            arity(op, inputs, 2)?;
            let (x, idx) = (t(0)?, t(1)?);
            check_axis(*axis, x.rank(), "take")?;
            need_int(idx, "take index")?;
            let mut shape = x.shape[..*axis].to_vec();
            shape.extend(idx.shape.iter().cloned());
            shape.extend(x.shape[axis + 1..].iter().cloned());
            TensorType::new(x.dtype, shape)
        }
        Op::Gather { axis } => {
            arity(op, inputs, 2)?;
            let (x, idx) = (t(0)?, t(1)?);
            check_axis(*axis, x.rank(), "gather")?;
            need_int(idx, "gather index")?;
            same_rank_except(x, idx, *axis, "gather")?;
            TensorType::new(x.dtype, idx.shape.clone())
        }
        Op::ScatterAdd { axis } => {
            arity(op, inputs, 3)?;
            let (base, idx, src) = (t(0)?, t(1)?, t(2)?);
            check_axis(*axis, base.rank(), "scatter_add")?;
            need_int(idx, "scatter_add index")?;
            if idx.shape != src.shape {
                return Err(format!(
                    "`scatter_add` index {} and source {} must have one shape",
                    fmt_shape(&idx.shape),
                    fmt_shape(&src.shape)
                ));
            }
            if src.dtype != base.dtype {
                return Err(format!(
                    "`scatter_add` source is {}, base is {}",
                    src.dtype, base.dtype
                ));
            }
            same_rank_except(base, idx, *axis, "scatter_add")?;
            base.clone()
        }
        Op::GroupedMatmul => {
            arity(op, inputs, 3)?;
            let (x, w, group) = (t(0)?, t(1)?, t(2)?);
            need_float(x, "grouped_matmul")?;
            need_int(group, "grouped_matmul group")?;
            let fits = x.rank() == 2
                && w.rank() == 3
                && group.rank() == 1
                && w.dtype == x.dtype
                && w.shape[2] == x.shape[1]
                && group.shape[0] == x.shape[0];
            if !fits {
                return Err(format!(
                    "`grouped_matmul` takes x: float[N, I], w: [E, O, I] of x's dtype and \
                     group: int[N], found {x}, {w} and {group}"
                ));
            }
            TensorType::new(x.dtype, vec![x.shape[0].clone(), w.shape[1].clone()])
        }
        Op::Sort { axis, .. } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_axis(*axis, x.rank(), "sort")?;
            x.clone()
        }
        Op::Argsort { axis, .. } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_axis(*axis, x.rank(), "argsort")?;
            TensorType::new(DType::I32, x.shape.clone())
        }
        Op::TopK {
            axis, k, indices, ..
        } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_axis(*axis, x.rank(), "topk")?;
            if let (Some(kc), Some(n)) = (k.as_const(), x.shape[*axis].as_const())
                && (kc < 0 || kc > n)
            {
                return Err(format!("topk k = {kc} is outside 0..={n}"));
            }
            let mut shape = x.shape.clone();
            shape[*axis] = k.clone();
            TensorType::new(if *indices { DType::I32 } else { x.dtype }, shape)
        }
        Op::ArgMax { axis } => {
            arity(op, inputs, 1)?;
            let x = t(0)?;
            check_axis(*axis, x.rank(), "argmax")?;
            let mut shape = x.shape.clone();
            shape.remove(*axis);
            TensorType::new(DType::I32, shape)
        }
        Op::Scan { axis, .. } => {
            if inputs.len() != 2 && inputs.len() != 3 {
                return Err(format!(
                    "`scan` takes 2 or 3 operands, found {}",
                    inputs.len()
                ));
            }
            let (a, b) = (t(0)?, t(1)?);
            check_axis(*axis, b.rank(), "scan")?;
            need_float(b, "scan")?;
            if a.dtype != b.dtype {
                return Err(format!("`scan` decay is {}, input is {}", a.dtype, b.dtype));
            }
            let s = broadcast_shapes(&a.shape, &b.shape)?;
            if s != b.shape {
                return Err(format!(
                    "`scan` decay {} must broadcast to the input's shape {}",
                    fmt_shape(&a.shape),
                    fmt_shape(&b.shape)
                ));
            }
            if inputs.len() == 3 {
                check_init(op, b, *axis, t(2)?)?;
            }
            b.clone()
        }
        Op::ScanMatrix { axis } => {
            if inputs.len() != 2 && inputs.len() != 3 {
                return Err(format!(
                    "`scan_matrix` takes 2 or 3 operands, found {}",
                    inputs.len()
                ));
            }
            let (a, b) = (t(0)?, t(1)?);
            need_float(b, "scan_matrix")?;
            if b.rank() < 2 || *axis != b.rank() - 2 {
                return Err(format!(
                    "`scan_matrix` input must be [..., T, N] with time axis {}, found {}",
                    b.rank().saturating_sub(2),
                    b
                ));
            }
            let n = &b.shape[b.rank() - 1];
            let mut want = b.shape.clone();
            want.push(n.clone());
            if a.shape != want || a.dtype != b.dtype {
                return Err(format!(
                    "`scan_matrix` transition must be {}, found {}",
                    TensorType::new(b.dtype, want),
                    a
                ));
            }
            if inputs.len() == 3 {
                check_init(op, b, *axis, t(2)?)?;
            }
            b.clone()
        }
        Op::ScanFn {
            axis,
            n_state,
            n_xs,
            body,
        } => return infer_scan_fn(*axis, *n_state, *n_xs, body, inputs),
        Op::Fused { body } => return infer_fused(body, inputs),
        Op::Extract { index } => {
            arity(op, inputs, 1)?;
            match inputs[0] {
                Type::Tuple(ts) => ts.get(*index).cloned().ok_or_else(|| {
                    format!("tuple has {} elements, no element {index}", ts.len())
                })?,
                Type::Tensor(_) => return Err("`extract` needs a tuple operand".into()),
            }
        }
        Op::Conv1dCausal => {
            arity(op, inputs, 2)?;
            let (x, w) = (t(0)?, t(1)?);
            need_float(x, "conv1d_causal")?;
            if x.rank() < 2 || w.rank() != 2 {
                return Err(format!(
                    "`conv1d_causal` takes x: [..., T, C] and w: [C, K], found {x} and {w}"
                ));
            }
            if w.shape[0] != x.shape[x.rank() - 1] || w.dtype != x.dtype {
                return Err(format!(
                    "`conv1d_causal` weight must be {}[{}, K], found {w}",
                    x.dtype,
                    x.shape[x.rank() - 1]
                ));
            }
            x.clone()
        }
        Op::LinearAttn { chunk, .. } => linear_attn::infer(op, *chunk, inputs)?,
        Op::Attention {
            mask,
            scale,
            tile_q,
            tile_k,
        } => {
            mask_operands(op, mask, inputs)?;
            infer_attention(mask, *scale, *tile_q, *tile_k, [t(0)?, t(1)?, t(2)?])?
        }
        Op::AttentionLse {
            mask,
            scale,
            tile_q,
            tile_k,
        } => {
            mask_operands(op, mask, inputs)?;
            let out = infer_attention(mask, *scale, *tile_q, *tile_k, [t(0)?, t(1)?, t(2)?])?;
            let mut lse = out.clone();
            let r = lse.rank();
            lse.shape[r - 1] = DimExpr::constant(1);
            return Ok(Type::Tuple(vec![out, lse]));
        }
    };
    Ok(Type::Tensor(out))
}

/// An attention's operands: q, k, v and then exactly the operands its mask reads
/// (`operand(J, [...])`, J = 3, 4, …), each i32 or bool of the rank the mask reads.
fn mask_operands(op: &Op, mask: &super::mask::Mask, inputs: &[&Type]) -> R<()> {
    let reads = mask.operands();
    let n = reads.last().map_or(3, |(j, _)| j + 1);
    arity(op, inputs, n)?;
    for (j, x) in inputs.iter().enumerate().skip(3) {
        let at: Vec<usize> = reads
            .iter()
            .filter(|(i, _)| *i == j)
            .map(|(_, r)| *r)
            .collect();
        let x = tensor(x, &format!("operand {}", j + 1))?;
        let [rank] = at[..] else {
            return Err(format!(
                "`{}` operand {j} must be read by the mask with one rank, found reads of ranks {at:?}",
                op.name()
            ));
        };
        if x.rank() != rank || !matches!(x.dtype, DType::I32 | DType::Bool) {
            return Err(format!(
                "`{}` operand {j} must be an i32 or bool tensor of rank {rank} (the mask reads it so), found {x}",
                op.name()
            ));
        }
    }
    Ok(())
}

/// `attention(q: [..., T, D], k: [..., S, D], v: [..., S, E])` → [..., T, E], batch dims
/// broadcast.
fn infer_attention(
    mask: &super::mask::Mask,
    scale: f64,
    tile_q: usize,
    tile_k: usize,
    [q, k, v]: [&TensorType; 3],
) -> R<TensorType> {
    mask.check().map_err(|e| format!("`attention` mask: {e}"))?;
    if tile_q == 0 || tile_k == 0 {
        return Err(format!(
            "`attention` tiles must be at least 1, found tile_q={tile_q} tile_k={tile_k}"
        ));
    }
    if !scale.is_finite() {
        return Err(format!("`attention` scale must be finite, found {scale}"));
    }
    need_float(q, "attention")?;
    if q.rank() < 2 || k.rank() < 2 || v.rank() < 2 {
        return Err(format!(
            "`attention` takes q: [..., T, D], k: [..., S, D], v: [..., S, E], found {q}, {k} and {v}"
        ));
    }
    if k.dtype != q.dtype || v.dtype != q.dtype {
        return Err(format!(
            "`attention` operands must share one dtype, found {q}, {k} and {v}"
        ));
    }
    let (rq, rk, rv) = (q.rank(), k.rank(), v.rank());
    if q.shape[rq - 1] != k.shape[rk - 1] {
        return Err(format!(
            "`attention` q and k must have the same last dim D, found {q} and {k}"
        ));
    }
    if k.shape[rk - 2] != v.shape[rv - 2] {
        return Err(format!(
            "`attention` k and v must have the same key dim S, found {k} and {v}"
        ));
    }
    let batch = broadcast_shapes(&q.shape[..rq - 2], &k.shape[..rk - 2])
        .and_then(|b| broadcast_shapes(&b, &v.shape[..rv - 2]))
        .map_err(|e| format!("`attention` batch dims: {e}"))?;
    if let Some(j) = mask.batch_axes().into_iter().find(|&j| j >= batch.len()) {
        return Err(format!(
            "`attention` mask reads batch axis b{j}, but the result has {} batch axes",
            batch.len()
        ));
    }
    for (j, n) in mask.tables() {
        if batch[j] != DimExpr::constant(n as i64) {
            return Err(format!(
                "`attention` mask's table over b{j} has {n} values, but batch axis {j} is {}",
                batch[j]
            ));
        }
    }
    let mut shape = batch;
    shape.push(q.shape[rq - 2].clone());
    shape.push(v.shape[rv - 1].clone());
    Ok(TensorType::new(q.dtype, shape))
}

/// A scan's initial state has the input's shape without the time axis, and its dtype.
fn check_init(op: &Op, b: &TensorType, axis: usize, h0: &TensorType) -> R<()> {
    let mut want = b.shape.clone();
    want.remove(axis);
    if h0.shape != want || h0.dtype != b.dtype {
        return Err(format!(
            "`{}` initial state must be {}, found {}",
            op.name(),
            TensorType::new(b.dtype, want),
            h0
        ));
    }
    Ok(())
}

fn need_int(t: &TensorType, what: &str) -> R<()> {
    if !t.dtype.is_int() {
        return Err(format!(
            "{what} must be an integer tensor, found {}",
            t.dtype
        ));
    }
    Ok(())
}

fn need_float(t: &TensorType, what: &str) -> R<()> {
    if !t.dtype.is_float() {
        return Err(format!("`{what}` needs a float tensor, found {}", t.dtype));
    }
    Ok(())
}

fn same_rank_except(x: &TensorType, idx: &TensorType, axis: usize, what: &str) -> R<()> {
    if x.rank() != idx.rank() {
        return Err(format!(
            "`{what}` index has rank {}, the tensor has rank {}",
            idx.rank(),
            x.rank()
        ));
    }
    for (k, (a, b)) in x.shape.iter().zip(&idx.shape).enumerate() {
        if k != axis && a != b {
            return Err(format!(
                "`{what}` index has {b} at axis {k}, the tensor has {a}"
            ));
        }
    }
    Ok(())
}

fn infer_einsum(spec: &str, inputs: &[&Type]) -> R<TensorType> {
    let (lhs, rhs) = spec
        .split_once("->")
        .ok_or_else(|| format!("einsum spec `{spec}` has no `->`"))?;
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != inputs.len() {
        return Err(format!(
            "einsum spec `{spec}` names {} operand(s), found {}",
            terms.len(),
            inputs.len()
        ));
    }
    let mut sizes: std::collections::BTreeMap<char, DimExpr> = Default::default();
    let mut dtype = None;
    for (i, (term, ty)) in terms.iter().zip(inputs).enumerate() {
        let x = tensor(ty, &format!("einsum operand {}", i + 1))?;
        if !x.dtype.is_float() && !x.dtype.is_int() {
            return Err(format!("einsum does not accept dtype {}", x.dtype));
        }
        if let Some(d) = dtype
            && d != x.dtype
        {
            return Err(format!("einsum operands have dtypes {d} and {}", x.dtype));
        }
        dtype = Some(x.dtype);
        let letters: Vec<char> = term.chars().collect();
        if letters.len() != x.rank() {
            return Err(format!(
                "einsum term `{term}` has {} letters, operand {} has rank {}",
                letters.len(),
                i + 1,
                x.rank()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (c, d) in letters.iter().zip(&x.shape) {
            if !c.is_ascii_lowercase() {
                return Err(format!("einsum letter `{c}` is not a lowercase letter"));
            }
            if !seen.insert(*c) {
                return Err(format!(
                    "einsum term `{term}` repeats `{c}` (diagonals are not supported)"
                ));
            }
            match sizes.get(c) {
                Some(prev) if prev != d => {
                    return Err(format!(
                        "einsum letter `{c}` is {prev} in one operand and {d} in operand {}",
                        i + 1
                    ));
                }
                _ => {
                    sizes.insert(*c, d.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in rhs.chars() {
        if !seen.insert(c) {
            return Err(format!("einsum output `{rhs}` repeats `{c}`"));
        }
        out.push(
            sizes
                .get(&c)
                .cloned()
                .ok_or_else(|| format!("einsum output letter `{c}` is in no operand"))?,
        );
    }
    Ok(TensorType::new(dtype.unwrap_or(DType::F32), out))
}

/// A fused group: operands match the body's inputs, the body holds only elementwise operators,
/// constants and `iota`s, and at most one reduction, which is its single output.
fn infer_fused(body: &super::graph::Graph, inputs: &[&Type]) -> R<Type> {
    let body_inputs: Vec<&TensorType> = body.inputs().map(|(_, id)| body.tensor_ty(id)).collect();
    if inputs.is_empty() || body_inputs.len() != inputs.len() {
        return Err(format!(
            "`fused` body takes {} inputs, the node passes {}",
            body_inputs.len(),
            inputs.len()
        ));
    }
    for (i, (ty, want)) in inputs.iter().zip(&body_inputs).enumerate() {
        let x = tensor(ty, &format!("fused operand {}", i + 1))?;
        if x != *want {
            return Err(format!(
                "`fused` body input {} is {want}, the node passes {x}",
                i + 1
            ));
        }
    }
    let [(_, out)] = body.outputs[..] else {
        return Err(format!(
            "a `fused` body returns one value, this one {}",
            body.outputs.len()
        ));
    };
    for (i, n) in body.nodes.iter().enumerate() {
        let ok = match &n.op {
            Op::Input { .. }
            | Op::Const { .. }
            | Op::Iota { .. }
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Cast { .. } => true,
            Op::Reduce { .. } => i == out.index(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "a `fused` body holds elementwise operators, constants, iotas and one final reduction, not `{}` (%{i})",
                n.op.name()
            ));
        }
    }
    Ok(body.ty(out).clone())
}

fn infer_scan_fn(
    axis: usize,
    n_state: usize,
    n_xs: usize,
    body: &super::graph::Graph,
    inputs: &[&Type],
) -> R<Type> {
    if n_state == 0 || n_xs == 0 || inputs.len() < n_state + n_xs {
        return Err(format!(
            "`scan_fn` needs at least one state and one sequence ({n_state} states, {n_xs} sequences, {} operands)",
            inputs.len()
        ));
    }
    let body_inputs: Vec<&TensorType> = body.inputs().map(|(_, id)| body.tensor_ty(id)).collect();
    if body_inputs.len() != inputs.len() {
        return Err(format!(
            "`scan_fn` body takes {} inputs, the scan passes {}",
            body_inputs.len(),
            inputs.len()
        ));
    }
    let mut len: Option<DimExpr> = None;
    let mut states = Vec::new();
    for (i, (ty, want)) in inputs.iter().zip(&body_inputs).enumerate() {
        let x = tensor(ty, &format!("scan_fn operand {}", i + 1))?;
        let per_step = if (n_state..n_state + n_xs).contains(&i) {
            check_axis(axis, x.rank(), "scan_fn sequence")?;
            let mut s = x.shape.clone();
            let t = s.remove(axis);
            match &len {
                Some(l) if *l != t => {
                    return Err(format!("`scan_fn` sequences have lengths {l} and {t}"));
                }
                _ => len = Some(t),
            }
            TensorType::new(x.dtype, s)
        } else {
            x.clone()
        };
        if per_step != **want {
            return Err(format!(
                "`scan_fn` body input {} is {want}, the scan passes {per_step}",
                i + 1
            ));
        }
        if i < n_state {
            states.push(x.clone());
        }
    }
    if body.outputs.len() != n_state {
        return Err(format!(
            "`scan_fn` body returns {} value(s) for {n_state} state(s)",
            body.outputs.len()
        ));
    }
    let len = len.expect("n_xs >= 1");
    let mut out = Vec::new();
    for (i, ((_, id), s)) in body.outputs.iter().zip(&states).enumerate() {
        let got = body.ty(*id);
        if got != &Type::Tensor(s.clone()) {
            return Err(format!(
                "`scan_fn` body returns {got} for state {}, which is {s}",
                i + 1
            ));
        }
        if axis > s.rank() {
            return Err(format!(
                "`scan_fn` axis {axis} is out of range for state {s}"
            ));
        }
        let mut shape = s.shape.clone();
        shape.insert(axis, len.clone());
        out.push(TensorType::new(s.dtype, shape));
    }
    Ok(Type::Tuple(out))
}
