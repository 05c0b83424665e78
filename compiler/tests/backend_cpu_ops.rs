//! The CPU backend's lowering of the optimizer's operators (`fused`, `linear_attn`,
//! `attention`, `attention_lse`) against the interpreter on hand-written IR where T is not a multiple of the
//! chunk or tiles (T = 37, chunk 16, tiles 4 × 3), with decays, strict causality, batch
//! broadcasting and a row with no visible key (NaN in both; its lse is −∞).

use seqc::ir::{DimBindings, parse::parse_graph};
use seqc::{bind, interp};
use seqc_runtime::{HostTensor, Model, Weights};
use std::collections::BTreeMap;

/// Runs `ir` on the CPU backend and the interpreter at B = 2, T = 37 and returns the largest
/// relative difference over the outputs (NaNs must coincide).
fn max_rel_err(ir: &str) -> f64 {
    max_rel_err_at(ir, 37)
}

/// [`max_rel_err`] at B = 2 and the given T.
fn max_rel_err_at(ir: &str, t: i64) -> f64 {
    let g = parse_graph(ir).unwrap_or_else(|e| panic!("{e:?}\n{ir}"));
    let dir = tempfile::tempdir().expect("tempdir");
    seqc::codegen::artifact::write_artifact(&g, "test", dir.path(), false).expect("compiles");
    let given: DimBindings = [("B".to_string(), 2), ("T".to_string(), t)]
        .into_iter()
        .collect();
    let mut tensors = BTreeMap::new();
    let bound = bind::bind_dims(&g, &given, &tensors).expect("binds");
    bind::fill_missing(&g, &bound, &mut tensors, 5).expect("fills");
    let want = interp::run(&g, &bound, &tensors).expect("interprets");
    let inputs: BTreeMap<String, HostTensor> = g
        .inputs()
        .map(|(n, _)| (n.to_string(), tensors[n].clone()))
        .collect();
    let model = Model::load(
        dir.path(),
        Weights::from_tensors(&BTreeMap::new()).expect("w"),
    )
    .expect("loads");
    let got = model.run(&inputs, &bound).expect("runs");
    let mut worst = 0.0f64;
    for (name, w) in &want {
        let (a, b) = (got[name].to_f64_vec(), w.to_f64_vec());
        assert_eq!(got[name].shape, w.shape, "`{name}`");
        let scale = b
            .iter()
            .filter(|x| x.is_finite())
            .fold(0.0f64, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if !x.is_finite() || !y.is_finite() {
                assert!(
                    x.is_nan() && y.is_nan() || x == y,
                    "`{name}`[{i}]: {x} vs {y}"
                );
                continue;
            }
            worst = worst.max((x - y).abs() / scale.max(1e-6));
        }
    }
    worst
}

/// q, k, v: [B, 2, T, 3|3|4] and a log-decay g = −softplus(x) of shape `g_shape`.
fn linear_attn_ir(strict: bool, per_channel: bool) -> String {
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
  %5 = neg(%4) : f32{gs}
  %6 = linear_attn(%0, %1, %2, %5) chunk=16 strict={strict} : f32[B, 2, T, 4]
  %7 = linear_attn(%0, %1, %2) chunk=16 strict={strict} : f32[B, 2, T, 4]
  output \"y\" = %6
  output \"z\" = %7
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

#[test]
fn attention_matches_the_interpreter_with_small_tiles_and_broadcast_batch() {
    // k and v are shared by both heads; `lt(s, t)` leaves row 0 without a key (NaN);
    // the table mask reads the head index.
    let masks = [
        "le(s, t)",
        "lt(s, t)",
        "and(le(s, t), eq(rem(sub(t, s), table(b1, [1, 2])), 0))",
        "true",
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

/// The tiled online-softmax kernel (64 × 64 tiles, `kernel/flash.rs`) over several query and
/// key tiles: T = 150 is not a multiple of the tile, the window leaves whole tiles hidden
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
        assert!(text.contains("gemm b"), "not the tiled kernel:\n{text}");
        for t in [150, 1] {
            let e = max_rel_err_at(&ir, t);
            assert!(e < 1e-4, "mask {mask}, T = {t}: {e:.3e}");
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
