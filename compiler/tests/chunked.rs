//! The chunked linear-attention rewrite (R5) on the shipped specs, on the interpreter.
//!
//! 1. Each causal linear-attention spec (masked quadratic or recurrent) is optimised to
//!    `linear_attn` with no T×T intermediate (or no scan) left, and computes the same outputs
//!    as the original with the chunk size the cost model chose and with forced chunk sizes
//!    1, 4 and 16, at T ∈ {1, 7, 13, 37, 70} (most not multiples of the chunk: partial last
//!    chunks, several chunks).
//! 2. The chunk size is the cheapest candidate under the cost model, and it depends on the
//!    target.
//! 3. Forms the rules must not touch (a mask that is not causal, a fill that is not 0) are
//!    left alone.

use seqc::ir::{DimBindings, Graph, Op, Type};
use seqc::opt::{self, OptOptions, Target};
use seqc::{bind, frontend, interp};
use seqc_runtime::HostTensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load_spec(name: &str) -> Graph {
    let p = root().join("ir-specs").join(format!("{name}.seq"));
    frontend::load_file(&p).unwrap_or_else(|e| panic!("{name}: {}", e.render(false)))
}

fn load(src: &str) -> Graph {
    frontend::load_str("test.seq", src).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn at(dims: &[(&str, i64)]) -> DimBindings {
    dims.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// max|a − b| ≤ 1e-4·max(1, max|a|).
fn close(want: &HostTensor, got: &HostTensor) -> Result<(), String> {
    if want.shape != got.shape || want.dtype() != got.dtype() {
        return Err(format!("shapes {:?} vs {:?}", want.shape, got.shape));
    }
    let (a, b) = (want.to_f64_vec(), got.to_f64_vec());
    let scale = a
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        // Written so that a NaN difference fails.
        let within = (x - y).abs() <= 1e-4 * scale;
        if !within {
            return Err(format!("element {i}: {x} vs {y} (scale {scale})"));
        }
    }
    Ok(())
}

/// The original and `other` give the same outputs on seeded random tensors at `dims`.
/// Lightning Attention's `slope_rate`s are made positive, as the model's slopes are: with a
/// negative slope the "decay" grows as e^{|slope|·(t − s)} and the quadratic form overflows
/// f32 at T = 37 where the chunked one (relative to each chunk's start) does not.
fn assert_same(g: &Graph, other: &Graph, dims: &DimBindings, what: &str) {
    let mut tensors = BTreeMap::new();
    bind::fill_missing(g, dims, &mut tensors, 5).unwrap();
    for (name, s) in tensors.iter_mut() {
        if name.ends_with("slope_rate") {
            let v: Vec<f32> = s.to_f64_vec().iter().map(|x| x.abs() as f32).collect();
            *s = HostTensor::f32(s.shape.clone(), v);
        }
    }
    let want = interp::run(g, dims, &tensors).unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = interp::run(other, dims, &tensors).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (name, w) in &want {
        close(w, &got[name]).unwrap_or_else(|e| panic!("{what}: output `{name}`: {e}"));
    }
}

fn count_ops(g: &Graph, name: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.name() == name).count()
}

/// The chunk sizes and strictness of the graph's `linear_attn` nodes.
fn linear_attns(g: &Graph) -> Vec<(usize, bool)> {
    g.nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::LinearAttn { chunk, strict } => Some((chunk, strict)),
            _ => None,
        })
        .collect()
}

/// `g` with every `linear_attn` evaluated with chunk size `chunk`.
fn with_chunk(g: &Graph, chunk: usize) -> Graph {
    let mut h = g.clone();
    for n in &mut h.nodes {
        if let Op::LinearAttn { strict, .. } = n.op {
            n.op = Op::LinearAttn { chunk, strict };
        }
    }
    h
}

/// Whether some live value has two trailing dims equal to T.
fn has_t_by_t(g: &Graph) -> bool {
    let t = seqc::ir::DimExpr::sym("T");
    g.nodes.iter().any(|n| match &n.ty {
        Type::Tensor(x) => x.rank() >= 2 && x.shape[x.rank() - 2..] == [t.clone(), t.clone()],
        _ => false,
    })
}

/// What is left of the original form after optimisation.
#[derive(Clone, Copy, PartialEq)]
enum Left {
    /// No T×T value (the spec was a masked quadratic form).
    NoTByT,
    /// No scan (the spec was a recurrence).
    NoScan,
    /// Not checked (the model also has softmax attention layers).
    Mixed,
}

