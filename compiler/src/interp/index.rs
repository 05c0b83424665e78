//! Index operators: iota, take, gather, scatter_add, grouped_matmul (rows through the
//! weights their group index selects), sort / argsort (stable), topk (ties to
//! the lower index) and argmax (the first maximum). Out-of-range indices are errors.

use super::value::{Data, Tensor, numel, offsets, split_axis, strides};
use seqc_runtime::DType;
use std::cmp::Ordering;

/// Out[i₀..iₙ] = i_axis, as i32.
pub(crate) fn iota(shape: &[usize], axis: usize) -> Result<Tensor, String> {
    let (outer, n, inner) = split_axis(shape, axis)?;
    let mut v = Vec::with_capacity(numel(shape)?);
    for _ in 0..outer {
        for i in 0..n {
            v.extend(std::iter::repeat_n(i as i64, inner));
        }
    }
    Tensor::new(DType::I32, shape.to_vec(), Data::I(v))
}

/// Checks an index against 0..n.
fn check(v: i64, n: usize, axis: usize, what: &str) -> Result<usize, String> {
    usize::try_from(v).ok().filter(|&u| u < n).ok_or_else(|| {
        format!("{what} {v} is out of range: valid indices along axis {axis} are 0..{n}")
    })
}

/// out[a, j…, b] = x[a, idx[j…], b].
pub(crate) fn take(x: &Tensor, idx: &Tensor, axis: usize) -> Result<Tensor, String> {
    let (outer, n, inner) = split_axis(&x.shape, axis)?;
    let iv = idx.ints()?;
    let rows = iv
        .iter()
        .map(|&v| check(v, n, axis, "index"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shape = x.shape[..axis].to_vec();
    shape.extend_from_slice(&idx.shape);
    shape.extend_from_slice(&x.shape[axis + 1..]);
    let mut pick = Vec::with_capacity(numel(&shape)?);
    for o in 0..outer {
        for &r in &rows {
            pick.extend((0..inner).map(|i| (o * n + r) * inner + i));
        }
    }
    Tensor::new(x.dtype, shape, x.data.pick(&pick)?)
}

/// out[n, o] = Σ_i x[n, i]·w[group[n], o, i] (f64 accumulation); x: [N, I], w: [E, O, I],
/// group: [N] with values in 0..E.
pub(crate) fn grouped_matmul(x: &Tensor, w: &Tensor, group: &Tensor) -> Result<Tensor, String> {
    let ([rows, i_len], [e_len, o_len, wi], [g_len]) =
        (&x.shape[..], &w.shape[..], &group.shape[..])
    else {
        return Err(format!(
            "grouped_matmul takes x: [N, I], w: [E, O, I], group: [N], found {}, {}, {}",
            x.describe(),
            w.describe(),
            group.describe()
        ));
    };
    if wi != i_len || g_len != rows {
        return Err(format!(
            "grouped_matmul operands disagree: x {}, w {}, group {}",
            x.describe(),
            w.describe(),
            group.describe()
        ));
    }
    let (xv, wv) = (x.floats()?, w.floats()?);
    let groups = group
        .ints()?
        .iter()
        .map(|&v| check(v, *e_len, 0, "group"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(numel(&[*rows, *o_len])?);
    for (n, &e) in groups.iter().enumerate() {
        let xr = &xv[n * i_len..(n + 1) * i_len];
        for o in 0..*o_len {
            let wr = &wv[(e * o_len + o) * i_len..(e * o_len + o + 1) * i_len];
            out.push(xr.iter().zip(wr).map(|(a, b)| a * b).sum());
        }
    }
    Tensor::new(x.dtype, vec![*rows, *o_len], Data::F(out))
}

/// For each element of `idx` (row-major): its value checked against `x.shape[axis]`, and the
/// offset in `x` of the element with the same position except `idx`'s value along `axis`.
fn scatter_positions(
    x: &Tensor,
    idx: &Tensor,
    axis: usize,
    what: &str,
) -> Result<Vec<usize>, String> {
    let n = split_axis(&x.shape, axis)?.1;
    let fits = idx.shape.len() == x.shape.len()
        && idx
            .shape
            .iter()
            .zip(&x.shape)
            .enumerate()
            .all(|(k, (a, b))| k == axis || a <= b);
    if !fits {
        return Err(format!(
            "index {} does not fit {} (same rank, dims no larger except along axis {axis})",
            idx.describe(),
            x.describe()
        ));
    }
    let xs = strides(&x.shape);
    let mut st = xs.clone();
    st[axis] = 0;
    let base = offsets(&idx.shape, &st)?;
    let iv = idx.ints()?;
    base.iter()
        .zip(iv)
        .map(|(&b, &v)| Ok(b + check(v, n, axis, what)? * xs[axis]))
        .collect()
}

/// torch.gather: out[p] = x[p with p_axis = idx[p]].
pub(crate) fn gather(x: &Tensor, idx: &Tensor, axis: usize) -> Result<Tensor, String> {
    let pos = scatter_positions(x, idx, axis, "index")?;
    Tensor::new(x.dtype, idx.shape.clone(), x.data.pick(&pos)?)
}

/// torch.scatter_add: out = base; out[p with p_axis = idx[p]] += src[p] for every p of idx,
/// in row-major order of p (floats accumulate in f64, rounded once at the end).
pub(crate) fn scatter_add(
    base: &Tensor,
    idx: &Tensor,
    src: &Tensor,
    axis: usize,
) -> Result<Tensor, String> {
    if idx.shape != src.shape || src.dtype != base.dtype {
        return Err(format!(
            "index {} and source {} must have one shape, and the source the base's dtype {}",
            idx.describe(),
            src.describe(),
            base.dtype
        ));
    }
    let pos = scatter_positions(base, idx, axis, "index")?;
    let data = match (&base.data, &src.data) {
        (Data::F(b), Data::F(s)) => {
            let mut out = b.clone();
            pos.iter().zip(s).for_each(|(&p, &v)| out[p] += v);
            Data::F(out)
        }
        (Data::I(b), Data::I(s)) => {
            let mut out = b.clone();
            pos.iter()
                .zip(s)
                .for_each(|(&p, &v)| out[p] = out[p].wrapping_add(v));
            Data::I(out)
        }
        _ => {
            return Err(format!(
                "`scatter_add` does not accept dtype {}",
                base.dtype
            ));
        }
    };
    Tensor::new(base.dtype, base.shape.clone(), data)
}

/// The first `k` of every line's stable order along `axis` (descending keeps equal elements
/// in index order too), as values or as i32 positions.
fn first_k(
    x: &Tensor,
    axis: usize,
    k: usize,
    descending: bool,
    indices: bool,
) -> Result<Tensor, String> {
    let (outer, n, inner) = split_axis(&x.shape, axis)?;
    if k > n {
        return Err(format!(
            "k = {k} is more than the {n} elements along axis {axis}"
        ));
    }
    let mut shape = x.shape.clone();
    shape[axis] = k;
    let total = numel(&shape)?;
    let (mut pos, mut src) = (vec![0i64; total], vec![0usize; total]);
    for o in 0..if total == 0 { 0 } else { outer } {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&p, &q| {
                let c = x.data.cmp_at(at(p), at(q));
                if descending { c.reverse() } else { c }
            });
            for (j, &p) in order.iter().take(k).enumerate() {
                let out = (o * k + j) * inner + i;
                pos[out] = p as i64;
                src[out] = at(p);
            }
        }
    }
    if indices {
        Tensor::new(DType::I32, shape, Data::I(pos))
    } else {
        Tensor::new(x.dtype, shape, x.data.pick(&src)?)
    }
}

/// Sorted values (or, with `indices`, the i32 stable sorting permutation) along `axis`.
pub(crate) fn sort(
    x: &Tensor,
    axis: usize,
    descending: bool,
    indices: bool,
) -> Result<Tensor, String> {
    let n = split_axis(&x.shape, axis)?.1;
    first_k(x, axis, n, descending, indices)
}

/// The k largest (or smallest) along `axis`, sorted, ties to the lower index.
pub(crate) fn topk(
    x: &Tensor,
    axis: usize,
    k: usize,
    largest: bool,
    indices: bool,
) -> Result<Tensor, String> {
    first_k(x, axis, k, largest, indices)
}

/// Index of the first maximum along `axis` (NaN counts as the maximum), i32.
pub(crate) fn argmax(x: &Tensor, axis: usize) -> Result<Tensor, String> {
    let (outer, n, inner) = split_axis(&x.shape, axis)?;
    if n == 0 {
        return Err(format!(
            "`argmax` along axis {axis} of {}, which is empty",
            x.describe()
        ));
    }
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let mut best = 0;
            for j in 1..n {
                if x.data.cmp_at(at(j), at(best)) == Ordering::Greater {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    let mut shape = x.shape.clone();
    shape.remove(axis);
    Tensor::new(DType::I32, shape, Data::I(out))
}
