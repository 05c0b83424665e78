//! Mixture-of-experts dispatch (`moe-dispatch`, docs/rewrites.md): Switch's dense
//! "every expert on every token × capacity-masked gate" becomes gather → expert on CAP rows →
//! scatter-add, agrees with the dense form on the interpreter (seeded random inputs, T from 1
//! to 37 with primes, B ∈ {1, 3}, tokens dropped by capacity), is refused where the gate is
//! not provably capacity-bounded or the expert is not row-wise, never rebuilds an integer
//! division by a gathered row (padding rows are zeros), and cuts the experts' FLOPs
//! by about E / capacity factor at realistic sizes (`seqc stats`).

mod support;

use seqc::ir::{DimBindings, Graph, Op};
use seqc::opt::{self, OptOptions};
use seqc::{bind, frontend, interp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::{bt, count_ops, fired, seqc_flops};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn switch_src() -> String {
    std::fs::read_to_string(root().join("ir-specs/switch_moe.seq")).unwrap()
}

fn load(src: &str) -> Graph {
    frontend::load_str("test.seq", src).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn optimize(g: &Graph) -> (Graph, opt::OptReport) {
    opt::optimize(g, &OptOptions::default()).unwrap_or_else(|e| panic!("optimizer: {e}"))
}

/// Runs both graphs on the same seeded tensors; returns the original's output `y` after
/// checking max|a − b| ≤ 1e-5·max(1, max|a|).
fn agree(g: &Graph, h: &Graph, d: &DimBindings, seed: u64) -> Vec<f64> {
    let mut tensors = BTreeMap::new();
    bind::fill_missing(g, d, &mut tensors, seed).unwrap();
    let want = interp::run(g, d, &tensors).unwrap();
    let got = interp::run(h, d, &tensors).unwrap();
    let (a, b) = (want["y"].to_f64_vec(), got["y"].to_f64_vec());
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{d:?} seed {seed}: element {i}: {x} vs {y}"
        );
    }
    a
}

#[test]
fn switch_experts_run_on_gathered_rows_and_agree() {
    let g = load(&switch_src());
    let (h, report) = optimize(&g);
    assert!(fired(&report, "moe-dispatch") > 0);
    // One scatter-add per expert, and every expert contraction runs on CAP = 3 rows.
    assert_eq!(count_ops(&h, "scatter_add"), 4, "{h}");
    let expert_einsums: Vec<_> = h
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Einsum { .. }))
        .filter(|n| {
            let s = &n.ty.tensor().unwrap().shape;
            s.last().and_then(|d| d.as_const()) != Some(4)
        })
        .collect();
    assert_eq!(expert_einsums.len(), 8, "{h}");
    for n in expert_einsums {
        assert_eq!(n.ty.tensor().unwrap().shape[1].as_const(), Some(3), "{h}");
    }
    for b in [1, 3] {
        for t in [1, 2, 3, 5, 13, 37] {
            for seed in [1, 2] {
                let y = agree(&g, &h, &bt(b, t), seed);
                // E·CAP = 12 slots per sequence: at T = 37 at least 25 tokens are dropped
                // (output row exactly 0), so the capacity mask is exercised.
                if t == 37 {
                    for row in y.chunks(37 * 16) {
                        let dropped = row
                            .chunks(16)
                            .filter(|r| r.iter().all(|v| *v == 0.0))
                            .count();
                        assert!(dropped >= 25, "only {dropped} tokens dropped");
                    }
                }
            }
        }
    }
}

/// The gate's capacity bound `keep = chosen && (priority <= CAP)` replaced by `from`.
fn variant(from: &str, to: &str) -> String {
    let src = switch_src();
    assert!(src.contains(from), "switch_moe.seq no longer has `{from}`");
    src.replace(from, to)
}

#[test]
fn unbounded_gates_are_refused() {
    let keep = "let keep = chosen && (cast(priority, i32) <= CAP);";
    let cases = [
        // No capacity: as many tokens per expert as T (Mixtral's case).
        ("no capacity", variant(keep, "let keep = chosen;")),
        // A lower bound on the count bounds nothing.
        (
            "lower bound",
            variant(keep, "let keep = chosen && (cast(priority, i32) >= CAP);"),
        ),
        // The count is of another mask than the one kept.
        (
            "count of another mask",
            variant(
                keep,
                "let keep = (probs > 0.2) && (cast(priority, i32) <= CAP);",
            ),
        ),
        // The count runs backwards in time.
        (
            "reverse count",
            variant(
                "scan(ones([B, T, E]), cast(chosen, f32), 1)",
                "scan(ones([B, T, E]), cast(chosen, f32), 1, reverse = true)",
            ),
        ),
    ];
    for (what, src) in cases {
        let g = load(&src);
        let (h, report) = optimize(&g);
        assert_eq!(fired(&report, "moe-dispatch"), 0, "{what}");
        assert_eq!(count_ops(&h, "scatter_add"), 0, "{what}");
        agree(&g, &h, &bt(2, 13), 1);
    }
}

