//! StreamingLLM's attention sinks + window (`sinks-window-attention`, docs/rewrites.md): the
//! keys rotated at per-query cache positions are split into a sinks part and a plain-RoPE
//! window part, two fused `attention_lse` merged by log-sum-exp.
//!
//! 1. `ir-specs/streaming_llm.seq` optimised agrees with the original on the interpreter at
//!    seeded random inputs for T ∈ {1, 2, S, S + W − 1, S + W, 37, 100} (S = 2, W = 4: below
//!    S + W both forms are plain causal RoPE), B ∈ {1, 2}, with the default tiles and tiles
//!    4 × 3 and 1 × 2, and keeps no [T, T] value.
//! 2. Equivalent spellings of the key positions are recognised; key positions, query
//!    positions or rotations that break the RoPE identity are refused (and the graph still
//!    computes the same outputs).

mod support;

use seqc::ir::{DimBindings, Graph, Op};
use seqc::opt::{self, OptOptions};
use seqc::{bind, frontend, interp};
use seqc_runtime::HostTensor;
use std::collections::BTreeMap;
use std::path::Path;
use support::{count_ops, fired, has_quadratic_value};

/// max|a − b| ≤ 1e-4·max(1, max|a|) (equal infinities and NaNs agree).
fn close(want: &HostTensor, got: &HostTensor) -> Result<(), String> {
    if want.shape != got.shape || want.dtype() != got.dtype() {
        return Err(format!("{:?} vs {:?}", want.shape, got.shape));
    }
    let (a, b) = (want.to_f64_vec(), got.to_f64_vec());
    let scale = a
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = x == y || (x.is_nan() && y.is_nan());
        // Written so that a NaN difference fails.
        let within = (x - y).abs() <= 1e-4 * scale;
        if !same && !within {
            return Err(format!("[{i}]: {x} vs {y}"));
        }
    }
    Ok(())
}

fn at(b: i64, t: i64) -> DimBindings {
    [("B".to_string(), b), ("T".to_string(), t)]
        .into_iter()
        .collect()
}

/// Runs `g` and each of `others` on the same seeded tensors and compares every output.
fn same_outputs(g: &Graph, others: &[(&str, &Graph)], dims: &DimBindings, seed: u64) {
    let mut tensors = BTreeMap::new();
    bind::fill_missing(g, dims, &mut tensors, seed).unwrap();
    let want = interp::run(g, dims, &tensors).unwrap();
    for (label, h) in others {
        let got = interp::run(h, dims, &tensors).unwrap();
        for (name, w) in &want {
            if let Err(e) = close(w, &got[name]) {
                panic!("{label} at {dims:?}, seed {seed}: `{name}`: {e}\n{h}");
            }
        }
    }
}

/// `g` with every fused attention's tiles set to `tq` × `tk` (tiles change no value).
fn retile(g: &Graph, tq: usize, tk: usize) -> Graph {
    let mut h = g.clone();
    for n in &mut h.nodes {
        if let Op::AttentionLse { tile_q, tile_k, .. } = &mut n.op {
            (*tile_q, *tile_k) = (tq, tk);
        }
    }
    seqc::ir::verify::verify(&h).unwrap();
    h
}

/// The optimised graph and how often the rule fired.
fn optimise(g: &Graph) -> (Graph, usize) {
    let (o, report) = opt::optimize(g, &OptOptions::default()).unwrap();
    (o, fired(&report, "sinks-window-attention"))
}

/// Asserts the split happened and checks the optimised graph against `g` at `ts`.
fn splits(g: &Graph, ts: &[i64]) -> Graph {
    let (o, fired) = optimise(g);
    assert!(fired > 0, "sinks-window-attention did not fire:\n{o}");
    assert_eq!(count_ops(&o, "attention_lse"), 2, "{o}");
    assert!(!has_quadratic_value(&o), "a [T, T] value is left:\n{o}");
    let (small, tiny) = (retile(&o, 4, 3), retile(&o, 1, 2));
    let graphs = [
        ("optimised", &o),
        ("tiles 4 × 3", &small),
        ("tiles 1 × 2", &tiny),
    ];
    for &t in ts {
        for (b, seed) in [(2, 3), (1, 11)] {
            same_outputs(g, &graphs, &at(b, t), seed);
        }
    }
    o
}

