//! The cost of the fused `attention` operator: only the tiles it computes count. The tile
//! grid is classified at the bound dims with `Mask::classify` (the interpreter skips exactly
//! the tiles classified `Skip`), so a window mask costs O(T·w) and a causal one about half
//! of the full O(T²); no T × S intermediate is materialised.
//!
//! Per computed (t, s) pair: 2·D FLOPs for q·k, 2·E for p·v and 5 for the scale, running
//! max, exponential, running sum and rescaling. Bytes: q read and the result written once,
//! and per computed tile its `tile_k` keys and values (a backend streams K and V once per
//! query tile). Grids of more than 2^20 tiles are classified at coarser tiles (a multiple of
//! the given ones), which can only over-count.

use super::cost::dim_value;
use crate::ir::mask::{Mask, Tile};
use crate::ir::{DimBindings, TensorType};

/// Most tiles classified exactly; larger grids are coarsened.
const MAX_TILES: f64 = (1u64 << 20) as f64;

/// FLOPs and bytes of one `attention` node.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttentionCost {
    pub flops: f64,
    pub bytes: f64,
    /// (t, s) pairs computed per batch index.
    pub pairs: f64,
    /// Tiles computed and tiles in all (after any coarsening).
    pub tiles: f64,
    pub grid: f64,
}

/// The cost of `attention(q, k, v)` with `mask` and tiles at `dims`; `ins` are the operand
/// types (a malformed operand list costs 0).
pub fn attention_cost(
    mask: &Mask,
    (tile_q, tile_k): (usize, usize),
    ins: &[&TensorType],
    dims: &DimBindings,
) -> AttentionCost {
    let [q, k, v] = ins else {
        return AttentionCost::default();
    };
    let last = |t: &TensorType, i: usize| {
        t.shape
            .len()
            .checked_sub(i)
            .map_or(1.0, |j| dim_value(&t.shape[j], dims))
    };
    let (t_len, d, s_len, e) = (last(q, 2), last(q, 1), last(k, 2), last(v, 1));
    let batch_of = |t: &TensorType| -> Vec<f64> {
        let r = t.shape.len().saturating_sub(2);
        t.shape[..r].iter().map(|x| dim_value(x, dims)).collect()
    };
    // Broadcast batch: the largest size per right-aligned axis.
    let (bq, bk, bv) = (batch_of(q), batch_of(k), batch_of(v));
    let n = bq.len().max(bk.len()).max(bv.len());
    let at = |b: &[f64], i: usize| {
        if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1.0
        }
    };
    let batch: f64 = (0..n)
        .map(|i| at(&bq, i).max(at(&bk, i)).max(at(&bv, i)))
        .product();
    let (mut tq, mut tk) = (tile_q.max(1) as f64, tile_k.max(1) as f64);
    while (t_len / tq).ceil() * (s_len / tk).ceil() > MAX_TILES {
        tq *= 2.0;
        tk *= 2.0;
    }
    let (tq, tk) = (tq as i64, tk as i64);
    let (ti, si) = (t_len as i64, s_len as i64);
    let (mut pairs, mut key_reads, mut tiles, mut grid) = (0.0, 0.0, 0.0, 0.0);
    let all = *mask == Mask::all();
    for t0 in (0..ti).step_by(tq as usize) {
        let t1 = (t0 + tq).min(ti);
        for s0 in (0..si).step_by(tk as usize) {
            let s1 = (s0 + tk).min(si);
            grid += 1.0;
            if all || mask.classify((t0, t1), (s0, s1)) != Tile::Skip {
                tiles += 1.0;
                pairs += ((t1 - t0) * (s1 - s0)) as f64;
                key_reads += (s1 - s0) as f64;
            }
        }
    }
    let size = q.dtype.size_bytes() as f64;
    AttentionCost {
        flops: batch * pairs * (2.0 * d + 2.0 * e + 5.0),
        bytes: size * batch * (t_len * d + t_len * e + key_reads * (d + e)),
        pairs,
        tiles,
        grid,
    }
}

#[cfg(test)]
mod tests;
