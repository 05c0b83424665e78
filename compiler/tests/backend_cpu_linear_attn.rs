//! The CPU backend's blocked `linear_attn` (`kernel/recur.rs`, `codegen/cpu/recur.rs`)
//! against the interpreter across the shapes its code paths split on: V below, at and above
//! a vector and a block of 64 columns (V = 1 runs with the rows in the lanes), K ≠ V with and
//! without a partial vector of rows, a symbolic V, operands computed inline (materialised
//! first), no decay, a decay per step and per channel, strict or not, T = 1, 2, 37 and a
//! prime above 256; and a node inside a `scan_fn` body, which keeps the scalar recurrence.

use seqc::ir::{DimBindings, Graph, parse::parse_graph};
use seqc::{bind, interp};
use seqc_runtime::{HostTensor, Model, Weights};
use std::collections::BTreeMap;

/// The largest difference between the CPU backend and the interpreter over the outputs of
/// `ir`, relative to each output's largest magnitude, at B = 2, each T of `ts` and the
/// extra dims `dims`.
fn max_rel_err(ir: &str, ts: &[i64], dims: &[(&str, i64)]) -> f64 {
    let g: Graph = parse_graph(ir).unwrap_or_else(|e| panic!("{e:?}\n{ir}"));
    let dir = tempfile::tempdir().expect("tempdir");
    seqc::codegen::artifact::write_artifact(&g, "test", dir.path(), false).expect("compiles");
    let model = Model::load(
        dir.path(),
        Weights::from_tensors(&BTreeMap::new()).expect("w"),
    )
    .expect("loads");
    let mut worst = 0.0f64;
    for &t in ts {
        let mut given: DimBindings = [("B".to_string(), 2), ("T".to_string(), t)]
            .into_iter()
            .collect();
        given.extend(dims.iter().map(|(n, v)| (n.to_string(), *v)));
        let mut tensors = BTreeMap::new();
        let bound = bind::bind_dims(&g, &given, &tensors).expect("binds");
        bind::fill_missing(&g, &bound, &mut tensors, 7).expect("fills");
        let want = interp::run(&g, &bound, &tensors).expect("interprets");
        let inputs: BTreeMap<String, HostTensor> = g
            .inputs()
            .map(|(n, _)| (n.to_string(), tensors[n].clone()))
            .collect();
        let got = model.run(&inputs, &bound).expect("runs");
        for (name, w) in &want {
            assert_eq!(got[name].shape, w.shape, "`{name}` at T = {t}");
            let (a, b) = (got[name].to_f64_vec(), w.to_f64_vec());
            // (strict at T = 1 is all zeros)
            let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-6);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(x.is_finite() && y.is_finite(), "`{name}`[{i}]: {x} vs {y}");
                worst = worst.max((x - y).abs() / scale);
            }
        }
    }
    worst
}

/// Six `linear_attn` nodes over q, k: [B, 2, T, K] and v: [B, 2, T, V] (`vdim` is V's
/// text: a number or a dim name): no decay, a decay per step and one per channel
/// (g = −softplus(x)), each strict and not.
fn six_nodes(dtype: &str, kd: &str, vdim: &str, dims: &str) -> String {
    let mut s = format!(
        "graph(B, T{dims}) {{
  %0 = input \"q\" : {dtype}[B, 2, T, {kd}]
  %1 = input \"k\" : {dtype}[B, 2, T, {kd}]
  %2 = input \"v\" : {dtype}[B, 2, T, {vdim}]
  %3 = input \"x\" : {dtype}[B, 2, T]
  %4 = input \"y\" : {dtype}[B, 2, T, {kd}]
  %5 = softplus(%3) : {dtype}[B, 2, T]
  %6 = neg(%5) : {dtype}[B, 2, T]
  %7 = softplus(%4) : {dtype}[B, 2, T, {kd}]
  %8 = neg(%7) : {dtype}[B, 2, T, {kd}]
"
    );
    let mut n = 9;
    for strict in [false, true] {
        for g in ["", ", %6", ", %8"] {
            s += &format!(
                "  %{n} = linear_attn(%0, %1, %2{g}) chunk=16 strict={strict} : {dtype}[B, 2, T, {vdim}]\n  output \"o{n}\" = %{n}\n"
            );
            n += 1;
        }
    }
    s + "}\n"
}

