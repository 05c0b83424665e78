//! Complexity of fused softmax attention, seen through `seqc stats` (issue #4, point 5):
//! after optimisation, attention with a sliding-window mask costs O(T·w) (each 4× in T
//! (Griffin's causal window, Longformer's dilated window per head, LongNet's segments,
//! StreamingLLM's sinks + window, whose largest intermediate also grows linearly)
//! multiplies the FLOPs by at
//! most 4.5) while causal attention stays O(T²) (at least 12×),
//! and neither materialises a T × T intermediate. Before optimisation both are quadratic.

mod support;

use std::path::{Path, PathBuf};
use support::seqc_stats;

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("ir-specs")
        .join(name)
}

/// `seqc stats FILE --dims T=t,B=1 --stage stage` as (flops, largest intermediate bytes).
fn stats(file: &Path, stage: &str, t: i64) -> (f64, f64) {
    let v = seqc_stats(file, stage, t);
    (
        v["flops"].as_u64().unwrap() as f64,
        v["largest_intermediate_bytes"].as_u64().unwrap() as f64,
    )
}

const TS: [i64; 3] = [1024, 4096, 16384];

/// FLOPs growth factors between consecutive T, and the largest intermediates.
fn growth(file: &Path, stage: &str) -> (Vec<f64>, Vec<f64>) {
    let s: Vec<(f64, f64)> = TS.iter().map(|&t| stats(file, stage, t)).collect();
    let ratios = s.windows(2).map(|w| w[1].0 / w[0].0).collect();
    (ratios, s.iter().map(|x| x.1).collect())
}

#[test]
fn window_attention_becomes_linear_and_causal_stays_quadratic() {
    // Griffin's local attention: a causal window of 5 keys.
    let window = spec("griffin_local_attention.seq");
    let (ir, _) = growth(&window, "ir");
    let (opt, largest) = growth(&window, "opt");
    for r in &ir {
        assert!(*r >= 12.0, "window, before: {ir:?}");
    }
    for r in &opt {
        assert!(*r <= 4.5, "window, after: {opt:?} (expected ~4)");
    }
    for (l, t) in largest.iter().zip(TS) {
        assert!(*l < (t * t * 4) as f64, "window: {largest:?}");
    }
    // Longformer's dilated two-sided window, its dilation a table per head.
    let dilated = spec("longformer_dilated.seq");
    let (opt, _) = growth(&dilated, "opt");
    for r in &opt {
        assert!(*r <= 4.5, "dilated window, after: {opt:?} (expected ~4)");
    }
    // LongNet: segments of 4, 8 and 12 keys (dilated per head), merged by log-sum-exp.
    let longnet = spec("longnet.seq");
    let (opt, largest) = growth(&longnet, "opt");
    for r in &opt {
        assert!(*r <= 4.5, "longnet, after: {opt:?} (expected ~4)");
    }
    for (l, t) in largest.iter().zip(TS) {
        assert!(*l < (t * t * 4) as f64, "longnet: {largest:?}");
    }
    // StreamingLLM: 2 sinks + a window of 4, its keys rotated at per-query cache positions
    // (a [B, H, T, T, D] key tensor before), split into a sinks part and a window part
    // (`sinks-window-attention`): O(T·(S + W)) and no intermediate beyond O(T).
    let streaming = spec("streaming_llm.seq");
    let (ir, ir_largest) = growth(&streaming, "ir");
    let (opt, largest) = growth(&streaming, "opt");
    for r in &ir {
        assert!(*r >= 12.0, "streaming_llm, before: {ir:?}");
    }
    for r in &opt {
        assert!(*r <= 4.5, "streaming_llm, after: {opt:?} (expected ~4)");
    }
    for w in largest.windows(2) {
        assert!(
            w[1] <= 4.5 * w[0],
            "streaming_llm: {largest:?} (expected ~4× per 4× T)"
        );
    }
    for (l, t) in largest.iter().zip(TS) {
        assert!(*l < (t * t) as f64, "streaming_llm: {largest:?}");
    }
    assert!(
        ir_largest[0] >= (1024 * 1024 * 4) as f64,
        "before: {ir_largest:?}"
    );
    // Causal attention: about half the tiles of a T × T grid, still quadratic.
    let causal = spec("softmax_attention.seq");
    let (opt, largest) = growth(&causal, "opt");
    for r in &opt {
        assert!(*r >= 12.0, "causal, after: {opt:?} (expected ~16)");
    }
    for (l, t) in largest.iter().zip(TS) {
        assert!(*l < (t * t * 4) as f64, "causal: {largest:?}");
    }
    // Fused causal attention computes about half of what the unfused graph does.
    let (before, _) = stats(&causal, "ir", 4096);
    let (after, _) = stats(&causal, "opt", 4096);
    assert!(
        after < 0.6 * before,
        "causal at T = 4096: {before} → {after}"
    );
}
