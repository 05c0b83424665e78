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

/// A loop tagged `vector` carries `llvm.loop.vectorize.enable` and comes out of the O3
/// pipeline vectorised (16 f32 lanes on x86-64-v4); a reduction loop stays scalar (its f64
/// order is the interpreter's) and an `unroll` loop is unrolled away.
#[test]
fn scheduled_loops_are_vectorised_and_unrolled_by_llvm() {
    let g = frontend::load_str(
        "t.seq",
        "dim B, T;\ninput x: f32[B, T, 37];\ninput c: f32[B, T, 4];\n\
         output y = exp(x) + 1.0;\noutput s = sum(c * c, axis = 2);",
    )
    .expect("spec loads");
    let p = kernel::lower(&g).expect("lowers");
    let t = codegen::cpu::cpu_target("x86-64-v4").expect("a known level");
    let raw = codegen::cpu::llvm_ir_for(&p, false, &t).expect("llvm");
    assert!(raw.contains("!{!\"llvm.loop.vectorize.enable\", i1 true}"));
    assert!(raw.contains("!{!\"llvm.loop.unroll.full\"}"));
    let opt = codegen::cpu::llvm_ir_for(&p, true, &t).expect("llvm");
    let body = |name: &str| {
        let start = opt
            .find(&format!("@{name}("))
            .unwrap_or_else(|| panic!("no {name}"));
        let end = opt[start..].find("\n}\n").expect("function end");
        opt[start..start + end].to_string()
    };
    let (y, s) = (body(&p.kernels[0].name), body(&p.kernels[1].name));
    assert!(
        y.contains("<16 x float>") || y.contains("<16 x double>"),
        "{y}"
    );
    assert!(
        !s.contains("i4.head"),
        "the 4-step loop is still a loop:\n{s}"
    );
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

/// The PTX of a small program (`seqc dump --stage ptx`): each entry reads the global thread
/// index and returns unless g < extent; the exp and the row sums run one thread per row
/// (exp inline, sums in f64 rounded at the store), the cumulative sum over B one thread
/// (its outer loop has extent 1) looping over B.
#[test]
fn ptx_snapshot_of_small_kernels() {
    let g = frontend::load_str(
        "t.seq",
        "dim B, T;\ninput x: f32[B, T];\noutput y = sum(exp(x), axis = 1);\n\
         output c = cumsum(sum(x, axis = 1), axis = 0);",
    )
    .expect("spec loads");
    let p = kernel::lower(&g).expect("lowers");
    let ptx = codegen::ptx::ptx(&p, "sm_90").expect("ptx");
    insta::assert_snapshot!("ptx_sum_exp_cumsum", ptx);
}