#[test]
fn blocked_linear_attn_matches_the_interpreter_across_widths_and_rows() {
    for (kd, vd) in [
        (3, 1),
        (17, 1),
        (64, 1),
        (5, 8),
        (3, 16),
        (17, 21),
        (64, 64),
        (7, 70),
        (33, 150),
    ] {
        let ir = six_nodes("f32", &kd.to_string(), &vd.to_string(), "");
        let e = max_rel_err(&ir, &[1, 37], &[]);
        assert!(e < 1e-4, "K = {kd}, V = {vd}: {e:.3e}");
    }
}

#[test]
fn blocked_linear_attn_matches_the_interpreter_at_a_large_prime_t_and_a_symbolic_v() {
    let ir = six_nodes("f32", "16", "E", ", E");
    for e_dim in [1, 19, 64, 65] {
        let e = max_rel_err(&ir, &[2, 263], &[("E", e_dim)]);
        assert!(e < 1e-4, "V = E = {e_dim}: {e:.3e}");
    }
}

/// The optimizer's form of the naive causal linear attention: q and k computed inline
/// (φ = elu + 1), and the normaliser's v a broadcast constant, both written into scratch
/// buffers before the recurrence.
#[test]
fn blocked_linear_attn_with_inline_operands_matches_the_interpreter() {
    let ir = "graph(B, T) {
  %0 = input \"q\" : f32[B, 2, T, 9]
  %1 = input \"k\" : f32[B, 2, T, 9]
  %2 = input \"v\" : f32[B, 2, T, 12]
  %3 = elu(%0) : f32[B, 2, T, 9]
  %4 = const 1.0 dtype=f32 : f32[]
  %5 = add(%3, %4) : f32[B, 2, T, 9]
  %6 = elu(%1) : f32[B, 2, T, 9]
  %7 = add(%6, %4) : f32[B, 2, T, 9]
  %8 = broadcast(%4) shape=[B, 2, T, 1] : f32[B, 2, T, 1]
  %9 = linear_attn(%5, %7, %2) chunk=32 strict=false : f32[B, 2, T, 12]
  %10 = linear_attn(%5, %7, %8) chunk=32 strict=false : f32[B, 2, T, 1]
  %11 = div(%9, %10) : f32[B, 2, T, 12]
  output \"y\" = %11
  output \"n\" = %10
}
";
    let e = max_rel_err(ir, &[1, 37, 100], &[]);
    assert!(e < 1e-4, "{e:.3e}");
}

/// Inside a `scan_fn` body (where buffers are remapped access by access) the scalar
/// recurrence of `linear_attn.rs` runs instead; per step it attends over the captured
/// sequences with q scaled by the state.
#[test]
fn a_linear_attn_in_a_scan_fn_body_matches_the_interpreter() {
    let ir = "graph(B, T, S) {
  %0 = input \"x\" : f32[B, T, 3]
  %1 = input \"q\" : f32[B, S, 4]
  %2 = input \"k\" : f32[B, S, 4]
  %3 = input \"v\" : f32[B, S, 3]
  %4 = input \"g\" : f32[B, S, 4]
  %5 = const 0.0 dtype=f32 : f32[]
  %6 = broadcast(%5) shape=[B, 3] : f32[B, 3]
  %7 = scan_fn(%6, %0, %1, %2, %3, %4) axis=1 n_state=1 n_xs=1 : (f32[B, T, 3]) {
    graph(B, T, S) {
      %0 = input \"in0\" : f32[B, 3]
      %1 = input \"in1\" : f32[B, 3]
      %2 = input \"in2\" : f32[B, S, 4]
      %3 = input \"in3\" : f32[B, S, 4]
      %4 = input \"in4\" : f32[B, S, 3]
      %5 = input \"in5\" : f32[B, S, 4]
      %6 = softplus(%5) : f32[B, S, 4]
      %7 = neg(%6) : f32[B, S, 4]
      %8 = linear_attn(%2, %3, %4, %7) chunk=4 strict=true : f32[B, S, 3]
      %9 = sum(%8) axes=[1] keepdim=false : f32[B, 3]
      %10 = const 0.5 dtype=f32 : f32[]
      %11 = mul(%0, %10) : f32[B, 3]
      %12 = add(%11, %1) : f32[B, 3]
      %13 = tanh(%9) : f32[B, 3]
      %14 = add(%12, %13) : f32[B, 3]
      output \"s0\" = %14
    }
  }
  %8 = extract(%7) index=0 : f32[B, T, 3]
  output \"h\" = %8
}
";
    for s in [1, 6, 19] {
        let e = max_rel_err(ir, &[1, 5], &[("S", s)]);
        assert!(e < 1e-4, "S = {s}: {e:.3e}");
    }
}
