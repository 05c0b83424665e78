//! The CPU backend's lowering of the optimizer's operators (`fused`, `linear_attn`,
//! `attention`, `attention_lse`) against the interpreter on hand-written IR where T is not a multiple of the
//! chunk or tiles (T = 37, chunk 16, tiles 4 × 3), with decays, strict causality, batch
//! broadcasting and a row with no visible key (NaN in both; its lse is −∞); and of
//! `scan_fn` on specs covering several states, captures, bodies with an einsum and a
//! reduction, scan axes 0, 1 and last, a reversed sequence and bodies returning an input or
//! one value twice, at T = 1, 2, 13 (prime) and 37; and of a `scan` absorbed by the `einsum`
//! that contracts it (Mamba's selective scan, `kernel/scan_einsum.rs`); and loops the schedule
//! pass vectorises or unrolls, at extents that are not a multiple of the vector width.

use seqc::ir::{DimBindings, Graph, parse::parse_graph};
use seqc::{bind, interp};
use seqc_runtime::{HostTensor, Model, Weights};
use std::collections::BTreeMap;

/// Runs `ir` on the CPU backend and the interpreter at B = 2, T = 37 and returns the largest
/// relative difference over the outputs (NaNs must coincide).
fn max_rel_err(ir: &str) -> f64 {
    max_rel_err_t(ir, 37)
}

/// `max_rel_err` at B = 2 and the given T.
fn max_rel_err_t(ir: &str, t: i64) -> f64 {
    let g = parse_graph(ir).unwrap_or_else(|e| panic!("{e:?}\n{ir}"));
    max_rel_err_at(&g, &[t])
}

/// The largest relative difference between the CPU backend and the interpreter over the
/// outputs of `g`, at B = 2 and each T of `ts` (one compiled artifact for all).
fn max_rel_err_at(g: &Graph, ts: &[i64]) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    seqc::codegen::artifact::write_artifact(g, "test", dir.path(), false).expect("compiles");
    let model = Model::load(
        dir.path(),
        Weights::from_tensors(&BTreeMap::new()).expect("w"),
    )
    .expect("loads");
    let mut worst = 0.0f64;
    for &t in ts {
        let given: DimBindings = [("B".to_string(), 2), ("T".to_string(), t)]
            .into_iter()
            .collect();
        let mut tensors = BTreeMap::new();
        let bound = bind::bind_dims(g, &given, &tensors).expect("binds");
        bind::fill_missing(g, &bound, &mut tensors, 5).expect("fills");
        let want = interp::run(g, &bound, &tensors).expect("interprets");
        let inputs: BTreeMap<String, HostTensor> = g
            .inputs()
            .map(|(n, _)| (n.to_string(), tensors[n].clone()))
            .collect();
        let got = model.run(&inputs, &bound).expect("runs");
        for (name, w) in &want {
            let (a, b) = (got[name].to_f64_vec(), w.to_f64_vec());
            assert_eq!(got[name].shape, w.shape, "`{name}` at T = {t}");
            let scale = b
                .iter()
                .filter(|x| x.is_finite())
                .fold(0.0f64, |m, x| m.max(x.abs()));
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                if !x.is_finite() || !y.is_finite() {
                    assert!(
                        x.is_nan() && y.is_nan() || x == y,
                        "`{name}`[{i}] at T = {t}: {x} vs {y}"
                    );
                    continue;
                }
                worst = worst.max((x - y).abs() / scale.max(1e-6));
            }
        }
    }
    worst
}

/// q, k, v: [B, 2, T, 3|3|4] and a log-decay g = −softplus(x), per step or per channel.
fn linear_attn_ir(strict: bool, per_channel: bool) -> String {
    linear_attn_ir_scaled(strict, per_channel, -1.0)
}

