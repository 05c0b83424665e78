//! Top-k mixture of experts (`moe-topk-grouped`, docs/rewrites.md): Mixtral's dense "every
//! expert on every token × gate zero outside the top K" becomes rows repeated K times →
//! `grouped_matmul` → sum over the K slots, agrees with the dense form on the interpreter
//! (seeded random inputs, B = 2, T ∈ {1, 2, 7, 13}; a small MoE block and the whole
//! hf_mixtral model), is refused where the gate is not provably top-k or the experts are not
//! one row-wise function, and makes the experts' FLOPs proportional to K·T instead of E·T
//! (`seqc stats`).

mod support;

use seqc::ir::{DimBindings, Graph};
use seqc::opt::{self, OptOptions};
use seqc::{bind, frontend, interp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::{bt, count_ops, fired, seqc_flops};

const RULE: &str = "moe-topk-grouped";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A Mixtral sparse block on its own: E = 4 SwiGLU experts, top-2 routing, gates
/// renormalised over the chosen experts.
const BLOCK: &str = r#"
dim B, T;
const DM = 8;
const DFF = 12;
const E = 4;
const K = 2;

input x: f32[B, T, DM];

fn expert(x) {
    param w1.weight: f32[DFF, DM];
    param w2.weight: f32[DM, DFF];
    param w3.weight: f32[DFF, DM];
    linear(silu(linear(x, w1.weight)) * linear(x, w3.weight), w2.weight)
}

fn moe(x) {
    param gate.weight: f32[E, DM];
    let p = softmax(linear(x, gate.weight), axis = -1);
    let chosen = sum(one_hot(argtopk(p, K, axis = -1), E), axis = 2);
    let g = p * chosen / sum(p * chosen, axis = -1, keepdim = true);
    repeat e in 0..E with acc = zeros([dim(x, 0), dim(x, 1), DM]) {
        acc + expert(x) at "experts.{e}" * slice(g, 2, e, e + 1)
    }
}

output y = x + moe(x);
"#;

fn variant(from: &str, to: &str) -> String {
    assert!(BLOCK.contains(from), "the block no longer has `{from}`");
    BLOCK.replace(from, to)
}

fn load(src: &str) -> Graph {
    frontend::load_str("test.seq", src).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn optimize(g: &Graph) -> (Graph, opt::OptReport) {
    opt::optimize(g, &OptOptions::default()).unwrap_or_else(|e| panic!("optimizer: {e}"))
}

/// Runs both graphs on the same seeded tensors and checks output `out`:
/// max|a − b| ≤ 1e-5·max(1, max|a|).
fn agree(g: &Graph, h: &Graph, out: &str, d: &DimBindings, seed: u64) {
    let mut tensors = BTreeMap::new();
    bind::fill_missing(g, d, &mut tensors, seed).unwrap();
    let want = interp::run(g, d, &tensors).unwrap();
    let got = interp::run(h, d, &tensors).unwrap();
    let (a, b) = (want[out].to_f64_vec(), got[out].to_f64_vec());
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{d:?} seed {seed}: element {i}: {x} vs {y}"
        );
    }
}

#[test]
fn block_experts_run_grouped_and_agree() {
    let g = load(BLOCK);
    let (h, report) = optimize(&g);
    assert_eq!(fired(&report, RULE), 1);
    // w1 and w3 of the 4 experts side by side (both read the rows), then w2: two grouped
    // products on 2·B·T rows, no dense expert.
    assert_eq!(count_ops(&h, "grouped_matmul"), 2, "{h}");
    let widths: Vec<String> = h
        .nodes
        .iter()
        .filter(|n| n.op.name() == "grouped_matmul")
        .map(|n| n.ty.tensor().unwrap().shape[1].to_string())
        .collect();
    assert!(
        widths.contains(&"24".to_string()),
        "gate and up merged (2 × DFF): {widths:?}\n{h}"
    );
    for n in h.nodes.iter().filter(|n| n.op.name() == "grouped_matmul") {
        assert_eq!(n.ty.tensor().unwrap().shape[0].to_string(), "2*B*T", "{h}");
    }
    assert_eq!(
        count_ops(&h, "einsum"),
        1,
        "only the router stays an einsum: {h}"
    );
    for t in [1, 2, 7, 13] {
        for seed in [1, 2, 3] {
            agree(&g, &h, "y", &bt(2, t), seed);
        }
    }
}

#[test]
fn hf_mixtral_agrees_with_its_dense_form() {
    let src = std::fs::read_to_string(root().join("ir-specs/hf_mixtral.seq")).unwrap();
    let g = load(&src);
    let (h, report) = optimize(&g);
    // One sparse block per layer (L = 2).
    assert_eq!(fired(&report, RULE), 2);
    assert_eq!(count_ops(&h, "grouped_matmul"), 4, "{h}");
    for t in [1, 2, 7, 13] {
        agree(&g, &h, "logits", &bt(2, t), 5);
    }
}

