//! The kernel IR of a few specs (`seqc dump --stage kernels`) and the LLVM IR of a small one
//! (`seqc dump --stage llvm`, before optimisation), against reviewed snapshots.

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
    let ir = codegen::cpu::llvm_ir(&p, false).expect("llvm");
    insta::assert_snapshot!("llvm_sum_exp", ir);
}