/// As `linear_attn_ir` with g = scale · softplus(x): a scale > 0 makes it a growth.
fn linear_attn_ir_scaled(strict: bool, per_channel: bool, scale: f64) -> String {
    let gs = if per_channel {
        "[B, 2, T, 3]"
    } else {
        "[B, 2, T]"
    };
    format!(
        "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, 3]
  %1 = input \"k\" : f32[B, 2, T, 3]
  %2 = input \"v\" : f32[B, 2, T, 4]
  %3 = input \"x\" : f32{gs}
  %4 = softplus(%3) : f32{gs}
  %5 = const {scale:?} dtype=f32 : f32[]
  %6 = mul(%4, %5) : f32{gs}
  %7 = linear_attn(%0, %1, %2, %6) chunk=16 strict={strict} : f32[B, 2, T, 4]
  %8 = linear_attn(%0, %1, %2) chunk=16 strict={strict} : f32[B, 2, T, 4]
  output \"y\" = %7
  output \"z\" = %8
}}
"
    )
}

#[test]
fn linear_attn_matches_the_interpreter_across_partial_chunks() {
    for strict in [false, true] {
        for per_channel in [false, true] {
            let e = max_rel_err(&linear_attn_ir(strict, per_channel));
            assert!(
                e < 1e-4,
                "strict={strict} per_channel={per_channel}: {e:.3e}"
            );
        }
    }
}

/// The recurrent lowering at the edges of T: one step, and a prime T > 256 (no chunk or
/// vector width divides it).
#[test]
fn linear_attn_matches_the_interpreter_at_t_1_and_a_large_prime_t() {
    for t in [1, 263] {
        for strict in [false, true] {
            for per_channel in [false, true] {
                let e = max_rel_err_t(&linear_attn_ir(strict, per_channel), t);
                assert!(
                    e < 1e-4,
                    "T={t} strict={strict} per_channel={per_channel}: {e:.3e}"
                );
            }
        }
    }
}

/// Per-channel decays with |g| up to thousands (e^g underflows to 0 in f32, often in f64
/// too), and growth (g > 0, the state grows by up to e^{0.2·T·3}) at a moderate T.
#[test]
fn linear_attn_matches_the_interpreter_with_underflowing_decays_and_growth() {
    for (scale, t) in [(-1000.0, 37), (-40.0, 37), (0.2, 29)] {
        for strict in [false, true] {
            for per_channel in [false, true] {
                let ir = linear_attn_ir_scaled(strict, per_channel, scale);
                let e = max_rel_err_t(&ir, t);
                assert!(
                    e < 1e-4,
                    "g = {scale}·softplus(x), T={t} strict={strict} per_channel={per_channel}: \
                     {e:.3e}"
                );
            }
        }
    }
}

#[test]
fn attention_matches_the_interpreter_with_small_tiles_and_broadcast_batch() {
    // k and v are shared by both heads; `lt(s, t)` leaves row 0 without a key (NaN);
    // the table mask reads the head index.
    let masks = [
        "le(s, t)",
        "lt(s, t)",
        "and(le(s, t), eq(rem(sub(t, s), table(b1, [1, 2])), 0))",
        "true",
        // Tiles decided by the mask's bounds (`kernel/mask_tile.rs`) through not, or, ne,
        // eq, ge, maximum and minimum, and one whose bound leaves i32 (the mask wraps).
        "or(not(gt(s, t)), eq(s, 0))",
        "and(ne(s, 3), ge(minimum(t, 300), maximum(s, 10)))",
        "le(s, sub(t, add(2147483600, t)))",
    ];
    for mask in masks {
        let ir = format!(
            "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, 3]
  %1 = input \"k\" : f32[B, 1, T, 3]
  %2 = input \"v\" : f32[B, 1, T, 5]
  %3 = attention(%0, %1, %2) mask=\"{mask}\" scale=0.5 tile_q=4 tile_k=3 : f32[B, 2, T, 5]
  %4 = attention_lse(%0, %1, %2) mask=\"{mask}\" scale=0.5 tile_q=4 tile_k=3 : (f32[B, 2, T, 5], f32[B, 2, T, 1])
  %5 = extract(%4) index=0 : f32[B, 2, T, 5]
  %6 = extract(%4) index=1 : f32[B, 2, T, 1]
  output \"y\" = %3
  output \"y_lse_out\" = %5
  output \"lse\" = %6
}}
"
        );
        let e = max_rel_err(&ir);
        assert!(e < 1e-4, "mask {mask}: {e:.3e}");
    }
}

