//! The fused `attention` operator, evaluated by the online-softmax tiled algorithm (the
//! algorithm a backend runs, so that comparing it with the unfused graph tests the algorithm
//! and not only the formula): per tile of queries, over the tiles of keys in order, tiles
//! where the mask is all false are skipped, the mask is evaluated only in tiles where it is
//! not all true, and each row keeps a running max m, a running sum l and an accumulator that
//! are rescaled by e^(m_old − m_new) whenever the max grows. Semantics: ir/op.rs.

use super::value::{Data, Tensor, numel, round_f, strides};
use crate::ir::mask::{Mask, MaskOperand, Tile};

/// The most score evaluations one attention may take (2^40), so that absurd sizes fail fast.
const MAX_WORK: usize = 1 << 40;

/// Offsets of every batch index of `out_batch` into an operand whose batch dims are
/// `batch` (right-aligned, broadcast where 1), given the operand's strides.
fn batch_offsets(out_batch: &[usize], batch: &[usize], st: &[usize]) -> Vec<usize> {
    let n: usize = out_batch.iter().product();
    let mut offs = Vec::with_capacity(n);
    let lead = out_batch.len() - batch.len();
    let mut idx = vec![0usize; out_batch.len()];
    for _ in 0..n {
        let mut o = 0;
        for (j, &d) in batch.iter().enumerate() {
            if d != 1 {
                o += idx[lead + j] * st[j];
            }
        }
        offs.push(o);
        for a in (0..idx.len()).rev() {
            idx[a] += 1;
            if idx[a] < out_batch[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    offs
}

/// The values of the operands a mask reads (after q, k, v), as i32.
pub(crate) fn mask_operands(xs: &[&Tensor]) -> Result<Vec<MaskOperand>, String> {
    xs.iter()
        .map(|x| {
            let values = match &x.data {
                Data::I(v) => v.clone(),
                Data::B(v) => v.iter().map(|&b| i64::from(b)).collect(),
                Data::F(_) => {
                    return Err(format!(
                        "internal: an attention mask operand must be i32 or bool, found {}",
                        x.describe()
                    ));
                }
            };
            Ok(MaskOperand {
                shape: x.shape.clone(),
                values,
            })
        })
        .collect()
}

/// Evaluates `attention(q, k, v)` (its mask reading `ops`, the values of the operands after
/// v); `out_shape` is the result's evaluated shape. Returns the result and the rows'
/// log-sum-exp ([..., T, 1], −∞ for a row with no visible key).
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    (mask, ops): (&Mask, &[MaskOperand]),
    scale: f64,
    (tile_q, tile_k): (usize, usize),
    out_shape: &[usize],
) -> Result<(Tensor, Tensor), String> {
    let (qs, ks, vs) = (q.floats()?, k.floats()?, v.floats()?);
    let (rq, rk, rv) = (q.shape.len(), k.shape.len(), v.shape.len());
    if rq < 2 || rk < 2 || rv < 2 || out_shape.len() < 2 || tile_q == 0 || tile_k == 0 {
        return Err("internal: attention operands of rank < 2 or empty tiles".into());
    }
    let (t_len, d) = (q.shape[rq - 2], q.shape[rq - 1]);
    let (s_len, e) = (k.shape[rk - 2], v.shape[rv - 1]);
    if k.shape[rk - 1] != d || v.shape[rv - 2] != s_len || out_shape[out_shape.len() - 1] != e {
        return Err(format!(
            "internal: attention operands {}, {}, {} do not fit",
            q.describe(),
            k.describe(),
            v.describe()
        ));
    }
    let out_batch = &out_shape[..out_shape.len() - 2];
    let n_batch = numel(out_batch)?;
    let work = n_batch
        .saturating_mul(t_len)
        .saturating_mul(s_len)
        .saturating_mul(d + e + 1);
    if work > MAX_WORK {
        return Err("the attention would take more than 2^40 multiply-adds".into());
    }
    let dt = q.dtype;
    let scale = round_f(dt, scale);
    let (sq, sk, sv) = (strides(&q.shape), strides(&k.shape), strides(&v.shape));
    let qo = batch_offsets(out_batch, &q.shape[..rq - 2], &sq);
    let ko = batch_offsets(out_batch, &k.shape[..rk - 2], &sk);
    let vo = batch_offsets(out_batch, &v.shape[..rv - 2], &sv);
    let mut out = vec![0.0f64; n_batch * t_len * e];
    let mut lse = vec![f64::NEG_INFINITY; n_batch * t_len];
    // Per row of a query tile: running max, running sum, accumulator.
    let mut m = vec![f64::NEG_INFINITY; tile_q];
    let mut l = vec![0.0f64; tile_q];
    let mut acc = vec![0.0f64; tile_q * e];
    let mut x = vec![0.0f64; tile_k];
    // The batch index as a multi-index, for masks that read batch axes.
    let reads_batch = !mask.batch_axes().is_empty();
    let mut bidx = vec![0i64; out_batch.len()];
    for b in 0..n_batch {
        if reads_batch {
            let mut rest = b;
            for (a, &n) in out_batch.iter().enumerate().rev() {
                bidx[a] = (rest % n) as i64;
                rest /= n;
            }
        }
        let branges: Vec<(i64, i64)> = bidx.iter().map(|&i| (i, i + 1)).collect();
        for t0 in (0..t_len).step_by(tile_q) {
            let t1 = (t0 + tile_q).min(t_len);
            m.fill(f64::NEG_INFINITY);
            l.fill(0.0);
            acc.fill(0.0);
            for s0 in (0..s_len).step_by(tile_k) {
                let s1 = (s0 + tile_k).min(s_len);
                let tile = mask.classify_in(
                    (t0 as i64, t1 as i64),
                    (s0 as i64, s1 as i64),
                    &branges,
                    ops,
                );
                if tile == Tile::Skip {
                    continue;
                }
                for t in t0..t1 {
                    let r = t - t0;
                    let qrow = &qs[qo[b] + t * sq[rq - 2]..][..d];
                    let mut tile_max = f64::NEG_INFINITY;
                    for s in s0..s1 {
                        let visible =
                            tile == Tile::Full || mask.holds_in(t as i64, s as i64, &bidx, ops);
                        x[s - s0] = if visible {
                            let krow = &ks[ko[b] + s * sk[rk - 2]..][..d];
                            let dot: f64 = qrow.iter().zip(krow).map(|(a, c)| a * c).sum();
                            round_f(dt, round_f(dt, dot) * scale)
                        } else {
                            f64::NEG_INFINITY
                        };
                        tile_max = tile_max.max(x[s - s0]);
                    }
                    if tile_max == f64::NEG_INFINITY {
                        continue;
                    }
                    let m_new = m[r].max(tile_max);
                    let alpha = if m[r] == f64::NEG_INFINITY {
                        0.0
                    } else {
                        (m[r] - m_new).exp()
                    };
                    m[r] = m_new;
                    l[r] *= alpha;
                    let a = &mut acc[r * e..(r + 1) * e];
                    a.iter_mut().for_each(|z| *z *= alpha);
                    for s in s0..s1 {
                        if x[s - s0] == f64::NEG_INFINITY {
                            continue;
                        }
                        let p = (x[s - s0] - m_new).exp();
                        l[r] += p;
                        let vrow = &vs[vo[b] + s * sv[rv - 2]..];
                        for (j, z) in a.iter_mut().enumerate() {
                            *z += p * vrow[j * sv[rv - 1]];
                        }
                    }
                }
            }
            for t in t0..t1 {
                let r = t - t0;
                if l[r] > 0.0 {
                    lse[b * t_len + t] = m[r] + l[r].ln();
                }
                let dst = &mut out[(b * t_len + t) * e..][..e];
                for (j, z) in dst.iter_mut().enumerate() {
                    // No visible key: NaN, as the unfused −∞ − (−∞).
                    *z = if l[r] > 0.0 {
                        acc[r * e + j] / l[r]
                    } else {
                        f64::NAN
                    };
                }
            }
        }
    }
    let mut lse_shape = out_shape.to_vec();
    *lse_shape.last_mut().expect("rank ≥ 2") = 1;
    Ok((
        Tensor::new(dt, out_shape.to_vec(), Data::F(out))?,
        Tensor::new(dt, lse_shape, Data::F(lse))?,
    ))
}
