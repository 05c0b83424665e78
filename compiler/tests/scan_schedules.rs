//! The scan-schedule rewrite (R6, `scan-chunk`) on the shipped specs, on the interpreter.
//!
//! 1. Every spec with a linear scan along T (Mamba-1, RG-LRU, cumsum in Switch routing),
//!    optimised for the H100 target, has no scan of T steps left (only chunk-local scans of
//!    C steps and carry scans of ⌈T / C⌉ steps), and computes the same outputs as the
//!    original at T ∈ {1, 7, 13, 37, 70} (partial last chunks, several chunks).
//! 2. LRU's matrix recurrence (`scan_matrix`, 2 × 2 rotations; `scan-matrix-chunk`) likewise,
//!    with and without an initial state, at T ∈ {1, 7, 13, 37, 70, 100}.
//! 3. The choice is the cost model's: on each target the form it keeps is the cheaper of the
//!    two under that target's model (H100: chunked; CPU at the default dims: sequential,
//!    which moves fewer bytes), and the chunk it picks follows T (depth C + ⌈T / C⌉).

use seqc::ir::{DimBindings, DimExpr, Graph, Op};
use seqc::opt::{self, OptOptions, Target};
use seqc::{bind, frontend, interp};
use seqc_runtime::HostTensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shipped specs whose scans run along T (rwkv6 and linear_attention_recurrent are
/// R5's: their scans become `linear_attn`).
const SPECS: [&str; 6] = [
    "mamba",
    "hf_mamba",
    "griffin_rglru",
    "hf_recurrent_gemma",
    "switch_moe",
    "hf_switch",
];

fn load_spec(name: &str) -> Graph {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("ir-specs")
        .join(format!("{name}.seq"));
    frontend::load_file(&p).unwrap_or_else(|e| panic!("{name}: {}", e.render(false)))
}

fn spec_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("ir-specs")
        .join(format!("{name}.seq"))
}

fn optimize_for(g: &Graph, target: Target, dims: DimBindings) -> Graph {
    let opts = OptOptions {
        target,
        dims,
        ..Default::default()
    };
    opt::optimize(g, &opts).unwrap().0
}

/// The scans' lengths (the time axis of each `scan`'s input).
fn scan_lengths(g: &Graph) -> Vec<DimExpr> {
    g.nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Scan { axis, .. } => g.ty(n.inputs[1]).tensor().map(|t| t.shape[axis].clone()),
            _ => None,
        })
        .collect()
}