/// A mask that reads operands (`operand(J, [...])`): a bool block table per head that ends
/// before T (reads past it are 0, so rows t ≥ 32 see only the scalar's key) and an i32
/// scalar, as BigBird's fused attention reads its random-block table and block count.
#[test]
fn attention_reading_operands_matches_the_interpreter() {
    let mask = "or(ne(operand(3, [b1, div(t, 4), div(s, 4)]), 0), eq(s, rem(operand(4, []), 5)))";
    let ir = format!(
        "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, 3]
  %1 = input \"k\" : f32[B, 1, T, 3]
  %2 = input \"v\" : f32[B, 1, T, 5]
  %3 = input \"blocks\" : bool[2, 8, 8]
  %4 = input \"n\" : i32[]
  %5 = attention(%0, %1, %2, %3, %4) mask=\"{mask}\" scale=0.5 tile_q=4 tile_k=3 : f32[B, 2, T, 5]
  %6 = attention_lse(%0, %1, %2, %3, %4) mask=\"{mask}\" scale=0.5 tile_q=4 tile_k=3 : (f32[B, 2, T, 5], f32[B, 2, T, 1])
  %7 = extract(%6) index=1 : f32[B, 2, T, 1]
  output \"y\" = %5
  output \"lse\" = %7
}}
"
    );
    for t in [1, 13, 37] {
        let e = max_rel_err_t(&ir, t);
        assert!(e < 1e-4, "T = {t}: {e:.3e}");
    }
}

/// The tiled kernel (`kernel/flash.rs`) reading mask operands computed from inputs, as
/// Longformer's global keys and a padding mask are: per sequence and 64-key block an i32 flag
/// (filled in [0, 16): a block is visible where its flag is below 4, so most key tiles far
/// from the diagonal are hidden and skipped at run time, some are visible) or a band of 40
/// keys; the
/// strict mask leaves row 0 with no key (NaN in both). T = 450 is a multiple of neither tile,
/// T = 1 is one partial tile.
#[test]
fn tiled_attention_reading_input_operands_matches_the_interpreter() {
    let mask = "and(lt(s, t), or(lt(operand(3, [b0, div(s, 64)]), 4), le(sub(t, s), 40)))";
    let ir = format!(
        "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, 8]
  %1 = input \"k\" : f32[B, 2, T, 8]
  %2 = input \"v\" : f32[B, 2, T, 16]
  %3 = input \"global\" : i32[B, 8]
  %4 = attention(%0, %1, %2, %3) mask=\"{mask}\" scale=0.35 tile_q=64 tile_k=64 : f32[B, 2, T, 16]
  output \"y\" = %4
}}
"
    );
    let g = parse_graph(&ir).unwrap_or_else(|e| panic!("{e:?}\n{ir}"));
    let e = max_rel_err_at(&g, &[1, 2, 13, 450]);
    assert!(e < 1e-4, "{e:.3e}");
}

/// The tiled online-softmax kernel (192 × 64 tiles, `kernel/flash.rs`) over several query and
/// key tiles: T = 450 is a multiple of neither tile, the window leaves whole tiles hidden
/// (skipped), a large scale makes the running maximum jump between tiles (rescaling), the
/// strict mask leaves row 0 with no key (NaN), and T = 1 is one partial tile.
#[test]
fn tiled_attention_matches_the_interpreter_across_tiles() {
    let masks = [
        "le(s, t)",
        "lt(s, t)",
        "and(le(s, t), lt(sub(t, s), 70))",
        "and(le(s, t), eq(rem(sub(t, s), table(b1, [1, 2])), 0))",
        "true",
    ];
    for mask in masks {
        let ir = format!(
            "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, 8]
  %1 = input \"k\" : f32[B, 1, T, 8]
  %2 = input \"v\" : f32[B, 1, T, 5]
  %3 = attention(%0, %1, %2) mask=\"{mask}\" scale=3.0 tile_q=64 tile_k=64 : f32[B, 2, T, 5]
  output \"y\" = %3
}}
"
        );
        let g = parse_graph(&ir).expect("parses");
        let text = seqc::kernel::print::print_program(&seqc::kernel::lower(&g).expect("lowers"));
        assert!(
            text.contains("attn_tile b"),
            "not the tiled kernel:\n{text}"
        );
        for t in [450, 1] {
            let e = max_rel_err_t(&ir, t);
            assert!(e < 1e-4, "mask {mask}, T = {t}: {e:.3e}");
        }
    }
}