/// (spec, number of `linear_attn` expected, strict, what must be gone).
const SPECS: &[(&str, usize, bool, Left)] = &[
    ("linear_attention", 2, false, Left::NoTByT),
    ("lightning_attention", 1, false, Left::NoTByT),
    ("mamba2", 1, false, Left::NoTByT),
    ("performer_causal", 2, false, Left::NoTByT),
    ("rwkv6", 1, true, Left::NoScan),
    ("linear_attention_recurrent", 2, false, Left::NoScan),
    // Whole HF models: Mamba-2's SSD written as a scan in every layer (its state [P, N] with
    // the key axis last), MiniMax's lightning layers beside softmax ones.
    ("hf_mamba2", 2, false, Left::NoScan),
    ("hf_minimax", 1, false, Left::Mixed),
];

#[test]
fn causal_linear_attention_specs_become_chunked_and_agree_at_any_chunk() {
    for &(name, count, strict, left) in SPECS {
        let g = load_spec(name);
        let (o, _) = opt::optimize(&g, &OptOptions::default())
            .unwrap_or_else(|e| panic!("{name}: the optimizer failed: {e}"));
        let la = linear_attns(&o);
        assert_eq!(la.len(), count, "{name}:\n{o}");
        assert!(la.iter().all(|&(_, s)| s == strict), "{name}: {la:?}");
        match left {
            Left::NoTByT => {
                assert!(has_t_by_t(&g), "{name}: the original has no T×T value");
                assert!(!has_t_by_t(&o), "{name}: a T×T value is left:\n{o}");
            }
            Left::NoScan => {
                assert!(count_ops(&g, "scan") > 0, "{name}");
                assert_eq!(count_ops(&o, "scan"), 0, "{name}: a scan is left:\n{o}");
            }
            Left::Mixed => {}
        }
        let chosen = la[0].0;
        for chunk in [chosen, 1, 4, 16] {
            let h = with_chunk(&o, chunk);
            for t in [1, 7, 13, 37, 70] {
                let dims = at(&[("B", 2), ("T", t)]);
                assert_same(&g, &h, &dims, &format!("{name}, chunk {chunk}, T = {t}"));
            }
        }
    }
}

/// The cost of `g` at `dims` on `target` with every `linear_attn` at chunk `c`.
fn time_with_chunk(g: &Graph, c: usize, dims: &DimBindings, target: &Target) -> f64 {
    opt::graph_time(&with_chunk(g, c), dims, target)
}

#[test]
fn the_cost_model_chooses_the_chunk_size() {
    let g = load_spec("linear_attention");
    let mut chosen = Vec::new();
    for target in [Target::cpu(), Target::h100()] {
        let opts = OptOptions {
            target: target.clone(),
            ..Default::default()
        };
        let (o, report) = opt::optimize(&g, &opts).unwrap();
        let c = linear_attns(&o)[0].0;
        let best = [16, 32, 64, 128]
            .into_iter()
            .map(|k| (time_with_chunk(&o, k, &report.dims, &target), k))
            .fold((f64::INFINITY, 0), |m, x| if x.0 < m.0 { x } else { m });
        assert_eq!(c, best.1, "{}: chose {c}, cheapest {best:?}", target.name);
        chosen.push(c);
    }
    // Tensor cores make the intra-chunk blocks cheap on the H100 and leave the state traffic:
    // larger chunks there than on the CPU.
    assert!(chosen[1] > chosen[0], "{chosen:?}");
}

/// Quadratic forms that are not causal linear attention stay as they are.
#[test]
fn forms_that_are_not_causal_are_left_alone() {
    let cases = [
        // s ≥ t: anti-causal.
        "let a = where(iota([T, T], 1) >= iota([T, T], 0), einsum(\"bhtd,bhsd->bhts\", q, k), 0.0);",
        // Masked with 0.5, not 0.
        "let a = where(causal_mask(T), einsum(\"bhtd,bhsd->bhts\", q, k), 0.5);",
        // No mask at all on a decay: e^{−(t − s)} above the diagonal is not 0.
        "let a = einsum(\"bhtd,bhsd->bhts\", q, k) * exp(-cast(iota([T, T], 0) - iota([T, T], 1), f32));",
        // The scores of t against t (not s): not q_t · k_s.
        "let a = where(causal_mask(T), einsum(\"bhtd,bhsd->bhts\", q, k) * einsum(\"bhtd,bhsd->bhts\", q, k), 0.0);",
    ];
    for (i, body) in cases.iter().enumerate() {
        let src = format!(
            "dim B, T;
             input q: f32[B, 2, T, 3]; input k: f32[B, 2, T, 3]; input v: f32[B, 2, T, 4];
             {body}
             output y = a @ v;"
        );
        let g = load(&src);
        let (o, _) = opt::optimize(&g, &OptOptions::default()).unwrap();
        assert!(linear_attns(&o).is_empty(), "case {i}:\n{o}");
        assert_same(&g, &o, &at(&[("B", 2), ("T", 9)]), &format!("case {i}"));
    }
}