#[test]
fn experts_that_mix_tokens_are_not_gathered() {
    // mean over T makes row t of the expert depend on every token: no gather below it.
    let src = variant(
        "linear(relu(linear(x, wi.weight)), wo.weight)",
        "linear(relu(linear(x, wi.weight)), wo.weight) + mean(x, axis = 1, keepdim = true)",
    );
    let g = load(&src);
    let (h, report) = optimize(&g);
    assert_eq!(fired(&report, "moe-dispatch"), 0);
    assert_eq!(count_ops(&h, "scatter_add"), 0);
    // A token-mixing operator below a row-wise expert: gathered above it only.
    let src = variant(
        "linear(relu(linear(x, wi.weight)), wo.weight)",
        "linear(relu(linear(cumsum(x, 1), wi.weight)), wo.weight)",
    );
    let g = load(&src);
    let (h, report) = optimize(&g);
    assert!(fired(&report, "moe-dispatch") > 0);
    assert_eq!(count_ops(&h, "scatter_add"), 4);
    for t in [1, 7, 37] {
        agree(&g, &h, &bt(2, t), 3);
    }
}

#[test]
fn integer_division_by_a_gathered_row_is_not_rebuilt() {
    // 1 / [x ≠ 0] is 1 on every real row and a division by zero on a padding row (zeros):
    // the expert may be gathered above the division, never below it.
    let src = variant(
        "linear(relu(linear(x, wi.weight)), wo.weight)",
        "linear(relu(linear(x * cast(1 / cast(x != 0.0, i32), f32), wi.weight)), wo.weight)",
    );
    let g = load(&src);
    let (conv, _) = opt::saturate(&g, &OptOptions::default());
    let eg = &conv.egraph;
    let mut gathered = 0;
    for class in eg.classes() {
        let on_slots = class
            .data
            .tensor()
            .is_some_and(|t| t.shape.len() == 3 && t.shape[1].as_const() == Some(3));
        gathered += usize::from(on_slots && class.nodes.iter().any(|n| n.op.name() == "einsum"));
        assert!(
            !(on_slots && class.nodes.iter().any(|n| n.op.name() == "div")),
            "an integer division was rebuilt on gathered rows"
        );
    }
    assert!(gathered > 0, "the experts above the division are gathered");
    let (h, _) = optimize(&g);
    for t in [1, 7] {
        agree(&g, &h, &bt(2, t), 4);
    }
}

/// switch_moe at Switch-base-like sizes: d_model 512, d_ff 2048, E = 8 experts, T = 4096
/// tokens, capacity factor 1.25 (CAP = 1.25·T/E = 640). The dense form runs 8 × 4096 rows
/// through the experts, the dispatched one 8 × 640: FLOPs drop by E / 1.25 = 6.4× (the router
/// and gating are < 1% of the total).
#[test]
fn seqc_stats_sees_expert_flops_drop_by_e_over_capacity_factor() {
    let src = switch_src()
        .replace("const DM = 16;", "const DM = 512;")
        .replace("const DFF = 32;", "const DFF = 2048;")
        .replace("const E = 4;", "const E = 8;")
        .replace("const CAP = 3;", "const CAP = 640;");
    assert!(src.contains("const CAP = 640;") && src.contains("const E = 8;"));
    let dir = std::env::temp_dir().join(format!("seqc-moe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switch_base.seq");
    std::fs::write(&file, src).unwrap();
    let (ir, opt) = (
        seqc_flops(&file, "ir", 4096),
        seqc_flops(&file, "opt", 4096),
    );
    let dense_experts = 8.0 * 2.0 * (2.0 * 4096.0 * 512.0 * 2048.0);
    let routed_experts = 8.0 * 2.0 * (2.0 * 640.0 * 512.0 * 2048.0);
    assert!(ir >= dense_experts && ir < 1.01 * dense_experts, "ir {ir}");
    assert!(
        opt >= routed_experts && opt < 1.01 * routed_experts,
        "opt {opt}"
    );
    let drop = ir / opt;
    assert!((6.0..=6.5).contains(&drop), "FLOPs drop {drop}");
    std::fs::remove_dir_all(&dir).ok();
}
