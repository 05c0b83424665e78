//! The CPU backend's blocked `linear_attn` (`kernel/recur.rs`, `codegen/cpu/recur.rs`)
//! against the interpreter across the shapes its code paths split on: V below, at and above
//! a vector and a block of 64 columns (V = 1 runs with the rows in the lanes), K ≠ V with and
//! without a partial vector of rows, a symbolic V, operands computed inline (materialised
//! first), no decay, a decay per step and per channel, strict or not, T = 1, 2, 37 and a
//! prime above 256; and a node inside a `scan_fn` body, which keeps the scalar recurrence.
//! The normalised form `div(linear_attn(q, k, v), linear_attn(q, k, ones))` as one
//! recurrence carrying the normaliser (`Recur::norm`): across T, V, strict and decay, with a
//! zero normaliser (NaN and ±inf as the interpreter's f32 division), and the divisions that
//! must not fuse.

use seqc::ir::{DimBindings, Graph, parse::parse_graph};
use seqc::{bind, interp};
use seqc_runtime::{HostTensor, Model, Weights};
use std::collections::BTreeMap;

/// The largest difference between the CPU backend and the interpreter over the outputs of
/// `ir`, relative to each output's largest magnitude, at B = 2, each T of `ts` and the
/// extra dims `dims`.
fn max_rel_err(ir: &str, ts: &[i64], dims: &[(&str, i64)]) -> f64 {
    let g: Graph = parse_graph(ir).unwrap_or_else(|e| panic!("{e:?}\n{ir}"));
    compare(&g, ts, dims, &BTreeMap::new(), false).0
}

/// `max_rel_err` (and the count of non-finite outputs) over graph `g` with the inputs of `given` fixed (the rest random); with
/// `nonfinite`, a NaN or infinity must be the interpreter's (the same class and sign) and
/// does not count.
fn compare(
    g: &Graph,
    ts: &[i64],
    dims: &[(&str, i64)],
    given_tensors: &BTreeMap<String, HostTensor>,
    nonfinite: bool,
) -> (f64, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    seqc::codegen::artifact::write_artifact(g, "test", dir.path(), false).expect("compiles");
    let model = Model::load(
        dir.path(),
        Weights::from_tensors(&BTreeMap::new()).expect("w"),
    )
    .expect("loads");
    let (mut worst, mut special) = (0.0f64, 0);
    for &t in ts {
        let mut given: DimBindings = [("B".to_string(), 2), ("T".to_string(), t)]
            .into_iter()
            .collect();
        given.extend(dims.iter().map(|(n, v)| (n.to_string(), *v)));
        let mut tensors = given_tensors.clone();
        let bound = bind::bind_dims(g, &given, &tensors).expect("binds");
        bind::fill_missing(g, &bound, &mut tensors, 7).expect("fills");
        let want = interp::run(g, &bound, &tensors).expect("interprets");
        let inputs: BTreeMap<String, HostTensor> = g
            .inputs()
            .map(|(n, _)| (n.to_string(), tensors[n].clone()))
            .collect();
        let got = model.run(&inputs, &bound).expect("runs");
        for (name, w) in &want {
            assert_eq!(got[name].shape, w.shape, "`{name}` at T = {t}");
            let (a, b) = (got[name].to_f64_vec(), w.to_f64_vec());
            let scale = b
                .iter()
                .filter(|x| x.is_finite())
                .fold(0.0f64, |m, x| m.max(x.abs()))
                .max(1e-6);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                if nonfinite && !(x.is_finite() && y.is_finite()) {
                    let same = (x.is_nan() && y.is_nan()) || x == y;
                    assert!(same, "`{name}`[{i}] at T = {t}: {x} vs {y}");
                    special += 1;
                    continue;
                }
                assert!(x.is_finite() && y.is_finite(), "`{name}`[{i}]: {x} vs {y}");
                worst = worst.max((x - y).abs() / scale);
            }
        }
    }
    (worst, special)
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

/// How many recurrences the kernels of `g` run, and how many of them are normalised.
fn recurrences(g: &Graph) -> (usize, usize) {
    let p = seqc::kernel::lower(g).expect("lowers");
    let text = seqc::kernel::print::print_program(&p);
    let lines = text.lines().filter(|l| l.trim_start().starts_with("recur"));
    lines.fold((0, 0), |(n, m), l| {
        (n + 1, m + l.contains(" / norm ") as usize)
    })
}