#[test]
fn tiled_attention_with_full_tiles_matches_the_interpreter_for_each_sign_of_scale() {
    // A causal mask over T = 450 gives fully visible tiles (the row pass without the mask,
    // its maximum taken on the raw scores and scaled after, which only a positive scale
    // allows) beside diagonal ones; a negative or zero scale must keep the masked pass (a
    // scale this large makes e^{x − mx} overflow when mx is not the maximum).
    for scale in ["40.0", "-40.0", "0.0"] {
        let ir = format!(
            "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, 8]
  %1 = input \"k\" : f32[B, 2, T, 8]
  %2 = input \"v\" : f32[B, 2, T, 6]
  %3 = attention(%0, %1, %2) mask=\"le(s, t)\" scale={scale} tile_q=64 tile_k=64 : f32[B, 2, T, 6]
  output \"y\" = %3
}}
"
        );
        let g = parse_graph(&ir).expect("parses");
        let text = seqc::kernel::print::print_program(&seqc::kernel::lower(&g).expect("lowers"));
        assert!(
            text.contains("attn_tile b"),
            "not the tiled kernel:\n{text}"
        );
        let e = max_rel_err_t(&ir, 450);
        assert!(e < 1e-4, "scale {scale}: {e:.3e}");
    }
}

#[test]
fn attention_tile_step_matches_the_interpreter_at_awkward_sizes() {
    // The fused tile step (`codegen/cpu/attn_tile.rs`) at depths and value widths that are
    // not multiples of the vector width, above one panel of 64 columns, at T = 1, 7 (one
    // partial strip of rows and keys) and the prime 197 (a partial query tile of 192 and a
    // partial key tile of 64); masks: causal, a window, none, and one hiding every key of
    // row 0 (a NaN row).
    // (depth, value width): value widths give 1 to 8 vectors of 16, so each narrower last
    // panel of out (1, 2 or 3 vectors) and whole panels.
    let sizes = [
        (1, 1),
        (5, 40),
        (16, 16),
        (64, 64),
        (80, 80),
        (128, 128),
        (3, 96),
        (7, 100),
        (128, 3),
    ];
    let masks = [
        "le(s, t)",
        "and(le(s, t), lt(sub(t, s), 70))",
        "true",
        "lt(s, t)",
    ];
    for (d, e) in sizes {
        for mask in masks {
            let ir = format!(
                "graph(B, T) {{
  %0 = input \"q\" : f32[B, 2, T, {d}]
  %1 = input \"k\" : f32[B, 2, T, {d}]
  %2 = input \"v\" : f32[B, 2, T, {e}]
  %3 = attention(%0, %1, %2) mask=\"{mask}\" scale=0.3 tile_q=64 tile_k=64 : f32[B, 2, T, {e}]
  output \"y\" = %3
}}
"
            );
            let g = parse_graph(&ir).expect("parses");
            let text =
                seqc::kernel::print::print_program(&seqc::kernel::lower(&g).expect("lowers"));
            assert!(text.contains("attn_tile b"), "not the tile step:\n{text}");
            let err = max_rel_err_at(&g, &[1, 7, 197]);
            assert!(err < 1e-4, "D = {d}, E = {e}, mask {mask}: {err:.3e}");
        }
    }
}

#[test]
fn fused_groups_with_a_final_reduction_match_the_interpreter() {
    let ir = "graph(B, T) {
  %0 = input \"x\" : f32[B, T, 6]
  %1 = input \"w\" : f32[6]
  %2 = fused(%0, %1) : f32[B, T] {
    graph(B, T) {
      %0 = input \"x0\" : f32[B, T, 6]
      %1 = input \"x1\" : f32[6]
      %2 = mul(%0, %1) : f32[B, T, 6]
      %3 = silu(%2) : f32[B, T, 6]
      %4 = mul(%3, %3) : f32[B, T, 6]
      %5 = sum(%4) axes=[2] keepdim=false : f32[B, T]
      output \"y\" = %5
    }
  }
  %3 = fused(%2) : f32[B, T] {
    graph(B, T) {
      %0 = input \"x0\" : f32[B, T]
      %1 = sqrt(%0) : f32[B, T]
      output \"y\" = %1
    }
  }
  output \"y\" = %3
}
";
    let e = max_rel_err(ir);
    assert!(e < 1e-4, "{e:.3e}");
}

