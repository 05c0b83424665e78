//! The CPU backend's blocked matrix products (`gemm` kernels: packed panels, register-blocked
//! micro-kernel) against a naive f64 einsum written here, independent of the interpreter and
//! of the backend, at awkward sizes: 1, primes, sizes past one block (192 × 512) and one
//! packed slice of k (256), transposed and strided operands, batch letters that one operand
//! lacks. Each case also checks that the kernel program really holds a `gemm` statement.

use seqc::ir::{DimBindings, parse::parse_graph};
use seqc::{bind, kernel};
use seqc_runtime::{HostTensor, Model, Weights};
use std::collections::BTreeMap;

/// `out = einsum(spec, x, y)` in f64, by the definition: every assignment of the letters.
fn naive(spec: &str, x: &HostTensor, y: &HostTensor) -> Vec<f64> {
    let (lhs, rhs) = spec.split_once("->").expect("->");
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let mut size: BTreeMap<char, usize> = BTreeMap::new();
    for (t, v) in terms.iter().zip([x, y]) {
        for (c, d) in t.iter().zip(&v.shape) {
            size.insert(*c, *d);
        }
    }
    let letters: Vec<char> = size.keys().copied().collect();
    let out: Vec<char> = rhs.chars().collect();
    let numel = |cs: &[char]| cs.iter().map(|c| size[c]).product::<usize>();
    let mut res = vec![0.0f64; numel(&out)];
    let (xv, yv) = (x.to_f64_vec(), y.to_f64_vec());
    let flat = |cs: &[char], at: &BTreeMap<char, usize>| {
        cs.iter().fold(0usize, |f, c| f * size[c] + at[c])
    };
    let total = numel(&letters);
    let mut at: BTreeMap<char, usize> = letters.iter().map(|c| (*c, 0)).collect();
    for mut i in 0..total {
        for c in letters.iter().rev() {
            at.insert(*c, i % size[c]);
            i /= size[c];
        }
        res[flat(&out, &at)] += xv[flat(&terms[0], &at)] * yv[flat(&terms[1], &at)];
    }
    res
}

/// Compiles the one-einsum graph, runs it at `dims` and returns the largest error relative
/// to the result's largest magnitude.
fn check(spec: &str, xshape: &str, yshape: &str, oshape: &str, dims: &[(&str, i64)]) -> f64 {
    let names: Vec<&str> = dims.iter().map(|d| d.0).collect();
    let ir = format!(
        "graph({}) {{
  %0 = input \"x\" : f32[{xshape}]
  %1 = input \"y\" : f32[{yshape}]
  %2 = einsum(%0, %1) spec=\"{spec}\" : f32[{oshape}]
  output \"out\" = %2
}}
",
        names.join(", ")
    );
    let g = parse_graph(&ir).unwrap_or_else(|e| panic!("{e:?}\n{ir}"));
    let prog = kernel::lower(&g).expect("lowers");
    let text = kernel::print::print_program(&prog);
    assert!(
        text.contains("gemm b"),
        "{spec}: no gemm statement in\n{text}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    seqc::codegen::artifact::write_artifact(&g, "test", dir.path(), false).expect("compiles");
    let given: DimBindings = dims.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let mut tensors = BTreeMap::new();
    let bound = bind::bind_dims(&g, &given, &tensors).expect("binds");
    bind::fill_missing(&g, &bound, &mut tensors, 11).expect("fills");
    let model = Model::load(
        dir.path(),
        Weights::from_tensors(&BTreeMap::new()).expect("w"),
    )
    .expect("loads");
    let got = model.run(&tensors, &bound).expect("runs")["out"].to_f64_vec();
    let want = naive(spec, &tensors["x"], &tensors["y"]);
    assert_eq!(got.len(), want.len(), "{spec} at {dims:?}");
    let scale = want.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f64::max)
}

/// f32 accumulation over k ≤ 600 terms of unit-scale values stays far inside this.
const TOL: f64 = 1e-5;

#[test]
fn matmul_at_awkward_sizes() {
    for (m, k, n) in [
        (1, 1, 1),
        (7, 300, 70),
        (97, 513, 257),
        (389, 300, 521),
        (193, 2, 1),
        (1, 257, 1031),
    ] {
        let e = check(
            "mk,kn->mn",
            "M, K",
            "K, N",
            "M, N",
            &[("M", m), ("K", k), ("N", n)],
        );
        assert!(e < TOL, "matmul {m}×{k}×{n}: {e:.3e}");
    }
}

/// Products one column panel wide (n ≤ the micro-kernel's width, as in tiled attention)
/// read full row panels of a in place: straight and transposed a, edge row panels, several
/// slices of k.
#[test]
fn one_column_panel() {
    for (spec, xs) in [("mk,kn->mn", "M, K"), ("km,kn->mn", "K, M")] {
        for (m, k, n) in [(197, 300, 64), (12, 7, 13), (5, 600, 16), (192, 64, 1)] {
            let e = check(spec, xs, "K, N", "M, N", &[("M", m), ("K", k), ("N", n)]);
            assert!(e < TOL, "{spec} {m}×{k}×{n}: {e:.3e}");
        }
    }
}

#[test]
fn transposed_operands() {
    let dims = [("M", 211), ("K", 263), ("N", 541)];
    for (spec, xs, ys) in [
        ("km,kn->mn", "K, M", "K, N"),
        ("mk,nk->mn", "M, K", "N, K"),
        ("km,nk->mn", "K, M", "N, K"),
        // The output's last letter comes from the first operand: the operands swap.
        ("nk,km->mn", "N, K", "K, M"),
    ] {
        let e = check(spec, xs, ys, "M, N", &dims);
        assert!(e < TOL, "{spec}: {e:.3e}");
    }
}

#[test]
fn batch_letters() {
    // A projection (the weight lacks b and t), attention scores and values.
    let e = check(
        "btd,ed->bte",
        "B, T, D",
        "E, D",
        "B, T, E",
        &[("B", 2), ("T", 37), ("D", 29), ("E", 300)],
    );
    assert!(e < TOL, "projection: {e:.3e}");
    let e = check(
        "bhtd,bhsd->bhts",
        "B, H, T, D",
        "B, H, S, D",
        "B, H, T, S",
        &[("B", 2), ("H", 3), ("T", 101), ("S", 13), ("D", 8)],
    );
    assert!(e < TOL, "scores: {e:.3e}");
    let e = check(
        "bhts,bhsd->bthd",
        "B, H, T, S",
        "B, H, S, D",
        "B, T, H, D",
        &[("B", 1), ("H", 2), ("T", 1), ("S", 300), ("D", 17)],
    );
    assert!(e < TOL, "values with a permuted output: {e:.3e}");
}