#[test]
fn gates_not_zero_outside_a_top_k_are_refused() {
    let chosen = "let chosen = sum(one_hot(argtopk(p, K, axis = -1), E), axis = 2);";
    let cases = [
        // A threshold router: any number of experts per token.
        (
            "threshold",
            variant(chosen, "let chosen = cast(p > 0.2, f32);"),
        ),
        // The top-k of a longer axis: its positions are not experts in 0..E (one_hot drops
        // the ones ≥ E).
        (
            "top-k over 2E",
            variant(
                chosen,
                "let chosen = sum(one_hot(argtopk(concat([p, p], -1), K, axis = -1), E), axis = 2);",
            ),
        ),
        // The gate is p itself, not masked by the top-k.
        (
            "unmasked gate",
            variant(
                "let g = p * chosen / sum(p * chosen, axis = -1, keepdim = true);",
                "let g = p + 0.0 * chosen;",
            ),
        ),
    ];
    for (what, src) in cases {
        let g = load(&src);
        let (h, report) = optimize(&g);
        assert_eq!(fired(&report, RULE), 0, "{what}");
        assert_eq!(count_ops(&h, "grouped_matmul"), 0, "{what}");
        agree(&g, &h, "y", &bt(2, 7), 1);
    }
}

#[test]
fn experts_that_are_not_one_row_wise_function_are_refused() {
    let sum = r#"    repeat e in 0..E with acc = zeros([dim(x, 0), dim(x, 1), DM]) {
        acc + expert(x) at "experts.{e}" * slice(g, 2, e, e + 1)
    }"#;
    let col = |e: usize| format!("slice(g, 2, {e}, {})", e + 1);
    let unrolled = |last: &str| {
        format!(
            "    expert(x) at \"experts.0\" * {} + expert(x) at \"experts.1\" * {} + \
             expert(x) at \"experts.2\" * {} + {last}(x) at \"experts.3\" * {}",
            col(0),
            col(1),
            col(2),
            col(3)
        )
    };
    let gelu = "fn gelu_expert(x) {
    param w1.weight: f32[DFF, DM];
    param w2.weight: f32[DM, DFF];
    param w3.weight: f32[DFF, DM];
    linear(gelu(linear(x, w1.weight)) * linear(x, w3.weight), w2.weight)
}
fn moe(x) {";
    let cases = [
        // The same function written out: still grouped (checks the unrolled form).
        ("unrolled", variant(sum, &unrolled("expert")), 1),
        // Expert 3 uses gelu where the others use silu.
        (
            "different structure",
            variant(sum, &unrolled("gelu_expert")).replace("fn moe(x) {", gelu),
            0,
        ),
        // Expert 3 is missing from the sum.
        (
            "missing expert",
            variant("repeat e in 0..E with", "repeat e in 0..3 with"),
            0,
        ),
        // A running sum over T inside every expert: row t depends on earlier tokens.
        (
            "token mixing",
            variant(
                "silu(linear(x, w1.weight))",
                "silu(cumsum(linear(x, w1.weight), 1))",
            ),
            0,
        ),
    ];
    for (what, src, want) in cases {
        let g = load(&src);
        let (h, report) = optimize(&g);
        assert_eq!(fired(&report, RULE), want, "{what}");
        assert_eq!(count_ops(&h, "grouped_matmul"), 2 * want, "{what}: {h}");
        agree(&g, &h, "y", &bt(2, 7), 2);
    }
}

/// The block at DM = 256, DFF = 1024, K = 2, T = 4096 with E = 8 and E = 16 experts: the dense
/// form costs E·T rows of SwiGLU (3 products of 2·DM·DFF per row), the grouped one K·T rows
/// whatever E is (the router, E·DM per token, is < 1%).
#[test]
fn seqc_stats_sees_expert_flops_proportional_to_k_t() {
    let dir = std::env::temp_dir().join(format!("seqc-moe-topk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = 4096.0;
    let per_row = 3.0 * 2.0 * 256.0 * 1024.0;
    let mut opts = Vec::new();
    for e in [8, 16] {
        let src = BLOCK
            .replace("const DM = 8;", "const DM = 256;")
            .replace("const DFF = 12;", "const DFF = 1024;")
            .replace("const E = 4;", &format!("const E = {e};"));
        let file = dir.join(format!("block_e{e}.seq"));
        std::fs::write(&file, src).unwrap();
        let (ir, opt) = (
            seqc_flops(&file, "ir", 4096),
            seqc_flops(&file, "opt", 4096),
        );
        let dense = e as f64 * t * per_row;
        let routed = 2.0 * t * per_row;
        assert!(
            ir >= dense && ir < 1.01 * dense,
            "E = {e}: ir {ir} vs {dense}"
        );
        assert!(
            opt >= routed && opt < 1.01 * routed,
            "E = {e}: opt {opt} vs {routed}"
        );
        opts.push(opt);
    }
    assert!(
        opts[1] / opts[0] < 1.01,
        "grouped FLOPs grow with E: {opts:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