/// Loops the schedule pass tags `vector` (37 lanes: two full 16-lane vectors and a tail) and
/// `unroll(4)` (an elementwise loop and a reduction), at T = 1, 2, 13 and 37.
#[test]
fn vector_and_unrolled_loops_match_the_interpreter() {
    let g = seqc::frontend::load_str(
        "t.seq",
        "dim B, T;
input x: f32[B, T, 37];
input w: f32[37];
input c: f32[B, T, 4];
output y = exp(x) * w + 1.0;
output u = tanh(c) * 2.0;
output s = sum(c * c, axis = 2);",
    )
    .expect("spec loads");
    let text = seqc::kernel::print::print_program(&seqc::kernel::lower(&g).expect("lowers"));
    for tag in ["vector for", "unroll(4) for"] {
        assert!(text.contains(tag), "no `{tag}` in:\n{text}");
    }
    let e = max_rel_err_at(&g, &[1, 2, 13, 37]);
    assert!(e < 1e-6, "{e:.3e}");
}

/// Loads a spec (dims B, T) and checks it at T = 1, 2, 13 and 37.
fn scan_fn_err(src: &str) -> f64 {
    let g = seqc::frontend::load_str("scan.seq", &format!("dim B, T;\n{src}"))
        .unwrap_or_else(|e| panic!("{e:?}\n{src}"));
    max_rel_err_at(&g, &[1, 2, 13, 37])
}

