//! The attention cost counts exactly the tiles the interpreter computes, including partial
//! tiles at the edges, and coarsens huge grids by over-counting only.

use super::*;
use crate::ir::DimExpr;
use seqc_runtime::DType;

fn ty(shape: &[DimExpr]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

fn cost(mask: &str, t: i64, tiles: (usize, usize)) -> AttentionCost {
    let (h, tt) = (DimExpr::constant(2), DimExpr::sym("T"));
    let q = ty(&[h.clone(), tt.clone(), DimExpr::constant(8)]);
    let v = ty(&[DimExpr::constant(1), tt, DimExpr::constant(4)]);
    let dims: DimBindings = [("T".to_string(), t)].into();
    attention_cost(&Mask::parse(mask).unwrap(), tiles, &[&q, &q, &v], &dims)
}

#[test]
fn counts_the_computed_tiles_exactly() {
    // Causal, T = 256, 64-tiles: 4 × 4 grid, 10 tiles on or below the diagonal.
    let c = cost("le(s, t)", 256, (64, 64));
    assert_eq!((c.grid, c.tiles, c.pairs), (16.0, 10.0, 10.0 * 4096.0));
    // Batch 2 (q's heads broadcast with v's 1), D = 8, E = 4: 2·8 + 2·4 + 5 = 29 per pair.
    assert_eq!(c.flops, 2.0 * 40960.0 * 29.0);
    // q and the result once, and 64 keys and values per computed tile.
    assert_eq!(
        c.bytes,
        4.0 * 2.0 * (256.0 * 8.0 + 256.0 * 4.0 + 640.0 * 12.0)
    );
    // T = 100: the tiles at the edge are partial: 64·64 + 36·64 + 36·36 pairs.
    let c = cost("le(s, t)", 100, (64, 64));
    assert_eq!((c.grid, c.tiles, c.pairs), (4.0, 3.0, 7696.0));
    // No mask: everything.
    let c = cost("true", 100, (64, 64));
    assert_eq!((c.tiles, c.pairs), (4.0, 10000.0));
    // A causal window of 8 at T = 4096: the diagonal tile of each row of tiles and, but in
    // the first row, the one before it.
    let c = cost("and(le(s, t), lt(sub(t, s), 8))", 4096, (64, 64));
    assert_eq!(c.tiles, 127.0);
    let c4 = cost("and(le(s, t), lt(sub(t, s), 8))", 4 * 4096, (64, 64));
    assert_eq!(c4.tiles, 4.0 * 128.0 - 1.0);
}

#[test]
fn huge_grids_are_coarsened_and_over_counted() {
    let t = 1i64 << 17;
    let c = cost("le(s, t)", t, (64, 64));
    // 2048² tiles of 64 are more than 2^20: classified at 128-tiles, 1024² of them.
    assert_eq!(c.grid, (1u64 << 20) as f64);
    let exact = (t * (t + 1) / 2) as f64;
    assert!(c.pairs >= exact && c.pairs <= exact * 1.01, "{c:?}");
}

#[test]
fn masks_per_head_are_counted_per_head() {
    // q: [2, T, 8]: head 0 sees every key (16 tiles at T = 256), head 1 is causal (10).
    let c = cost("or(eq(b0, 0), le(s, t))", 256, (64, 64));
    assert_eq!((c.grid, c.tiles), (16.0, 13.0));
    assert_eq!(c.pairs, 13.0 * 4096.0);
}

#[test]
fn masks_reading_operands_count_every_tile_the_rest_allows() {
    // A causal mask and a block table [4, 4] (i32) known only at run time: the cost counts
    // the 10 causal tiles of T = 256 whatever the table holds, and reads the table once.
    let (h, tt) = (DimExpr::constant(2), DimExpr::sym("T"));
    let q = ty(&[h, tt.clone(), DimExpr::constant(8)]);
    let v = ty(&[DimExpr::constant(1), tt, DimExpr::constant(4)]);
    let table = TensorType::new(DType::I32, vec![DimExpr::constant(4); 2]);
    let dims: DimBindings = [("T".to_string(), 256)].into();
    let mask = Mask::parse("and(le(s, t), ne(operand(3, [div(t, 64), div(s, 64)]), 0))").unwrap();
    let c = attention_cost(&mask, (64, 64), &[&q, &q, &v, &table], &dims);
    let causal = cost("le(s, t)", 256, (64, 64));
    assert_eq!((c.grid, c.tiles, c.pairs), (16.0, 10.0, 10.0 * 4096.0));
    assert_eq!(c.flops, causal.flops);
    assert_eq!(c.bytes, causal.bytes + 16.0 * 4.0);
}
