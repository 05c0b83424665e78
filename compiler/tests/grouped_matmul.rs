//! `grouped_matmul` compiled for this CPU (kernel/grouped.rs: rows sorted by group, block
//! products per expert): a hand-written graph in the IR text form agrees with a naive loop
//! over the definition and with the interpreter — with rows of every group interleaved, an
//! expert no row selects, and more rows than one block (so an expert's rows span blocks) —
//! and a group outside 0..E is an error naming the kernel, not a crash.

use seqc::codegen::artifact::write_artifact;
use seqc::interp;
use seqc::ir::parse::parse_graph;
use seqc_runtime::{DimValues, HostTensor, Model, TensorData, Weights};
use std::collections::BTreeMap;

/// y = grouped_matmul(x: [N, 3], w: [E = 4, 2, 3], group: [N]).
const GRAPH: &str = r#"graph(N) {
  %0 = param "w" : f32[4, 2, 3]
  %1 = input "x" : f32[N, 3]
  %2 = input "group" : i32[N]
  %3 = grouped_matmul(%1, %0, %2) : f32[N, 2]
  output "y" = %3
}
"#;

fn w() -> Vec<f32> {
    (0..24).map(|v| ((v * 5) % 7) as f32 - 3.0).collect()
}

fn tensors(groups: Vec<i32>) -> BTreeMap<String, HostTensor> {
    let n = groups.len();
    let mut m = BTreeMap::new();
    let x = (0..3 * n).map(|v| v as f32 * 0.25 - 1.0).collect();
    m.insert("x".to_string(), HostTensor::f32(vec![n, 3], x));
    m.insert(
        "group".to_string(),
        HostTensor::new("group", vec![n], TensorData::I32(groups)).expect("shape"),
    );
    m
}

fn model(dir: &std::path::Path) -> Model {
    let g = parse_graph(GRAPH).expect("parses");
    write_artifact(&g, "hash", dir, true).expect("compiles");
    let mut ws = BTreeMap::new();
    ws.insert("w".to_string(), HostTensor::f32(vec![4, 2, 3], w()));
    Model::load(dir, Weights::from_tensors(&ws).expect("weights")).expect("loads")
}

#[test]
fn compiled_kernel_matches_a_naive_loop_and_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = model(dir.path());
    // Short: every group; long: group 1 selected by no row, 450 rows (three blocks of 192
    // sorted rows, group 0's rows spanning two of them), groups interleaved.
    let long: Vec<i32> = (0..450).map(|n| [0, 2, 3, 0, 0][n % 5]).collect();
    for groups in [vec![3, 0, 0, 2, 1, 3, 2], vec![1], long] {
        check(&m, groups);
    }
}

fn check(m: &Model, groups: Vec<i32>) {
    let ins = tensors(groups.clone());
    let got = m.run(&ins, &DimValues::new()).expect("runs");
    let y = got["y"].to_f64_vec();
    let x = ins["x"].to_f64_vec();
    let wv = w();
    for (n, &e) in groups.iter().enumerate() {
        for o in 0..2 {
            let want: f64 = (0..3)
                .map(|i| x[n * 3 + i] * f64::from(wv[(e as usize * 2 + o) * 3 + i]))
                .sum();
            let tol = 1e-5 * want.abs().max(1.0);
            assert!((y[n * 2 + o] - want).abs() < tol, "row {n} col {o}");
        }
    }
    let g = parse_graph(GRAPH).expect("parses");
    let mut all = ins.clone();
    all.insert("w".to_string(), HostTensor::f32(vec![4, 2, 3], wv));
    let dims = [("N".to_string(), groups.len() as i64)].into();
    let want = interp::run(&g, &dims, &all).expect("interprets");
    // The block products accumulate in f32 (fused multiply-adds), the interpreter in f64.
    for (a, b) in want["y"].to_f64_vec().iter().zip(&y) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn a_group_out_of_range_is_an_error_naming_the_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = model(dir.path());
    for bad in [4, -1] {
        let e = m
            .run(&tensors(vec![0, bad, 1]), &DimValues::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`grouped_matmul`") && e.contains("out of range"),
            "{e}"
        );
    }
}
