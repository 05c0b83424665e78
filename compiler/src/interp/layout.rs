//! Layout operators: reshape, transpose, broadcast, slice, concat and pad. Each computes, for
//! every output element, which input element it is, and picks those.

use super::value::{
    Data, Tensor, broadcast_offsets, empty_for, numel, offsets, split_axis, strides,
};
use crate::ir::Literal;

/// Same elements, new shape.
pub(crate) fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    if numel(shape)? != x.data.len() {
        return Err(format!(
            "cannot reshape {} ({} elements) to {shape:?}",
            x.describe(),
            x.data.len()
        ));
    }
    Tensor::new(x.dtype, shape.to_vec(), x.data.clone())
}

/// Out axis i is input axis perm[i].
pub(crate) fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, String> {
    let r = x.shape.len();
    let mut seen = vec![false; r];
    if perm.len() != r
        || perm
            .iter()
            .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!(
            "{perm:?} is not a permutation of the axes of {}",
            x.describe()
        ));
    }
    let st = strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let idx = offsets(&shape, &pst)?;
    Tensor::new(x.dtype, shape, x.data.pick(&idx)?)
}

/// Broadcasts to `shape` (NumPy rules).
pub(crate) fn broadcast(x: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    let idx = broadcast_offsets(&x.shape, shape)?;
    Tensor::new(x.dtype, shape.to_vec(), x.data.pick(&idx)?)
}

/// Elements start, start+step, … < end along `axis`.
pub(crate) fn slice(
    x: &Tensor,
    axis: usize,
    start: usize,
    end: usize,
    step: i64,
) -> Result<Tensor, String> {
    let (outer, n, inner) = split_axis(&x.shape, axis)?;
    if step < 1 {
        return Err(format!("slice step must be at least 1, found {step}"));
    }
    if start > end || end > n {
        return Err(format!(
            "slice {start}..{end} is not within 0..{n} along axis {axis} of {}",
            x.describe()
        ));
    }
    let step = usize::try_from(step).unwrap_or(usize::MAX);
    let picked: Vec<usize> = (start..end).step_by(step).collect();
    let mut idx = Vec::with_capacity(outer * picked.len() * inner);
    for o in 0..outer {
        for &p in &picked {
            idx.extend((0..inner).map(|i| (o * n + p) * inner + i));
        }
    }
    let mut shape = x.shape.clone();
    shape[axis] = picked.len();
    Tensor::new(x.dtype, shape, x.data.pick(&idx)?)
}

/// Joins along `axis`; the other dims must be equal.
pub(crate) fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor, String> {
    let first = xs.first().ok_or("`concat` needs at least one operand")?;
    let mut all = empty_for(first.dtype);
    let mut bases = Vec::with_capacity(xs.len());
    let mut total = 0usize;
    for (k, x) in xs.iter().enumerate() {
        let same_rest = x.shape.len() == first.shape.len()
            && x.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if x.dtype != first.dtype || !same_rest {
            return Err(format!(
                "operand {} is {}, operand 1 is {}",
                k + 1,
                x.describe(),
                first.describe()
            ));
        }
        bases.push(all.len());
        all.append(&x.data)?;
        total += split_axis(&x.shape, axis)?.1;
    }
    let (outer, _, inner) = split_axis(&first.shape, axis)?;
    let mut shape = first.shape.clone();
    shape[axis] = total;
    let mut idx = Vec::with_capacity(numel(&shape)?);
    for o in 0..outer {
        for (x, base) in xs.iter().zip(&bases) {
            let n = x.shape[axis];
            idx.extend((0..n * inner).map(|j| base + o * n * inner + j));
        }
    }
    Tensor::new(first.dtype, shape, all.pick(&idx)?)
}

/// `before` and `after` copies of `value` along `axis`.
pub(crate) fn pad(
    x: &Tensor,
    axis: usize,
    before: usize,
    after: usize,
    value: Literal,
) -> Result<Tensor, String> {
    let (outer, n, inner) = split_axis(&x.shape, axis)?;
    let fill = match (value, &x.data) {
        (Literal::Float(f), Data::F(_)) => Data::F(vec![f]),
        (Literal::Int(i), Data::F(_)) => Data::F(vec![i as f64]),
        (Literal::Int(i), Data::I(_)) => Data::I(vec![i]),
        (Literal::Bool(b), Data::B(_)) => Data::B(vec![b]),
        _ => return Err(format!("cannot pad {} with {value:?}", x.describe())),
    };
    let mut shape = x.shape.clone();
    shape[axis] = n.saturating_add(before).saturating_add(after);
    let total = numel(&shape)?;
    let mut all = x.data.clone();
    let fill_at = all.len();
    all.append(&fill)?;
    let mut idx = Vec::with_capacity(total);
    for o in 0..outer {
        idx.extend(std::iter::repeat_n(fill_at, before * inner));
        idx.extend((0..n * inner).map(|j| o * n * inner + j));
        idx.extend(std::iter::repeat_n(fill_at, after * inner));
    }
    Tensor::new(x.dtype, shape, all.pick(&idx)?)
}