/// The shared head of the normalised graphs: φ(q), φ(k): [B, 2, T, 16] (φ = elu + 1,
/// %11 and %13), v: [B, 2, T, V] (%2), decays per step (%6) and per channel (%8), and the
/// ones [B, 2, T, 1] (%14).
fn normalised_head(vd: i64) -> String {
    format!(
        "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, 16]
  %1 = input \"k\" : f32[B, 2, T, 16]
  %2 = input \"v\" : f32[B, 2, T, {vd}]
  %3 = input \"x\" : f32[B, 2, T]
  %4 = input \"y\" : f32[B, 2, T, 16]
  %5 = softplus(%3) : f32[B, 2, T]
  %6 = neg(%5) : f32[B, 2, T]
  %7 = softplus(%4) : f32[B, 2, T, 16]
  %8 = neg(%7) : f32[B, 2, T, 16]
  %9 = elu(%0) : f32[B, 2, T, 16]
  %10 = const 1.0 dtype=f32 : f32[]
  %11 = add(%9, %10) : f32[B, 2, T, 16]
  %12 = elu(%1) : f32[B, 2, T, 16]
  %13 = add(%12, %10) : f32[B, 2, T, 16]
  %14 = broadcast(%10) shape=[B, 2, T, 1] : f32[B, 2, T, 1]
"
    )
}

/// Six normalised linear attentions `div(linear_attn(φq, φk, v), linear_attn(φq, φk,
/// ones))`: no decay, one per step and one per channel, each strict and not.
fn six_normalised(vd: i64) -> String {
    let mut s = normalised_head(vd);
    let mut n = 15;
    for strict in [false, true] {
        for g in ["", ", %6", ", %8"] {
            s += &format!(
                "  %{n} = linear_attn(%11, %13, %2{g}) chunk=16 strict={strict} : f32[B, 2, T, {vd}]
  %{} = linear_attn(%11, %13, %14{g}) chunk=16 strict={strict} : f32[B, 2, T, 1]
  %{} = div(%{n}, %{}) : f32[B, 2, T, {vd}]
  output \"y{n}\" = %{}
",
                n + 1,
                n + 2,
                n + 1,
                n + 2
            );
            n += 3;
        }
    }
    s + "}\n"
}

/// Each normalised division is one recurrence carrying the normaliser, and matches the
/// interpreter (strict at t = 0 divides 0 by 0: NaN in both).
#[test]
fn normalised_linear_attn_is_one_recurrence_and_matches_the_interpreter() {
    for vd in [1, 16, 64, 70, 150] {
        let g = parse_graph(&six_normalised(vd)).expect("parses");
        assert_eq!(recurrences(&g), (6, 6), "V = {vd}");
        let (e, _) = compare(&g, &[1, 2, 37, 100, 263], &[], &BTreeMap::new(), true);
        assert!(e < 1e-4, "V = {vd}: {e:.3e}");
    }
}

/// A normaliser that is exactly 0 (q ⟂ n, or n = 0): 0/0 = NaN and ±x/0 = ±inf, as the
/// interpreter's f32 division. K = 2, V = 3, T = 4 (both batch indices alike); by hand:
/// not strict, t0: n = (1, −1), q·n = 0, o = 0 (NaN ×3); t1: n = 0, o = (−1, 0, 1)
/// (−inf, NaN, inf); t2: n = (1, 1), den 3, o = (4, 3, 2); t3: q = 0 (NaN ×3).
/// Strict, t0: n = 0 (NaN ×3); t1: den 1, o = (1, 2, 3); t2: n = 0, o = (1, 0, −1)
/// (inf, NaN, −inf); t3: q = 0 (NaN ×3). 18 non-finite values per batch index.
#[test]
fn a_zero_normaliser_gives_the_interpreters_nan_and_infinities() {
    let mut ir = String::from(
        "graph(B, T) {
  %0 = input \"q\" : f32[B, T, 2]
  %1 = input \"k\" : f32[B, T, 2]
  %2 = input \"v\" : f32[B, T, 3]
  %3 = const 1.0 dtype=f32 : f32[]
  %4 = broadcast(%3) shape=[B, T, 1] : f32[B, T, 1]
",
    );
    for (n, strict) in [(5, false), (8, true)] {
        ir += &format!(
            "  %{n} = linear_attn(%0, %1, %2) chunk=4 strict={strict} : f32[B, T, 3]
  %{} = linear_attn(%0, %1, %4) chunk=4 strict={strict} : f32[B, T, 1]
  %{} = div(%{n}, %{}) : f32[B, T, 3]
  output \"y{n}\" = %{}
",
            n + 1,
            n + 2,
            n + 1,
            n + 2
        );
    }
    ir += "}\n";
    let g = parse_graph(&ir).expect("parses");
    assert_eq!(recurrences(&g), (2, 2));
    let two = |x: &[f32]| [x, x].concat();
    let tensors: BTreeMap<String, HostTensor> = [
        ("q", vec![2, 4, 2], two(&[1., 1., 1., 0., 1., 2., 0., 0.])),
        (
            "k",
            vec![2, 4, 2],
            two(&[1., -1., -1., 1., 1., 1., 0.5, 0.25]),
        ),
        (
            "v",
            vec![2, 4, 3],
            two(&[1., 2., 3., 2., 2., 2., 1., 1., 1., 5., 6., 7.]),
        ),
    ]
    .into_iter()
    .map(|(n, s, d)| (n.to_string(), HostTensor::f32(s, d)))
    .collect();
    let (e, special) = compare(&g, &[4], &[], &tensors, true);
    assert_eq!(special, 36);
    assert!(e < 1e-6, "{e:.3e}");
}