/// The chunk sizes of the chunked scans (the constant lengths of their chunk-local scans).
fn chunks(g: &Graph) -> Vec<i64> {
    scan_lengths(g)
        .iter()
        .filter_map(|d| d.as_const())
        .collect()
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

/// `g` and its optimised form `o` give the same outputs at B = 2 and each T of `lens`.
fn agree(name: &str, g: &Graph, o: &Graph, lens: &[i64]) {
    for &len in lens {
        let dims: DimBindings = [("B".to_string(), 2), ("T".to_string(), len)].into();
        let mut tensors = BTreeMap::new();
        bind::fill_missing(g, &dims, &mut tensors, 11).unwrap();
        let want = interp::run(g, &dims, &tensors).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = interp::run(o, &dims, &tensors).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (out, w) in &want {
            close(w, &got[out])
                .unwrap_or_else(|e| panic!("{name} at T = {len}: output `{out}`: {e}"));
        }
    }
}

#[test]
fn scans_along_t_become_chunked_for_the_gpu_and_agree() {
    let t = DimExpr::sym("T");
    for name in SPECS {
        let g = load_spec(name);
        assert!(
            scan_lengths(&g).contains(&t),
            "{name}: no scan along T in the original"
        );
        let o = optimize_for(&g, Target::h100(), DimBindings::new());
        let lens = scan_lengths(&o);
        assert!(!lens.contains(&t), "{name}: a scan of T steps is left");
        assert!(!chunks(&o).is_empty(), "{name}: no chunk-local scan");
        agree(name, &g, &o, &[1, 7, 13, 37, 70]);
    }
}

#[test]
fn each_target_keeps_the_form_its_cost_model_prefers() {
    let dims = opt::default_dims(&load_spec("mamba"), &DimBindings::new());
    for name in SPECS {
        let g = load_spec(name);
        let gpu = optimize_for(&g, Target::h100(), dims.clone());
        let cpu = optimize_for(&g, Target::cpu(), dims.clone());
        // The CPU keeps every scan of T steps: the chunked form moves several times the
        // bytes, and the CPU target is memory-bound with a 1 ns step.
        assert!(
            scan_lengths(&cpu).contains(&DimExpr::sym("T")),
            "{name}: the CPU target chunked a scan"
        );
        assert!(chunks(&cpu).is_empty(), "{name}");
        for target in [Target::h100(), Target::cpu()] {
            let (tg, tc) = (
                opt::graph_time(&gpu, &dims, &target),
                opt::graph_time(&cpu, &dims, &target),
            );
            let (mine, other) = if target.name == "h100" {
                (tg, tc)
            } else {
                (tc, tg)
            };
            assert!(
                mine < other,
                "{name}: on {} the kept form costs {mine} s, the other {other} s",
                target.name
            );
        }
    }
}

/// Mamba's scan of 32 × 8 lanes is latency-bound on the H100 target: its time is about
/// 100 ns × (C + ⌈T / C⌉) (chunk-local scans, then the carry scan), least near C = √T; below
/// a few hundred steps the form's ten kernels (4 µs each) cost more than it saves.
#[test]
fn the_chunk_follows_the_sequence_length() {
    let g = load_spec("mamba");
    let chunk_at = |t: i64| {
        let o = optimize_for(&g, Target::h100(), [("T".to_string(), t)].into());
        let c = chunks(&o);
        assert!(c.iter().all(|&x| x == c[0]), "T = {t}: {c:?}");
        c.first().copied()
    };
    assert_eq!(chunk_at(256), None, "chunked at T = 256");
    for t in [1024, 4096, 16384] {
        let depth = |c: i64| c + (t + c - 1) / c;
        let best = [16, 32, 64, 128, 256]
            .into_iter()
            .min_by_key(|&c| depth(c))
            .unwrap();
        assert_eq!(chunk_at(t), Some(best), "T = {t}");
    }
}

/// `seqc stats --stage opt --target h100` estimates less time than the sequential IR.
#[test]
fn seqc_stats_reports_the_gpu_estimate() {
    let stats = |stage: &str, target: &str| -> serde_json::Value {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_seqc"))
            .args(["stats", spec_path("mamba").to_str().unwrap()])
            .args(["--stage", stage, "--target", target, "--dims", "T=4096,B=1"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let time = |v: &serde_json::Value| v["est_time_s"].as_f64().unwrap();
    let (ir, opt) = (stats("ir", "h100"), stats("opt", "h100"));
    assert_eq!(opt["target"], "h100");
    assert!(
        time(&opt) * 2.0 < time(&ir),
        "h100: {} s → {} s",
        time(&ir),
        time(&opt)
    );
    // The chunked form moves more bytes.
    assert!(opt["bytes"].as_u64() > ir["bytes"].as_u64());
    let (ir, opt) = (stats("ir", "cpu"), stats("opt", "cpu"));
    assert_eq!(opt["target"], "cpu");
    assert!(time(&opt) <= time(&ir));
}

/// The time lengths of the `scan_matrix` nodes (b's axis).
fn matrix_scan_lengths(g: &Graph) -> Vec<DimExpr> {
    g.nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::ScanMatrix { axis } => g.ty(n.inputs[1]).tensor().map(|t| t.shape[axis].clone()),
            _ => None,
        })
        .collect()
}

/// A gated rotation recurrence with an initial state given as an input.
const ROTATION_WITH_INIT: &str = "
dim B, T;
input x: f32[B, T, 3, 2];
input h0: f32[B, 3, 2];
param theta: f32[3];
let r = 0.97 * cos(theta);
let i = 0.97 * sin(theta);
let m = reshape(concat([unsqueeze(r, 1), unsqueeze(-i, 1), unsqueeze(i, 1), unsqueeze(r, 1)], 1), [3, 2, 2]);
let a = broadcast(unsqueeze(m, 1), [B, 3, T, 2, 2]);
output y = scan_matrix(a, transpose(x, [0, 2, 1, 3]), h0);
";

#[test]
fn matrix_scans_along_t_become_chunked_for_the_gpu_and_agree() {
    let t = DimExpr::sym("T");
    let lru = load_spec("lru");
    let with_init = frontend::load_str("init.seq", ROTATION_WITH_INIT)
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    for (name, g) in [("lru", lru), ("rotation with h0", with_init)] {
        assert!(
            matrix_scan_lengths(&g).contains(&t),
            "{name}: no matrix scan along T"
        );
        let o = optimize_for(&g, Target::h100(), DimBindings::new());
        let lens = matrix_scan_lengths(&o);
        assert!(
            !lens.contains(&t),
            "{name}: a matrix scan of T steps is left:\n{o}"
        );
        assert!(
            lens.iter().any(|d| d.as_const().is_some()),
            "{name}: no chunk-local matrix scan:\n{o}"
        );
        agree(name, &g, &o, &[1, 7, 13, 37, 70, 100]);
    }
}
