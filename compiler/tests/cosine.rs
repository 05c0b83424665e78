//! cosFormer's cos(t − s) reweighting (`cos-difference`, docs/rewrites.md): the reweighted
//! scores become one contraction over twice the features, which then regroups (non-causal)
//! or becomes chunked linear attention (causal).
//!
//! 1. Both cosFormer specs optimised agree with the original on the interpreter at seeded
//!    random inputs for T ∈ {1, 2, 7, 13, 37, 100} (primes, and sizes that are not multiples
//!    of any chunk), keep no [T, T] value, and their FLOPs grow linearly in T through
//!    `seqc stats` while the original's grow quadratically.
//! 2. Equivalent spellings of the angle are recognised (s − t, a scale given as an input,
//!    negations, the scale on either side); angles that are not f(t − s) for a linear,
//!    homogeneous f are refused, and the graph still computes the same outputs.

mod support;

use seqc::ir::{DimBindings, Graph};
use seqc::opt::{self, OptOptions};
use seqc::{bind, frontend, interp};
use std::collections::BTreeMap;
use std::path::Path;
use support::{bt, check_outputs, count_ops, fired, has_quadratic_value, seqc_flops};

/// Runs `g` and `o` on the same seeded tensors and compares every output (relative 1e-4).
fn same_outputs(g: &Graph, o: &Graph, dims: &DimBindings, seed: u64) {
    let mut tensors = BTreeMap::new();
    bind::fill_missing(g, dims, &mut tensors, seed).unwrap();
    let want = interp::run(g, dims, &tensors).unwrap();
    let got = interp::run(o, dims, &tensors).unwrap();
    let what = format!("at {dims:?}, seed {seed}");
    if let Err(e) = check_outputs(&what, &got, &want, 1e-4) {
        panic!("{e}\n{o}");
    }
}

/// The optimised graph and how often `cos-difference` fired.
fn optimise(g: &Graph) -> (Graph, usize) {
    let (o, report) = opt::optimize(g, &OptOptions::default()).unwrap();
    (o, fired(&report, "cos-difference"))
}

const TS: [i64; 6] = [1, 2, 7, 13, 37, 100];

/// Asserts the split happened, no [T, T] value is left, and the outputs agree at `TS`.
fn splits(g: &Graph) -> Graph {
    let (o, fired) = optimise(g);
    assert!(fired > 0, "cos-difference did not fire:\n{o}");
    assert!(!has_quadratic_value(&o), "a [T, T] value is left:\n{o}");
    for t in TS {
        for (b, seed) in [(2, 3), (1, 11)] {
            same_outputs(g, &o, &bt(b, t), seed);
        }
    }
    o
}

/// Asserts the rule did not fire and the outputs still agree.
fn refused(g: &Graph) {
    let (o, fired) = optimise(g);
    assert_eq!(fired, 0, "cos-difference fired:\n{o}");
    for t in [1, 7, 13] {
        same_outputs(g, &o, &bt(2, t), 5);
    }
}

fn spec(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ir-specs")
        .join(format!("{name}.seq"))
}

fn flops(name: &str, stage: &str, t: i64) -> f64 {
    seqc_flops(&spec(name), stage, t)
}

#[test]
fn cosformer_specs_become_linear_in_t() {
    for name in ["cosformer", "cosformer_causal"] {
        let g = frontend::load_file(&spec(name)).unwrap();
        let o = splits(&g);
        if name == "cosformer_causal" {
            // Numerator and normaliser: chunked linear attention.
            assert_eq!(count_ops(&o, "linear_attn"), 2, "{o}");
        } else {
            assert_eq!(count_ops(&o, "linear_attn"), 0, "{o}");
        }
        let ts = [1024, 4096, 16384];
        let ir = ts.map(|t| flops(name, "ir", t));
        let op = ts.map(|t| flops(name, "opt", t));
        for i in 0..2 {
            assert!(ir[i + 1] / ir[i] >= 12.0, "{name} ir: {ir:?}");
            assert!(op[i + 1] / op[i] <= 4.5, "{name} opt: {op:?}");
        }
    }
}

/// A cosFormer-like layer whose reweighting is `REWEIGHT` (t − s is `dist`, the length `m`)
/// and whose scores are masked causally when `causal`.
fn layer(reweight: &str, causal: bool) -> Graph {
    let mask = if causal {
        "where(causal_mask(T), s, 0.0)"
    } else {
        "s"
    };
    let src = format!(
        "
dim B, T;
param wq: f32[8, 8];
param wk: f32[8, 8];
input x: f32[B, T, 8];
input v: f32[B, 2, T, 4];
input c: f32[];
let q = relu(split_heads(linear(x, wq), 2));
let k = relu(split_heads(linear(x, wk), 2));
let m = sum(ones([T]));
let row = iota([T, T], 0);
let col = iota([T, T], 1);
let dist = cast(row - col, f32);
let s = einsum(\"bhtd,bhsd->bhts\", q, k) * ({reweight});
let a = {mask};
output y = (a @ v) / maximum(sum(a, axis = -1, keepdim = true), 1e-6);
"
    );
    frontend::load_str("test.seq", &src).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

#[test]
fn equivalent_angles_are_split() {
    for causal in [false, true] {
        for reweight in [
            "cos(dist * (pi / 2.0) / m)",
            "cos(cast(col - row, f32) * (pi / 2.0) / m)",
            "cos(-(dist / m) * 1.5)",
            "cos(0.25 * dist)",
            "cos(dist * c)",
        ] {
            let g = layer(reweight, causal);
            let o = splits(&g);
            assert_eq!(
                count_ops(&o, "linear_attn"),
                if causal { 2 } else { 0 },
                "{o}"
            );
        }
    }
}

#[test]
fn other_angles_are_refused() {
    for reweight in [
        // An offset: cos(f(t − s) + b) is not cos(f(t) − f(s)).
        "cos(dist * 0.25 + 0.5)",
        // Not a difference of positions.
        "cos(cast(row + col, f32) * 0.25)",
        // Not linear in the difference.
        "cos(dist * dist * 0.01)",
        // A scale that depends on the position.
        "cos(dist * cast(row, f32) * 0.01)",
        // sin(a − b) is not the sum this rule builds.
        "sin(dist * 0.25)",
    ] {
        refused(&layer(reweight, false));
    }
}