/// Divisions that must not fuse: a normaliser with another q, one whose width-1 v is not
/// ones, and one whose ones are 2; each keeps its two recurrences and matches.
#[test]
fn other_divisions_of_linear_attns_do_not_fuse_and_match_the_interpreter() {
    let ir = normalised_head(16)
        + "  %15 = input \"w\" : f32[B, 2, T, 1]
  %16 = exp(%15) : f32[B, 2, T, 1]
  %17 = const 2.0 dtype=f32 : f32[]
  %18 = broadcast(%17) shape=[B, 2, T, 1] : f32[B, 2, T, 1]
  %19 = linear_attn(%11, %13, %2) chunk=16 strict=false : f32[B, 2, T, 16]
  %20 = linear_attn(%13, %13, %14) chunk=16 strict=false : f32[B, 2, T, 1]
  %21 = div(%19, %20) : f32[B, 2, T, 16]
  %22 = linear_attn(%11, %13, %2) chunk=16 strict=false : f32[B, 2, T, 16]
  %23 = linear_attn(%11, %13, %16) chunk=16 strict=false : f32[B, 2, T, 1]
  %24 = div(%22, %23) : f32[B, 2, T, 16]
  %25 = linear_attn(%11, %13, %2) chunk=16 strict=false : f32[B, 2, T, 16]
  %26 = linear_attn(%11, %13, %18) chunk=16 strict=false : f32[B, 2, T, 1]
  %27 = div(%25, %26) : f32[B, 2, T, 16]
  output \"a\" = %21
  output \"b\" = %24
  output \"c\" = %27
}
";
    let g = parse_graph(&ir).expect("parses");
    assert_eq!(recurrences(&g), (6, 0));
    let (e, _) = compare(&g, &[1, 37], &[], &BTreeMap::new(), false);
    assert!(e < 1e-4, "{e:.3e}");
}

/// q read through a transpose (not contiguous along K): the normaliser runs per row on
/// broadcasts instead of with the rows in the lanes. q > 0 given, so that the normaliser
/// stays away from 0; V = 70 (two tasks per batch index), strict and not, with a decay
/// per channel.
#[test]
fn a_normaliser_with_a_strided_q_matches_the_interpreter() {
    let mut ir = normalised_head(70)
        + "  %15 = input \"qt\" : f32[B, 2, 16, T]
  %16 = transpose(%15) perm=[0, 1, 3, 2] : f32[B, 2, T, 16]
";
    for (n, strict) in [(17, false), (20, true)] {
        ir += &format!(
            "  %{n} = linear_attn(%16, %13, %2, %8) chunk=16 strict={strict} : f32[B, 2, T, 70]
  %{} = linear_attn(%16, %13, %14, %8) chunk=16 strict={strict} : f32[B, 2, T, 1]
  %{} = div(%{n}, %{}) : f32[B, 2, T, 70]
  output \"y{n}\" = %{}
",
            n + 1,
            n + 2,
            n + 1,
            n + 2
        );
    }
    ir += "}\n";
    let g = parse_graph(&ir).expect("parses");
    assert_eq!(recurrences(&g), (2, 2));
    for t in [1usize, 37, 100] {
        let n = 2 * 2 * 16 * t;
        let qt: Vec<f32> = (0..n)
            .map(|i| 0.1 + (i * 37 % 101) as f32 / 101.0)
            .collect();
        let given = [("qt".to_string(), HostTensor::f32(vec![2, 2, 16, t], qt))];
        let (e, _) = compare(&g, &[t as i64], &[], &given.into_iter().collect(), true);
        assert!(e < 1e-4, "T = {t}: {e:.3e}");
    }
}