#[test]
fn scan_fn_with_states_captures_an_einsum_and_a_reduction_matches_the_interpreter() {
    // Two states of different ranks (h: [B, 4], n: [B]), two sequences, two captures; the
    // body contracts h with a weight and normalises by a sum.
    let e = scan_fn_err(
        "input x: f32[B, T, 4];
input y: f32[B, T];
input w: f32[4, 4];
input bias: f32[4];
input h0: f32[B, 4];
fn step(h, n, x, y, w, bias) {
    let a = tanh(einsum(\"bi,ij->bj\", h, w) + x + bias);
    let s = sum(a * a, axis = -1);
    (a / (1.0 + sqrt(unsqueeze(s + n, 1))), n * 0.5 + s * y)
}
let (h, n) = scan_fn(step, init = [h0, zeros([B])], xs = [x, y], args = [w, bias], axis = 1);
output h = h;
output n = n;",
    );
    assert!(e < 1e-4, "{e:.3e}");
}

#[test]
fn scan_fn_along_axis_0_and_the_last_axis_matches_the_interpreter() {
    // Time first: x [T, B, 3], state [B, 3] stacked to [T, B, 3]; time last: z [B, 3, T].
    let e = scan_fn_err(
        "input x: f32[T, B, 3];
input z: f32[B, 3, T];
fn step(h, x) { h * 0.9 + sin(x) }
output first = scan_fn(step, init = [zeros([B, 3])], xs = [x], axis = 0);
output last = scan_fn(step, init = [ones([B, 3])], xs = [z], axis = 2);",
    );
    assert!(e < 1e-4, "{e:.3e}");
}

#[test]
fn scan_fn_over_a_reversed_sequence_matches_the_interpreter() {
    // A backward scan (slices have no negative step): the sequence is read from t = T − 1
    // down through a `take` index map of the reversed positions.
    let e = scan_fn_err(
        "input x: f32[B, T, 3];
fn step(h, x) { maximum(h, x) - 0.1 * h }
let rev = take(x, argsort(iota([dim(x, 1)], 0), descending = true), axis = 1);
output y = scan_fn(step, init = [full([B, 3], -1.0)], xs = [rev], axis = 1);",
    );
    assert!(e < 1e-4, "{e:.3e}");
}

#[test]
fn scan_fn_bodies_returning_an_input_or_one_value_twice_match_the_interpreter() {
    // The first state returns the step input as is, the next two the same value.
    let e = scan_fn_err(
        "input x: f32[B, T, 3];
fn step(a, b, c, x) { let s = b + x * a; (x, s, s) }
let (a, b, c) = scan_fn(step, init = [ones([B, 3]), zeros([B, 3]), zeros([B, 3])], xs = [x], axis = 1);
output a = a;
output b = b;
output c = c;",
    );
    assert!(e < 1e-4, "{e:.3e}");
}

#[test]
fn a_scan_fn_nested_in_a_scan_fn_body_matches_the_interpreter() {
    // The inner scan runs along axis 1 of each step of x ([B, 4, 3] per step); the outer
    // state is the sum of the inner states.
    let e = scan_fn_err(
        "input x: f32[B, T, 4, 3];
fn inner(c, v) { c * 0.5 + v }
fn outer(h, x) { sum(scan_fn(inner, init = [h], xs = [x], axis = 1), axis = 1) * 0.25 }
output y = scan_fn(outer, init = [ones([B, 3])], xs = [x], axis = 1);",
    );
    assert!(e < 1e-4, "{e:.3e}");
}

#[test]
fn scan_fn_states_with_unit_dims_read_through_reshapes_match_the_interpreter() {
    // State a is [B, 1, 2, 3] (its stores do not unflatten, so they take the slice map's
    // division), and the body reads its own new a through a reshape (another layout).
    let e = scan_fn_err(
        "input x: f32[B, T, 6];
fn step(a, b, x) {
    let n = sin(reshape(a, [B, 6]) * 0.5 + x);
    let a2 = reshape(n, [B, 1, 2, 3]);
    (a2, b * 0.5 + reshape(a2, [B, 6]))
}
let (a, b) = scan_fn(step, init = [ones([B, 1, 2, 3]), zeros([B, 6])], xs = [x], axis = 1);
output a = a;
output b = b;",
    );
    assert!(e < 1e-4, "{e:.3e}");
}

/// Mamba's selective scan at DI channels and N states: the decay exp(Δ·(−exp(A))) and the
/// drive (Δ·u)·B broadcast to [B, T, DI, N], scanned over T and contracted with C over N.
fn selective_scan_ir(di: usize, n: usize) -> String {
    format!(
        "graph(B, T) {{
  %0 = input \"delta\" : f32[B, T, {di}]
  %1 = input \"u\" : f32[B, T, {di}]
  %2 = input \"bc\" : f32[B, T, {n2}]
  %3 = input \"a_log\" : f32[{di}, {n}]
  %4 = softplus(%0) : f32[B, T, {di}]
  %5 = exp(%3) : f32[{di}, {n}]
  %6 = neg(%5) : f32[{di}, {n}]
  %7 = reshape(%4) shape=[B, T, {di}, 1] : f32[B, T, {di}, 1]
  %8 = mul(%7, %6) : f32[B, T, {di}, {n}]
  %9 = exp(%8) : f32[B, T, {di}, {n}]
  %10 = mul(%4, %1) : f32[B, T, {di}]
  %11 = reshape(%10) shape=[B, T, {di}, 1] : f32[B, T, {di}, 1]
  %12 = slice(%2) axis=2 start=0 end={n} step=1 : f32[B, T, {n}]
  %13 = reshape(%12) shape=[B, T, 1, {n}] : f32[B, T, 1, {n}]
  %14 = mul(%11, %13) : f32[B, T, {di}, {n}]
  %15 = scan(%9, %14) axis=1 reverse=false : f32[B, T, {di}, {n}]
  %16 = slice(%2) axis=2 start={n} end={n2} step=1 : f32[B, T, {n}]
  %17 = einsum(%15, %16) spec=\"btdn,btn->btd\" : f32[B, T, {di}]
  output \"y\" = %17
}}
",
        n2 = 2 * n
    )
}

