//! Property tests of the e-graph optimizer on the reference interpreter.
//!
//! 1. Every spec in `ir-specs/` (whatever specs exist: new ones are picked up), optimised at
//!    the default cost dims (for the CPU and the H100 target: the latter takes the chunked
//!    scans of R6) and at the test dims, computes the same outputs as the original
//!    on seeded random tensors, for T ∈ {1, 7, 13} and B = 2 (other dims from
//!    `tests/fixtures/<spec>.json`, else 1).
//! 2. Each rule fires where it should, and the extracted graph has the cost it should.
//! 3. `seqc stats` sees non-causal linear attention go from quadratic to linear in T.

use seqc::ir::{DimBindings, Graph, Op};
use seqc::opt::{self, OptOptions, Target};
use seqc::{bind, frontend, interp};
use seqc_runtime::{DType, HostTensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn specs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("ir-specs"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seq"))
        .collect();
    v.sort();
    v
}

/// B = 2, T = `t`, other dims from the spec's fixture metadata, else 1.
fn dims_for(path: &Path, g: &Graph, t: i64) -> DimBindings {
    let stem = path.file_stem().unwrap().to_string_lossy();
    let meta = root().join("tests/fixtures").join(format!("{stem}.json"));
    let mut d = DimBindings::new();
    if let Ok(text) = std::fs::read_to_string(meta) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(m) = v["dims"].as_object() {
            for (k, x) in m {
                if let Some(x) = x.as_i64() {
                    d.insert(k.clone(), x);
                }
            }
        }
    }
    d.insert("B".into(), 2);
    d.insert("T".into(), t);
    d.retain(|k, _| g.dims.contains(k));
    for name in &g.dims {
        d.entry(name.clone()).or_insert(1);
    }
    d
}

/// max|a − b| ≤ 1e-4·max(1, max|a|) (equal infinities and NaNs agree).
fn close(want: &HostTensor, got: &HostTensor) -> Result<(), String> {
    if want.shape != got.shape || want.dtype() != got.dtype() {
        return Err(format!(
            "{:?}{:?} vs {:?}{:?}",
            want.dtype(),
            want.shape,
            got.dtype(),
            got.shape
        ));
    }
    let (a, b) = (want.to_f64_vec(), got.to_f64_vec());
    let scale = a
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f64, |m, x| m.max(x.abs()));
    for (x, y) in a.iter().zip(&b) {
        let same = x == y || (x.is_nan() && y.is_nan());
        // Written so that a NaN difference fails.
        let within = (x - y).abs() <= 1e-4 * scale;
        if !same && !within {
            return Err(format!("{x} vs {y} (scale {scale})"));
        }
    }
    Ok(())
}

/// Runs `g` and each graph of `others` on the same seeded tensors at `dims` and compares
/// every output; `Ok(false)` if the original itself does not run at these dims.
fn same_outputs(g: &Graph, others: &[(&str, &Graph)], dims: &DimBindings) -> Result<bool, String> {
    let mut tensors = BTreeMap::new();
    bind::fill_missing(g, dims, &mut tensors, 3).map_err(|e| e.to_string())?;
    let want = match interp::run(g, dims, &tensors) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("  (the original does not run at {dims:?}: {e})");
            return Ok(false);
        }
    };
    for (label, h) in others {
        let got = interp::run(h, dims, &tensors).map_err(|e| format!("{label}: {e}"))?;
        for (name, w) in &want {
            close(w, &got[name]).map_err(|e| format!("{label}: output `{name}`: {e}"))?;
        }
    }
    Ok(true)
}

