//! The kernel IR of a few specs and of a `scan_fn` (`seqc dump --stage kernels`) and the LLVM
//! IR of a small one (`seqc dump --stage llvm`, before optimisation), against reviewed
//! snapshots.

use seqc::{codegen, frontend, kernel};
use std::path::Path;

fn spec(name: &str) -> seqc::ir::Graph {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ir-specs")
        .join(format!("{name}.seq"));
    frontend::load_file(&p).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn kernel_snapshots() {
    for name in ["softmax_attention", "mamba", "lru"] {
        let p = kernel::lower(&spec(name)).expect("lowers");
        insta::assert_snapshot!(format!("kernels_{name}"), kernel::print::print_program(&p));
    }
}

#[test]
fn llvm_snapshot_of_a_small_kernel() {
    let g = frontend::load_str(
        "t.seq",
        "dim B, T;\ninput x: f32[B, T];\noutput y = sum(exp(x), axis = 1);",
    )
    .expect("spec loads");
    let p = kernel::lower(&g).expect("lowers");
    // A fixed target (not the host's), so that the snapshot does not depend on the machine
    // (with AVX-512 the kernels carry prefer-vector-width=512).
    let t = codegen::cpu::cpu_target("x86-64-v4").expect("a known level");
    let ir = codegen::cpu::llvm_ir_for(&p, false, &t).expect("llvm");
    insta::assert_snapshot!("llvm_sum_exp", ir);
}

/// `scan_fn`: one serial time loop around the body's kernels; two states, one of them read
/// back from slice t − 1 of its stacked output (the init at t = 0), a capture, and an einsum
/// materialised per step into a temporary live only in that kernel.
#[test]
fn kernel_snapshot_of_a_scan_fn() {
    let g = frontend::load_str(
        "t.seq",
        "dim B, T;
input x: f32[B, T, 2];
input w: f32[2, 2];
fn step(h, c, x, w) {
    let a = tanh(einsum(\"bi,ij->bj\", h, w) + x);
    (a, c + a)
}
let (h, c) = scan_fn(step, init = [zeros([B, 2]), ones([B, 2])], xs = [x], args = [w], axis = 1);
output h = h;
output c = c;",
    )
    .expect("spec loads");
    let p = kernel::lower(&g).expect("lowers");
    insta::assert_snapshot!("kernels_scan_fn", kernel::print::print_program(&p));
}
