//! The cost of the fused `attention` operator: only the tiles it computes count. The tile
//! grid is classified at the bound dims with `Mask::classify` (the interpreter skips exactly
//! the tiles classified `Skip`), so a window mask costs O(T·w) and a causal one about half
//! of the full O(T²); no T × S intermediate is materialised.
//!
//! Per computed (t, s) pair: 2·D FLOPs for q·k, 2·E for p·v and 5 for the scale, running
//! max, exponential, running sum and rescaling. Bytes: q read and the result written once,
//! and per computed tile its `tile_k` keys and values (a backend streams K and V once per
//! query tile). Grids of more than 2^20 tiles are classified at coarser tiles (a multiple of
//! the given ones), which can only over-count. A mask that reads batch axes (e.g. a pattern
//! per head) is classified for every combination of their indices, up to 64 of them. A mask
//! that reads operands computed by the graph (BigBird's random-block table) is classified
//! without their values, which are known only at run time: every tile that the rest of the
//! mask does not rule out counts (an over-count where the table would skip it), and the
//! operands are read once.

use super::cost::dim_value;
use crate::ir::mask::{Mask, Tile};
use crate::ir::{DimBindings, TensorType};

/// Most tiles classified exactly; larger grids are coarsened.
const MAX_TILES: f64 = (1u64 << 20) as f64;

/// Most combinations of batch indices a mask's tile grid is classified for.
const MAX_COMBOS: i64 = 64;

/// Tile counts of one grid.
#[derive(Clone, Copy, Debug, Default)]
struct Grid {
    pairs: f64,
    key_reads: f64,
    tiles: f64,
    grid: f64,
}

/// Counts the tiles of a `lens.0` × `lens.1` grid, in tiles of `tiles`, that `mask` does not
/// rule out over the batch indices `batch`.
fn grid_count(mask: &Mask, lens: (i64, i64), tiles: (i64, i64), batch: &[(i64, i64)]) -> Grid {
    let mut g = Grid::default();
    let all = *mask == Mask::all();
    for t0 in (0..lens.0).step_by(tiles.0 as usize) {
        let t1 = (t0 + tiles.0).min(lens.0);
        for s0 in (0..lens.1).step_by(tiles.1 as usize) {
            let s1 = (s0 + tiles.1).min(lens.1);
            g.grid += 1.0;
            if all || mask.classify_at((t0, t1), (s0, s1), batch) != Tile::Skip {
                g.tiles += 1.0;
                g.pairs += ((t1 - t0) * (s1 - s0)) as f64;
                g.key_reads += (s1 - s0) as f64;
            }
        }
    }
    g
}

/// FLOPs and bytes of one `attention` node.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttentionCost {
    pub flops: f64,
    pub bytes: f64,
    /// (t, s) pairs computed per batch index (averaged over the batch when the mask reads it).
    pub pairs: f64,
    /// Tiles computed (per batch index, likewise) and tiles in all (after any coarsening).
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
    let [q, k, v, extra @ ..] = ins else {
        return AttentionCost::default();
    };
    let extra_bytes: f64 = extra
        .iter()
        .map(|t| {
            let n: f64 = t.shape.iter().map(|x| dim_value(x, dims)).product();
            n * t.dtype.size_bytes() as f64
        })
        .sum();
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
    let tiles_of = (tq as i64, tk as i64);
    let lens = (t_len as i64, s_len as i64);
    // Masks that read batch axes: every combination of their indices, averaged, when there
    // are at most MAX_COMBOS of them; else the whole range at once (which over-counts).
    let sizes: Vec<i64> = (0..n)
        .map(|i| at(&bq, i).max(at(&bk, i)).max(at(&bv, i)) as i64)
        .collect();
    let axes = mask.batch_axes();
    let combos: i64 = axes
        .iter()
        .map(|&j| sizes.get(j).copied().unwrap_or(1).max(1))
        .product();
    let mut ranges: Vec<(i64, i64)> = sizes.iter().map(|&n| (0, n.max(1))).collect();
    let g = if axes.is_empty() || combos > MAX_COMBOS {
        grid_count(mask, lens, tiles_of, &ranges)
    } else {
        let mut sum = Grid::default();
        for c in 0..combos {
            let mut rest = c;
            for &j in axes.iter().rev() {
                let n = sizes.get(j).copied().unwrap_or(1).max(1);
                if let Some(r) = ranges.get_mut(j) {
                    *r = (rest % n, rest % n + 1);
                }
                rest /= n;
            }
            let one = grid_count(mask, lens, tiles_of, &ranges);
            sum.pairs += one.pairs / combos as f64;
            sum.key_reads += one.key_reads / combos as f64;
            sum.tiles += one.tiles / combos as f64;
            sum.grid = one.grid;
        }
        sum
    };
    let Grid {
        pairs,
        key_reads,
        tiles,
        grid,
    } = g;
    let size = q.dtype.size_bytes() as f64;
    AttentionCost {
        flops: batch * pairs * (2.0 * d + 2.0 * e + 5.0),
        bytes: size * batch * (t_len * d + t_len * e + key_reads * (d + e)) + extra_bytes,
        pairs,
        tiles,
        grid,
    }
}

#[cfg(test)]
mod tests;