fn at(dims: &[(&str, i64)]) -> DimBindings {
    dims.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// `g` with every fused attention's tiles set to `tile_q` × `tile_k` (tiles change no value).
fn retile(g: &Graph, tq: usize, tk: usize) -> Graph {
    let mut h = g.clone();
    for n in &mut h.nodes {
        if let Op::Attention { tile_q, tile_k, .. } | Op::AttentionLse { tile_q, tile_k, .. } =
            &mut n.op
        {
            (*tile_q, *tile_k) = (tq, tk);
        }
    }
    seqc::ir::verify::verify(&h).unwrap();
    h
}

fn optimize_at(g: &Graph, dims: &DimBindings) -> (Graph, opt::OptReport) {
    let opts = OptOptions {
        dims: dims.clone(),
        ..Default::default()
    };
    opt::optimize(g, &opts).unwrap_or_else(|e| panic!("the optimizer failed: {e}"))
}

#[test]
fn optimised_specs_compute_the_same_outputs() {
    let mut checked = 0;
    for path in specs() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let g = match frontend::load_file(&path) {
            Ok(g) => g,
            Err(_) => {
                // tests/specs.rs reports a spec that does not load.
                eprintln!("{name}: skipped, it does not load");
                continue;
            }
        };
        let (at_default, _) = opt::optimize(&g, &OptOptions::default())
            .unwrap_or_else(|e| panic!("{name}: the optimizer failed: {e}"));
        let (for_gpu, _) = opt::optimize(
            &g,
            &OptOptions {
                target: Target::h100(),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: the optimizer failed for the H100 target: {e}"));
        // Small tiles, so that T = 7 and 13 run several partial tiles of every fused attention.
        let small_tiles = retile(&at_default, 4, 3);
        let odd_tiles = retile(&at_default, 2, 5);
        let mut ran = 0;
        for t in [1, 7, 13] {
            let dims = dims_for(&path, &g, t);
            let (at_test, _) = optimize_at(&g, &dims);
            let graphs = [
                ("optimised at default dims", &at_default),
                ("optimised at test dims", &at_test),
                ("optimised for the H100 target", &for_gpu),
                ("optimised, attention tiles 4 × 3", &small_tiles),
                ("optimised, attention tiles 2 × 5", &odd_tiles),
            ];
            match same_outputs(&g, &graphs, &dims) {
                Ok(true) => ran += 1,
                Ok(false) => {}
                Err(e) => panic!("{name} at {dims:?}: {e}"),
            }
        }
        assert!(ran > 0, "{name}: the original runs at none of T = 1, 7, 13");
        checked += 1;
    }
    assert!(checked > 0, "no spec in ir-specs/ loads");
}

/// Non-causal linear attention written naively, O(T²): the optimizer must find the O(T) form.
const LINEAR_ATTENTION_BIDIR: &str = "
dim B, T;
param q_proj.weight: f32[32, 32];
param k_proj.weight: f32[32, 32];
param v_proj.weight: f32[32, 32];
input x: f32[B, T, 32];
fn phi(x) { elu(x) + 1.0 }
let q = phi(split_heads(linear(x, q_proj.weight), 4));
let k = phi(split_heads(linear(x, k_proj.weight), 4));
let v = split_heads(linear(x, v_proj.weight), 4);
let a = einsum(\"bhtd,bhsd->bhts\", q, k);
output y = merge_heads((a @ v) / sum(a, axis = -1, keepdim = true));
";

fn load(src: &str) -> Graph {
    frontend::load_str("test.seq", src).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn fired(report: &opt::OptReport) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in &report.phases {
        for (r, n) in &p.rules_fired {
            *m.entry(r.clone()).or_default() += n;
        }
    }
    m
}

fn count_ops(g: &Graph, name: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.name() == name).count()
}

/// Like [`count_ops`], also counting inside `fused` bodies (the fusion pass groups
/// elementwise chains after extraction).
fn count_ops_deep(g: &Graph, name: &str) -> usize {
    g.nodes
        .iter()
        .map(|n| match &n.op {
            seqc::ir::Op::Fused { body } => count_ops_deep(body, name),
            op => usize::from(op.name() == name),
        })
        .sum()
}

#[test]
fn linear_attention_becomes_linear_in_t() {
    let g = load(LINEAR_ATTENTION_BIDIR);
    let ts = [1024i64, 4096, 16384];
    let mut ir = Vec::new();
    let mut opt_flops = Vec::new();
    for t in ts {
        let dims = at(&[("B", 1), ("T", t)]);
        ir.push(opt::stats(&g, &dims).flops as f64);
        let (o, report) = optimize_at(&g, &dims);
        let f = fired(&report);
        for r in ["einsum-regroup", "sum-einsum", "einsum-presum"] {
            assert!(f.contains_key(r), "T = {t}: `{r}` did not fire: {f:?}");
        }
        let s = opt::stats(&o, &dims);
        // No [T, T] intermediate is left.
        assert!(
            (s.largest_intermediate_bytes as f64) < (t * t * 4) as f64,
            "T = {t}: {s:?}"
        );
        opt_flops.push(s.flops as f64);
    }
    for i in 0..2 {
        let r_ir = ir[i + 1] / ir[i];
        let r_opt = opt_flops[i + 1] / opt_flops[i];
        assert!(
            r_ir >= 12.0,
            "ir flops grow by {r_ir} from T = {} (expected ~16)",
            ts[i]
        );
        assert!(
            r_opt <= 4.5,
            "opt flops grow by {r_opt} from T = {} (expected ~4)",
            ts[i]
        );
    }
    // And it computes the same thing.
    for t in [1, 7, 13] {
        let dims = at(&[("B", 2), ("T", t)]);
        let (o, _) = optimize_at(&g, &at(&[("B", 1), ("T", 4096)]));
        assert!(same_outputs(&g, &[("optimised", &o)], &dims).unwrap());
    }
}

#[test]
fn seqc_stats_sees_linear_attention_become_linear() {
    let dir = std::env::temp_dir().join(format!("seqc-rewrites-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("linear_attention_bidir.seq");
    std::fs::write(&file, LINEAR_ATTENTION_BIDIR).unwrap();
    let flops = |stage: &str, t: i64| -> f64 {
        let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
            .args(["stats", file.to_str().unwrap(), "--dims"])
            .arg(format!("T={t},B=1"))
            .args(["--stage", stage])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["stage"], stage);
        assert_eq!(v["dims"]["T"], t);
        assert_eq!(v["dims"]["B"], 1);
        for k in ["bytes", "largest_intermediate_bytes"] {
            assert!(v[k].as_u64().is_some_and(|x| x > 0), "{k}: {v}");
        }
        v["flops"].as_u64().unwrap() as f64
    };
    let ir = [1024, 4096, 16384].map(|t| flops("ir", t));
    let op = [1024, 4096, 16384].map(|t| flops("opt", t));
    for i in 0..2 {
        assert!(ir[i + 1] / ir[i] >= 12.0, "ir: {ir:?}");
        assert!(op[i + 1] / op[i] <= 4.5, "opt: {op:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A rule fires on a small spec, the result passes a check, and it computes the same
/// outputs as the original at T ∈ {1, 7, 13}.
fn fires(src: &str, rule: &str, dims: &DimBindings, check: impl Fn(&Graph, &Graph)) {
    let g = load(src);
    let (o, report) = optimize_at(&g, dims);
    let f = fired(&report);
    assert!(f.contains_key(rule), "`{rule}` did not fire: {f:?}\n{o}");
    check(&g, &o);
    for t in [1, 7, 13] {
        let mut d = dims.clone();
        d.insert("T".into(), t);
        assert!(
            same_outputs(&g, &[("optimised", &o)], &d).unwrap(),
            "{rule} at T = {t}"
        );
    }
}

#[test]
fn matrix_chains_are_regrouped_both_ways() {
    let t = 4096.0;
    let dims = at(&[("T", 4096)]);
    // (x·W₁)·W₂ with W₂ narrow: x·(W₁·W₂) is cheaper, and W₁·W₂ depends on weights only:
    // a load-time node, reported apart from the per-run work.
    let left = "dim T; input x: f32[T, 64]; param w1: f32[64, 64]; param w2: f32[64, 2];
                output y = (x @ w1) @ w2;";
    fires(left, "einsum-regroup", &dims, |_, o| {
        let s = opt::stats(o, &dims);
        assert_eq!(s.flops as f64, 2.0 * t * 64.0 * 2.0, "{o}");
        assert_eq!(s.load_time_flops as f64, 2.0 * 64.0 * 64.0 * 2.0, "{o}");
    });
    // x·(U₁·U₂) with a rank-2 product: (x·U₁)·U₂ is cheaper.
    let right = "dim T; input x: f32[T, 64]; param u1: f32[64, 2]; param u2: f32[2, 64];
                 output y = x @ (u1 @ u2);";
    fires(right, "einsum-regroup", &dims, |_, o| {
        let want = 2.0 * t * 64.0 * 2.0 + 2.0 * t * 2.0 * 64.0;
        assert_eq!(opt::stats(o, &dims).flops as f64, want, "{o}");
    });
    // Already optimal: nothing changes.
    let fine = "dim T; input x: f32[T, 64]; param w1: f32[64, 2]; param w2: f32[2, 64];
                output y = (x @ w1) @ w2;";
    let g = load(fine);
    let (o, _) = optimize_at(&g, &dims);
    assert_eq!(opt::stats(&o, &dims), opt::stats(&g, &dims));
}

#[test]
fn sums_move_through_einsums() {
    let dims = at(&[("T", 4096)]);
    let src = "dim T; input q: f32[T, 8]; input k: f32[T, 8];
               output z = sum(einsum(\"td,sd->ts\", q, k), axis = -1, keepdim = true);";
    for rule in ["sum-einsum", "einsum-presum"] {
        fires(src, rule, &dims, |g, o| {
            // Σ_s q_t·k_s = q_t·(Σ_s k_s): T·8 adds, then 2·T·8.
            assert_eq!(opt::stats(o, &dims).flops, 4096 * 8 + 2 * 4096 * 8, "{o}");
            assert!(opt::stats(g, &dims).flops > 4096 * 4096);
        });
    }
}

#[test]
fn layout_rules_remove_views() {
    let dims = at(&[("B", 1), ("T", 64)]);
    let tt = "dim B, T; input x: f32[B, T, 8];
              output y = exp(transpose(transpose(x, [1, 0, 2]), [1, 0, 2]));";
    fires(tt, "transpose-transpose", &dims, |_, o| {
        assert_eq!(count_ops(o, "transpose"), 0, "{o}");
    });
    let rr = "dim B, T; input x: f32[B, T, 8];
              output y = exp(reshape(reshape(x, [B, T, 2, 4]), [B, T * 8]));";
    fires(rr, "reshape-reshape", &dims, |_, o| {
        assert_eq!(count_ops(o, "reshape"), 1, "{o}");
    });
    let linear = "dim B, T; input x: f32[B, T, 8]; param w: f32[4, 8];
                  output y = linear(x, w);";
    fires(linear, "einsum-transpose-operand", &dims, |g, o| {
        assert_eq!(count_ops(g, "transpose"), 1);
        assert_eq!(count_ops(o, "transpose"), 0, "{o}");
        assert_eq!(o.nodes.len(), g.nodes.len() - 1);
    });
    let te = "dim T; input x: f32[T, 8]; param w: f32[8, 4];
              output y = transpose(x @ w, [1, 0]);";
    fires(te, "transpose-einsum", &dims, |_, o| {
        assert_eq!(count_ops(o, "transpose"), 0, "{o}");
    });
}

#[test]
fn seqc_dump_opt_explains_itself() {
    let spec = root().join("ir-specs").join("linear_attention.seq");
    let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args([
            "dump",
            spec.to_str().unwrap(),
            "--stage",
            "opt",
            "--dims",
            "T=512",
        ])
        .arg("--explain")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The IR text parses back (comment lines aside) and verifies.
    let ir: String = out
        .lines()
        .filter(|l| !l.starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    let g = seqc::ir::parse::parse_graph(&ir).unwrap();
    seqc::ir::verify::verify(&g).unwrap();
    for needle in [
        "// optimised for cpu at B=1,T=512",
        "// phase layout:",
        "// phase contraction:",
        "stopped: saturated",
        "einsum-transpose-operand ×",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    // An unknown dim is an error naming it.
    let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(["stats", spec.to_str().unwrap(), "--dims", "Q=3"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`Q`"));
}

/// A long matrix chain has O(n³) bracketings and more transient e-nodes: the contraction
/// phase stops at its limits rather than saturating, and the result is still right and
/// cheaper than the chain as written.
#[test]
fn long_chains_stop_at_the_limits() {
    let n = 24;
    let mut src = String::from("dim T; input x: f32[T, 8];\n");
    let mut expr = String::from("x");
    for i in 0..n {
        src.push_str(&format!("param w{i}: f32[8, 8];\n"));
        expr = format!("({expr} @ w{i})");
    }
    src.push_str(&format!("output y = {expr};\n"));
    let g = load(&src);
    let dims = at(&[("T", 4096)]);
    let (o, report) = optimize_at(&g, &dims);
    let contraction = report
        .phases
        .iter()
        .find(|p| p.name == "contraction")
        .unwrap();
    assert!(
        contraction.stop_reason.contains("limit"),
        "{}",
        report.explain()
    );
    assert!(opt::stats(&o, &dims).flops < opt::stats(&g, &dims).flops / 4);
    assert!(same_outputs(&g, &[("optimised", &o)], &at(&[("T", 3)])).unwrap());
}

#[test]
fn projections_of_one_input_are_merged() {
    let dims = at(&[("T", 4096)]);
    // Three projections of x (different widths) and one of another input: the three become
    // one contraction against their concatenated weights (a load-time node) read back by
    // slices; the per-run FLOPs do not change, and y's projection is left alone.
    let src = "dim T; input x: f32[T, 64]; input y: f32[T, 64];
               param wq: f32[32, 64]; param wk: f32[16, 64]; param wv: f32[16, 64];
               param wy: f32[16, 64];
               output o = slice(linear(x, wq), 1, 16, 32) * linear(x, wk)
                   + linear(x, wv) + linear(y, wy);";
    fires(src, "einsum-merge-siblings", &dims, |g, o| {
        let einsums: Vec<String> = o
            .nodes
            .iter()
            .filter(|n| matches!(n.op, seqc::ir::Op::Einsum { .. }))
            .map(|n| n.ty.to_string())
            .collect();
        assert_eq!(einsums, ["f32[T, 64]", "f32[T, 16]"], "{o}");
        let (before, after) = (opt::stats(g, &dims), opt::stats(o, &dims));
        assert_eq!(after.flops, before.flops, "{o}");
        assert_eq!(
            after.load_time_bytes,
            2 * 64 * 64 * 4,
            "the concatenation is load-time"
        );
    });
}

#[test]
fn elementwise_chains_and_reductions_are_fused() {
    let dims = at(&[("T", 4096)]);
    // RMSNorm then a gate: mean(x²) is one group (a reduction root), the normalisation, gate
    // and residual another; `e` feeds two consumers, so it stays a value of its own.
    let src = "dim T; input x: f32[T, 64]; input z: f32[T, 64]; param w: f32[64];
               let e = exp(z);
               let n = x * rsqrt(mean(x * x, axis = -1, keepdim = true) + 1e-6) * w;
               output y = n * sigmoid(e) + e;";
    let g = load(src);
    let (o, _) = optimize_at(&g, &dims);
    let ops: Vec<&str> = o.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(
        ops,
        ["input", "input", "param", "exp", "fused", "fused"],
        "{o}"
    );
    // The group rooted at the mean reads x once and ends in the reduction.
    let bodies: Vec<String> = o
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            seqc::ir::Op::Fused { body } => Some(
                body.nodes
                    .iter()
                    .map(|b| b.op.name())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(bodies[0], "input mul mean", "{o}");
    assert!(
        bodies[1].contains("rsqrt") && bodies[1].contains("sigmoid"),
        "{o}"
    );
    // Fewer bytes: no T×64 intermediate but the shared exp(z) is written.
    let (before, after) = (opt::stats(&g, &dims), opt::stats(&o, &dims));
    assert!(after.bytes * 2 < before.bytes, "{before:?} {after:?}");
    for t in [1, 7, 13] {
        let mut d = dims.clone();
        d.insert("T".into(), t);
        assert!(same_outputs(&g, &[("fused", &o)], &d).unwrap(), "T = {t}");
    }
}

/// Fuses softmax attention written in `body` (over q, k, v: [B, 2, T, 4], or what `body`
/// declares) and checks the result at T ∈ {1, 7, 13} with the default tiles and with tiles
/// 4 × 3 and 1 × 2; returns the optimised graph.
fn fuses(src: &str) -> Graph {
    let dims = at(&[("B", 2), ("T", 4096)]);
    let g = load(src);
    let (o, report) = optimize_at(&g, &dims);
    let f = fired(&report);
    assert!(
        f.contains_key("softmax-attention"),
        "did not fire: {f:?}\n{o}"
    );
    assert_eq!(count_ops(&o, "attention"), 1, "{o}");
    assert_eq!(count_ops(&o, "exp"), 0, "{o}");
    let (small, tiny) = (retile(&o, 4, 3), retile(&o, 1, 2));
    for t in [1, 7, 13] {
        let d = at(&[("B", 2), ("T", t)]);
        let graphs = [
            ("optimised", &o),
            ("tiles 4 × 3", &small),
            ("tiles 1 × 2", &tiny),
        ];
        assert!(same_outputs(&g, &graphs, &d).unwrap(), "T = {t}\n{o}");
    }
    o
}

const QKV: &str = "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4];
                   input v: f32[B, 2, T, 3];";

fn mask_of(g: &Graph) -> String {
    g.nodes
        .iter()
        .find_map(|n| match &n.op {
            Op::Attention { mask, .. } => Some(mask.to_string()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn softmax_attention_is_fused_with_its_mask() {
    let cases = [
        (
            "masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k) * 0.5, causal_mask(T)) @ v",
            "le(s, t)",
        ),
        (
            "softmax(where(window_mask(T, 3), einsum(\"bhtd,bhsd->bhts\", q, k), -inf)) @ v",
            "and(le(s, t), lt(sub(t, s), 3))",
        ),
        ("softmax(einsum(\"bhtd,bhsd->bhts\", q, k)) @ v", "true"),
        // Strided (Sparse Transformer): local band or every 3rd key back.
        (
            "softmax(where((iota([T, T], 1) <= iota([T, T], 0)) && ((iota([T, T], 0) - iota([T, T], 1) < 3) || ((iota([T, T], 0) - iota([T, T], 1)) % 3 == 0)), einsum(\"bhtd,bhsd->bhts\", q, k), -inf)) @ v",
            "and(le(s, t), or(lt(sub(t, s), 3), eq(rem(sub(t, s), 3), 0)))",
        ),
        // Sinks + window (StreamingLLM's mask), the key operand first.
        (
            "softmax(where(causal_mask(T) && ((iota([T, T], 1) < 2) || (iota([T, T], 0) - iota([T, T], 1) < 3)), einsum(\"bhsd,bhtd->bhts\", k, q) * 0.25, -inf)) @ v",
            "and(le(s, t), or(lt(s, 2), lt(sub(t, s), 3)))",
        ),
        // Static global tokens (the first 2 positions attend and are attended everywhere)
        // on a two-sided band (Longformer with a fixed global set).
        (
            "softmax(where((abs(iota([T, T], 0) - iota([T, T], 1)) <= 2) || (iota([T, T], 1) < 2) || (iota([T, T], 0) < 2), einsum(\"bhtd,bhsd->bhts\", q, k), -inf)) @ v",
            "or(or(le(maximum(sub(t, s), sub(0, sub(t, s))), 2), lt(s, 2)), lt(t, 2))",
        ),
        // A pattern per head (head h also sees h keys ahead).
        (
            "masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k), iota([2, T, T], 2) <= iota([2, T, T], 1) + iota([2, T, T], 0)) @ v",
            "le(s, add(t, b1))",
        ),
        // A dilated two-sided window, its dilation a constant table per head (Longformer).
        (
            "masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k), ((iota([2, T, T], 1) - iota([2, T, T], 2)) % reshape(concat([full([1], 1, dtype = i32), full([1], 2, dtype = i32)], 0), [2, 1, 1]) == 0) && (abs(iota([2, T, T], 1) - iota([2, T, T], 2)) <= 2)) @ v",
            "and(eq(rem(sub(t, s), table(b1, [1, 2])), 0), le(maximum(sub(t, s), sub(0, sub(t, s))), 2))",
        ),
        // Strictly causal: row 0 sees no key and is NaN, fused or not.
        (
            "masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k), iota([T, T], 1) < iota([T, T], 0)) @ v",
            "lt(s, t)",
        ),
    ];
    for (expr, mask) in cases {
        let o = fuses(&format!("{QKV} output y = {expr};"));
        assert_eq!(mask_of(&o), mask, "{expr}");
    }
}

/// The fused node's scale.
fn scale_of(g: &Graph) -> f64 {
    g.nodes
        .iter()
        .find_map(|n| match &n.op {
            Op::Attention { scale, .. } => Some(*scale),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_division_of_the_scores_is_the_scale() {
    // `x / sqrt(D)` and `x / c`: the scale is 1 / c; a zero divisor is not a scale.
    for (expr, scale) in [
        ("einsum(\"bhtd,bhsd->bhts\", q, k) / sqrt(4.0)", 0.5),
        ("einsum(\"bhtd,bhsd->bhts\", q, k) / 8.0", 0.125),
    ] {
        let o = fuses(&format!(
            "{QKV} output y = masked_softmax({expr}, causal_mask(T)) @ v;"
        ));
        assert_eq!(scale_of(&o), scale, "{expr}");
        assert_eq!(count_ops(&o, "div"), 0, "{o}");
    }
    let g = load(&format!(
        "{QKV} output y = softmax(einsum(\"bhtd,bhsd->bhts\", q, k) / 0.0) @ v;"
    ));
    let (o, _) = optimize_at(&g, &at(&[("B", 2), ("T", 64)]));
    assert_eq!(count_ops(&o, "attention"), 0, "{o}");
}

#[test]
fn avoided_operators_are_not_extracted() {
    // A backend that cannot run `linear_attn` or `fused` yet gets the best graph without them.
    let g = frontend::load_file(&root().join("ir-specs/linear_attention.seq")).unwrap();
    let names = |o: &Graph| -> Vec<&'static str> { o.nodes.iter().map(|n| n.op.name()).collect() };
    let (full, _) = optimize_at(&g, &DimBindings::new());
    assert!(names(&full).contains(&"linear_attn") && names(&full).contains(&"fused"));
    let opts = OptOptions {
        avoid_ops: vec!["linear_attn", "fused"],
        ..Default::default()
    };
    let (o, _) = opt::optimize(&g, &opts).unwrap();
    assert!(
        !names(&o).contains(&"linear_attn") && !names(&o).contains(&"fused"),
        "{o}"
    );
    assert!(names(&o).contains(&"einsum"), "{o}");
    let d = at(&[("B", 2), ("T", 7)]);
    assert!(same_outputs(&g, &[("avoiding", &o)], &d).unwrap());
}

#[test]
fn fused_attention_handles_layouts_and_grouped_heads() {
    // The value einsum's output in another order: a transpose after the fused node.
    let o = fuses(&format!(
        "{QKV} output y = einsum(\"bhts,bhsd->bthd\", softmax(einsum(\"bhtd,bhsd->bhts\", q, k)), v);"
    ));
    assert_eq!(count_ops(&o, "transpose"), 1, "{o}");
    // Grouped-query attention: 2 key heads shared by 3 query heads each.
    fuses(
        "dim B, T; input q: f32[B, 2, 3, T, 4]; input k: f32[B, 2, T, 4]; input v: f32[B, 2, T, 5];
         let s = einsum(\"bgjtd,bgsd->bgjts\", q, k) * 0.5;
         output y = einsum(\"bgjts,bgsd->bgjtd\", masked_softmax(s, window_mask(T, 4)), v);",
    );
}

/// Two causal segments (blocks of 4 keys; every other key of blocks of 6, so that some rows
/// see no key) merged by log-sum-exp, as LongNet merges its dilated segments: each partial
/// attention and its log-sum-exp become one fused node.
#[test]
fn partial_attentions_merged_by_lse_are_fused() {
    let src = "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4];
        input v: f32[B, 2, T, 3];
        fn lse(x) { logsumexp(x, axis = -1, keepdim = true) }
        fn part(x, v) { exp(x - where(lse(x) > -inf, lse(x), 0.0)) @ v }
        let s = einsum(\"bhtd,bhsd->bhts\", q, k) * 0.5;
        let i = iota([T, T], 0);
        let j = iota([T, T], 1);
        let xa = where((j <= i) && (i / 4 == j / 4), s, -inf);
        let xb = where((j <= i) && (i / 6 == j / 6) && (j % 2 == 1), s, -inf);
        let l = logsumexp(concat([lse(xa), lse(xb)], -1), axis = -1, keepdim = true);
        output y = exp(lse(xa) - l) * part(xa, v) + exp(lse(xb) - l) * part(xb, v);";
    let dims = at(&[("B", 2), ("T", 4096)]);
    let g = load(src);
    let (o, report) = optimize_at(&g, &dims);
    assert!(fired(&report).contains_key("lse-attention"), "{o}");
    assert_eq!(count_ops(&o, "attention_lse"), 2, "{o}");
    assert_eq!(
        count_ops_deep(&o, "exp"),
        2,
        "only the merge's exps are left: {o}"
    );
    let (small, tiny) = (retile(&o, 4, 3), retile(&o, 1, 2));
    for t in [1, 7, 13] {
        let d = at(&[("B", 2), ("T", t)]);
        let graphs = [
            ("optimised", &o),
            ("tiles 4 × 3", &small),
            ("tiles 1 × 2", &tiny),
        ];
        assert!(same_outputs(&g, &graphs, &d).unwrap(), "T = {t}\n{o}");
    }
}

/// BigBird (ir-specs/bigbird.seq): window, global blocks and seeded random blocks fused into
/// one attention whose mask reads the random-block table and the block count, which the
/// graph computes from T and the seed, as operands; equal to the original at T = 1, primes
/// and lengths that are not multiples of the block (2), with several tile sizes (at T ≥ 9
/// there are random blocks).
#[test]
fn bigbird_random_blocks_are_fused() {
    let g = frontend::load_file(&root().join("ir-specs/bigbird.seq")).unwrap();
    let (o, report) = optimize_at(&g, &at(&[("B", 1), ("T", 4096)]));
    assert!(fired(&report).contains_key("softmax-attention"), "{o}");
    assert_eq!(count_ops(&o, "attention"), 1, "{o}");
    assert_eq!(count_ops_deep(&o, "exp"), 0, "{o}");
    let mask = mask_of(&o);
    assert!(
        mask.contains("operand(4, [b1, div(t, 2), div(s, 2)])"),
        "{mask}"
    );
    let (small, tiny) = (retile(&o, 4, 3), retile(&o, 1, 2));
    for t in [1, 2, 3, 5, 7, 9, 13, 16, 17, 37] {
        let d = at(&[("B", 2), ("T", t)]);
        let graphs = [
            ("optimised", &o),
            ("tiles 4 × 3", &small),
            ("tiles 1 × 2", &tiny),
        ];
        assert!(same_outputs(&g, &graphs, &d).unwrap(), "T = {t}\n{o}");
    }
}

/// Seeded tensors for `g` at `dims` whose bool inputs are sparse (about one entry in five
/// true, by a fixed hash of the position) and whose i32 inputs are 1 or 3 (divisors), so
/// that masks read from inputs hide some keys and whole tiles, not none.
fn sparse_masks(g: &Graph, dims: &DimBindings) -> BTreeMap<String, HostTensor> {
    let mut tensors = BTreeMap::new();
    for (name, id) in g.inputs() {
        let ty = g.tensor_ty(id);
        let shape: Vec<usize> = ty
            .shape
            .iter()
            .map(|d| d.eval(dims).unwrap() as usize)
            .collect();
        let n: usize = shape.iter().product();
        let v: Vec<f64> = match ty.dtype {
            DType::Bool => (0..n)
                .map(|i| f64::from(u8::from((i * 7919 + 13) % 5 == 0)))
                .collect(),
            DType::I32 => (0..n).map(|i| if i % 2 == 0 { 1.0 } else { 3.0 }).collect(),
            _ => continue,
        };
        tensors.insert(name.to_string(), HostTensor::from_f64(ty.dtype, shape, &v));
    }
    bind::fill_missing(g, dims, &mut tensors, 3).unwrap();
    tensors
}

/// Masks computed from inputs become operands of the fused attention, read at run time:
/// the optimised graph agrees with the original at several T, including a query row that
/// sees no key (NaN in both forms) and rows that see only themselves.
#[test]
fn data_dependent_masks_are_fused_as_operands() {
    let cases = [
        // A whole [T, T] mask given as an input.
        "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4]; input v: f32[B, 2, T, 3];
         input m: bool[T, T];
         output y = masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k), m) @ v;",
        // A block table given as an input, read through `take`.
        "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4]; input v: f32[B, 2, T, 3];
         input tb: bool[T, T];
         let blk = iota([T], 0) / 2;
         output y = masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k), take(take(tb, blk, axis = 0), blk, axis = 1)) @ v;",
        // A table per head given as an input.
        "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4]; input v: f32[B, 2, T, 3];
         input dil: i32[2, 1, 1];
         output y = masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k), (iota([2, T, T], 1) - iota([2, T, T], 2)) % dil == 0) @ v;",
        // Longformer's local branch: a band or a global key per sequence.
        "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4]; input v: f32[B, 2, T, 3];
         input g: bool[B, T];
         let band = abs(iota([T, T], 0) - iota([T, T], 1)) <= 1;
         output y = masked_softmax(einsum(\"bhtd,bhsd->bhts\", q, k), band || unsqueeze(unsqueeze(g, 1), 1)) @ v;",
    ];
    for src in cases {
        let g = load(src);
        let (o, _) = optimize_at(&g, &at(&[("B", 2), ("T", 64)]));
        let fused: Vec<_> = o
            .nodes
            .iter()
            .filter(|n| n.op.name() == "attention")
            .collect();
        assert_eq!(fused.len(), 1, "{o}");
        assert!(fused[0].inputs.len() > 3, "the mask reads no operand:\n{o}");
        let small = retile(&o, 4, 3);
        for t in [1, 2, 7, 13, 64, 67] {
            let d = at(&[("B", 2), ("T", t)]);
            let tensors = sparse_masks(&g, &d);
            let want = interp::run(&g, &d, &tensors).unwrap();
            for h in [&o, &small] {
                let got = interp::run(h, &d, &tensors).unwrap();
                close(&want["y"], &got["y"]).unwrap_or_else(|e| panic!("T = {t}: {e}\n{h}"));
            }
        }
    }
    // Given masks: row 0 sees nothing (NaN in both forms), the others see keys ≤ t in
    // every other row (a diagonal band otherwise), so some tiles are hidden and some not.
    let g = load(cases[0]);
    let (o, _) = optimize_at(&g, &at(&[("B", 2), ("T", 64)]));
    let small = retile(&o, 4, 3);
    for t in [1usize, 5, 13, 67] {
        let d = at(&[("B", 2), ("T", t as i64)]);
        let mask: Vec<f64> = (0..t * t)
            .map(|i| {
                let (r, c) = (i / t, i % t);
                let seen = r > 0 && if r % 2 == 0 { c <= r } else { c == r };
                f64::from(u8::from(seen))
            })
            .collect();
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "m".to_string(),
            HostTensor::from_f64(DType::Bool, vec![t, t], &mask),
        );
        bind::fill_missing(&g, &d, &mut tensors, 9).unwrap();
        let want = interp::run(&g, &d, &tensors).unwrap();
        assert!(want["y"].to_f64_vec()[0].is_nan(), "row 0 sees no key");
        for h in [&o, &small] {
            let got = interp::run(h, &d, &tensors).unwrap();
            close(&want["y"], &got["y"]).unwrap_or_else(|e| panic!("T = {t}: {e}\n{h}"));
        }
    }
}

/// softmax(QKᵀ·s + M) with an additive mask M = where(C, 0, −∞) (or where(C, −∞, 0), either
/// operand order) is the select form (`additive-mask`) and fuses; a finite "−∞" (−10⁹, what
/// some codebases add) is not the same where a row sees no key, and is left alone.
#[test]
fn additive_masks_are_fused() {
    let head =
        "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4]; input v: f32[B, 2, T, 3];
         let s = einsum(\"bhtd,bhsd->bhts\", q, k) * 0.5;";
    let fused = [
        (
            "output y = softmax(s + where(causal_mask(T), zeros([T, T]), -inf)) @ v;",
            "le(s, t)",
        ),
        (
            "output y = softmax(where(causal_mask(T), zeros([T, T]), -inf) + s) @ v;",
            "le(s, t)",
        ),
        // Strict: row 0 sees no key (NaN in both forms).
        (
            "output y = softmax(s + where(iota([T, T], 1) >= iota([T, T], 0), -inf, zeros([T, T]))) @ v;",
            "not(ge(s, t))",
        ),
    ];
    for (body, mask) in fused {
        let g = load(&format!("{head}\n{body}"));
        let (o, report) = optimize_at(&g, &at(&[("B", 2), ("T", 64)]));
        assert!(fired(&report).contains_key("additive-mask"), "{o}");
        assert_eq!(count_ops(&o, "attention"), 1, "{o}");
        assert_eq!(mask_of(&o), mask, "{o}");
        let small = retile(&o, 4, 3);
        for t in [1, 2, 7, 13, 67] {
            let d = at(&[("B", 2), ("T", t)]);
            let graphs = [("optimised", &o), ("tiles 4 × 3", &small)];
            assert!(same_outputs(&g, &graphs, &d).unwrap(), "T = {t}\n{o}");
        }
    }
    let finite = "output y = softmax(s + where(causal_mask(T), zeros([T, T]), -1e9)) @ v;";
    let g = load(&format!("{head}\n{finite}"));
    let (o, _) = optimize_at(&g, &at(&[("B", 2), ("T", 64)]));
    assert_eq!(count_ops(&o, "attention"), 0, "{o}");
}

/// Masks, layouts and lengths the rules must leave alone.
#[test]
fn unstructured_masks_are_not_fused() {
    let dims = at(&[("B", 2), ("T", 64)]);
    let cases = [
        // Keys of another symbolic length S, which may be 0 while T is not (the fused rows
        // would be NaN where the unfused einsum gives 0).
        "dim B, T, S; input q: f32[B, 2, T, 4]; input k: f32[B, 2, S, 4]; input v: f32[B, 2, S, 3];
         output y = softmax(einsum(\"bhtd,bhsd->bhts\", q, k)) @ v;",
        // Softmax over the query axis.
        "dim B, T; input q: f32[B, 2, T, 4]; input k: f32[B, 2, T, 4]; input v: f32[B, 2, T, 3];
         output y = einsum(\"bhts,bhtd->bhsd\", softmax(einsum(\"bhtd,bhsd->bhts\", q, k), axis = 2), v);",
    ];
    for src in cases {
        let g = load(src);
        let (o, _) = optimize_at(&g, &dims);
        assert_eq!(count_ops(&o, "attention"), 0, "{o}");
    }
}