#[test]
fn streaming_llm_is_split_into_sinks_and_window() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-specs/streaming_llm.seq");
    let g = frontend::load_file(&path).unwrap();
    // S = 2, W = 4: T = 1, 2, S, S + W − 1, S + W, a prime, and 100.
    let o = splits(&g, &[1, 2, 2, 5, 6, 37, 100]);
    let masks: Vec<String> = o
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::AttentionLse { mask, .. } => Some(mask.to_string()),
            _ => None,
        })
        .collect();
    let visible = "and(le(s, t), or(lt(s, 2), lt(sub(t, s), 4)))";
    assert!(
        masks.contains(&format!("and({visible}, lt(s, 2))")),
        "{masks:?}"
    );
    assert!(
        masks.contains(&format!("and({visible}, not(lt(s, 2)))")),
        "{masks:?}"
    );
}

/// The core of streaming_llm.seq over inputs q, k, v, with the key positions `pk`, the query
/// positions `qpos`, the rotated keys `kr` and the mask `visible` replaceable.
fn variant(pk: &str, qpos: &str, kr: &str, visible: &str) -> Graph {
    let src = format!(
        "dim B, T;
         const S = 2;
         const W = 4;
         input q: f32[B, 2, T, 8];
         input k: f32[B, 2, T, 8];
         input v: f32[B, 2, T, 3];
         fn rope_back(x, pos) {{
             let inv = 1.0 / (10000.0 ** (cast(iota([4], 0), f32) * 2.0 / 8));
             let ang = unsqueeze(cast(pos, f32), -1) * inv;
             let emb = concat([ang, ang], -1);
             x * cos(emb) - rotate_half(x) * sin(emb)
         }}
         let i = iota([T, T], 0);
         let j = iota([T, T], 1);
         let visible = {visible};
         let pq = minimum(iota([T], 0), S + W - 1);
         let pk = {pk};
         let qr = rope_at(q, {qpos});
         let kr = {kr};
         let s = einsum(\"bhid,bhijd->bhij\", qr, kr) * (1.0 / sqrt(8));
         output y = softmax(where(visible, s, -inf), axis = -1) @ v;"
    );
    frontend::load_str("test.seq", &src).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

const PK: &str = "where(j < S, j, unsqueeze(pq, 1) - (i - j))";
const KR: &str = "rope_at(unsqueeze(k, 2), pk)";
const VISIBLE: &str = "(j <= i) && ((j < S) || (i - j < W))";

#[test]
fn equivalent_key_positions_are_recognised() {
    let cases = [
        // The branches the other way round, the shift written otherwise.
        ("where(j >= S, (j - i) + unsqueeze(pq, 1), j)", VISIBLE),
        // The identity holds for any mask: causal only (the window part is then O(T²)).
        (PK, "j <= i"),
    ];
    for (pk, visible) in cases {
        splits(&variant(pk, "pq", KR, visible), &[1, 6, 13]);
    }
}

#[test]
fn positions_and_rotations_that_break_the_identity_are_refused() {
    let cases = [
        // A window key one position off: P − (t − s) + 1.
        ("where(j < S, j, unsqueeze(pq, 1) - (i - j) + 1)", "pq", KR),
        // A sink key not at its own index.
        ("where(j < S, j + 1, unsqueeze(pq, 1) - (i - j))", "pq", KR),
        // Keys shifted by P but the query rotated at t.
        (PK, "iota([T], 0)", KR),
        // Keys with other frequencies (base 500) than the query.
        (PK, "pq", "rope_at(unsqueeze(k, 2), pk, 500.0)"),
        // Keys rotated the other way.
        (PK, "pq", "rope_back(unsqueeze(k, 2), pk)"),
    ];
    for (pk, qpos, kr) in cases {
        let g = variant(pk, qpos, kr, VISIBLE);
        let (o, fired) = optimise(&g);
        assert_eq!(fired, 0, "{pk} / {qpos} / {kr}:\n{o}");
        assert_eq!(count_ops(&o, "attention_lse"), 0, "{o}");
        same_outputs(&g, &[("optimised", &o)], &at(2, 13), 3);
    }
}