/// The buffers of `ir`'s kernel program whose rank is at least `rank`, and the operators of
/// its kernels.
fn lowered(ir: &str, rank: usize) -> (usize, Vec<String>) {
    let g = parse_graph(ir).unwrap_or_else(|e| panic!("{e:?}\n{ir}"));
    let p = seqc::kernel::lower(&g).expect("lowers");
    let big = p.buffers.iter().filter(|b| b.shape.len() >= rank).count();
    (big, p.kernels.iter().map(|k| k.op.clone()).collect())
}

/// The scan and its contraction are one kernel (no `scan` kernel, no rank-4 buffer: the
/// decay and drive are computed inline from the rank-3 inputs), and it matches the
/// interpreter at T = 1, 2, 13 (prime) and 37 with N = 7, 16 and 17 (below, at and above
/// one AVX-512 vector of f32), odd channel counts, and B·DI = 74 channels (two full blocks of
/// 32 and a partial one, blocks spanning the batch boundary).
#[test]
fn selective_scan_is_one_kernel_and_matches_the_interpreter() {
    for (di, n) in [(5, 7), (3, 16), (4, 17), (37, 5)] {
        let ir = selective_scan_ir(di, n);
        let (big, ops) = lowered(&ir, 4);
        assert_eq!(
            big, 0,
            "DI={di} N={n}: a [B, T, DI, N] buffer remains; kernels {ops:?}"
        );
        assert!(!ops.iter().any(|o| o == "scan"), "DI={di} N={n}: {ops:?}");
        let g = parse_graph(&ir).expect("parses");
        let e = max_rel_err_at(&g, &[1, 2, 13, 37]);
        assert!(e < 1e-4, "DI={di} N={n}: {e:.3e}");
    }
}

/// The absorbed scan reversed with an initial state, the scan as the einsum's second operand,
/// the result's axes in another order than the scan's, and two contracted axes.
#[test]
fn absorbed_scans_reversed_with_h0_and_two_contracted_axes_match_the_interpreter() {
    let ir = "graph(B, T) {
  %0 = input \"a\" : f32[B, 3, T, 5]
  %1 = input \"b\" : f32[B, 3, T, 5]
  %2 = input \"h0\" : f32[B, 3, 5]
  %3 = input \"c\" : f32[B, T, 5]
  %4 = sigmoid(%0) : f32[B, 3, T, 5]
  %5 = scan(%4, %1, %2) axis=2 reverse=true : f32[B, 3, T, 5]
  %6 = einsum(%3, %5) spec=\"btn,bdtn->tdb\" : f32[T, 3, B]
  %7 = input \"p\" : f32[B, T, 2, 3]
  %8 = input \"q\" : f32[B, T, 2]
  %9 = tanh(%7) : f32[B, T, 2, 3]
  %10 = scan(%9, %7) axis=1 reverse=false : f32[B, T, 2, 3]
  %11 = einsum(%10, %8) spec=\"btij,bti->bt\" : f32[B, T]
  output \"y\" = %6
  output \"z\" = %11
}
";
    let (_, ops) = lowered(ir, 4);
    assert!(!ops.iter().any(|o| o == "scan"), "{ops:?}");
    let g = parse_graph(ir).expect("parses");
    let e = max_rel_err_at(&g, &[1, 2, 13, 37]);
    assert!(e < 1e-4, "{e:.3e}");
}

/// A scan read twice (by the einsum and an output) keeps its own kernel and stacked buffer.
#[test]
fn a_scan_with_another_use_is_not_absorbed_and_matches_the_interpreter() {
    let ir = "graph(B, T) {
  %0 = input \"a\" : f32[B, T, 4]
  %1 = input \"b\" : f32[B, T, 4]
  %2 = input \"c\" : f32[B, T, 4]
  %3 = scan(%0, %1) axis=1 reverse=false : f32[B, T, 4]
  %4 = einsum(%3, %2) spec=\"btn,btn->bt\" : f32[B, T]
  output \"y\" = %4
  output \"h\" = %3
}
";
    let (_, ops) = lowered(ir, 3);
    assert!(ops.iter().any(|o| o == "scan"), "{ops:?}");
    let g = parse_graph(ir).expect("parses");
    let e = max_rel_err_at(&g, &[1, 13]);
    assert!(e < 1e-4, "{e:.3e}");
}