/// A per-channel decay in the quadratic form's recurrent twin: scan over k ⊗ v with e^x per
/// key channel, read at t (not shifted), and the normaliser's scan over k with the same decay.
#[test]
fn per_channel_decay_recurrence_becomes_chunked() {
    let src = "dim B, T;
         input q: f32[B, T, 3]; input k: f32[B, T, 3]; input v: f32[B, T, 4];
         input d: f32[B, T, 3];
         let w = exp(-sigmoid(d));
         let s = scan(unsqueeze(w, 3), unsqueeze(k, 3) * unsqueeze(v, 2), 1);
         let z = scan(w, k, 1);
         output y = einsum(\"btk,btkv->btv\", q, s);
         output n = sum(q * z, axis = -1, keepdim = false);";
    let g = load(src);
    let (o, report) = opt::optimize(&g, &OptOptions::default()).unwrap();
    assert_eq!(linear_attns(&o).len(), 2, "{o}");
    let fired: Vec<String> = report
        .phases
        .iter()
        .flat_map(|p| p.rules_fired.keys().cloned())
        .collect();
    for r in ["recurrence-chunk", "recurrence-normaliser-chunk"] {
        assert!(fired.iter().any(|f| f == r), "{r}: {fired:?}");
    }
    for chunk in [1, 4, 16] {
        for t in [1, 7, 37] {
            let dims = at(&[("B", 2), ("T", t)]);
            assert_same(
                &g,
                &with_chunk(&o, chunk),
                &dims,
                &format!("chunk {chunk}, T = {t}"),
            );
        }
    }
}

/// The optimised graphs against the reference implementations' outputs: every fixture set of
/// the causal linear-attention specs (`tests/fixtures/SPEC[.VARIANT].json`, see
/// tests/fixtures.rs: HF's chunked Mamba-2 and Lightning Attention, fla's recurrent RWKV-6
/// and linear attention), with the chosen chunk and with chunk 4 (several chunks and a
/// partial last one at T = 13 and 23), within each set's tolerance.
#[test]
fn optimised_specs_match_the_reference_fixtures() {
    let dir = root().join("tests/fixtures");
    let mut checked = 0;
    for &(name, ..) in SPECS {
        let mut stems: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".json").map(str::to_owned))
            .filter(|s| s.split('.').next() == Some(name))
            .collect();
        stems.sort();
        assert!(!stems.is_empty(), "{name}: no fixture");
        for stem in stems {
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap(),
            )
            .unwrap();
            let tol = meta["tolerance"].as_f64().unwrap();
            // Whole-model fixtures carry the checkpoint's HF config.json under "config".
            let config: seqc::frontend::Config = match &meta["config"] {
                serde_json::Value::Object(m) => m.clone().into_iter().collect(),
                _ => seqc::frontend::Config::new(),
            };
            let p = root().join("ir-specs").join(format!("{name}.seq"));
            let g = frontend::load_file_with(&p, &config).unwrap();
            let (o, _) = opt::optimize(&g, &OptOptions::default()).unwrap();
            let dims: DimBindings = meta["dims"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
                .collect();
            let read = |kind: &str| {
                seqc_runtime::io::read_safetensors(&dir.join(format!("{stem}.{kind}.safetensors")))
                    .unwrap()
            };
            let mut tensors = read("weights");
            tensors.extend(read("inputs"));
            let want = read("expected");
            for chunk in [linear_attns(&o)[0].0, 4] {
                let got = interp::run(&with_chunk(&o, chunk), &dims, &tensors)
                    .unwrap_or_else(|e| panic!("{stem}: {e}"));
                for (out, w) in &want {
                    let (a, b) = (got[out].to_f64_vec(), w.to_f64_vec());
                    let scale = b.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                    let err = a.iter().zip(&b).fold(0.0f64, |m, (x, y)| {
                        let d = (x - y).abs();
                        if d.is_nan() { f64::INFINITY } else { m.max(d) }
                    });
                    assert!(
                        err <= tol * scale,
                        "{stem}, chunk {chunk}: output `{out}`: max error {err:e} > {tol:e} × {scale}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 17, "only {checked} fixture sets");
}
