//! The fused `attention` operator against hand-computed values and against a direct
//! (untiled, two-pass softmax) evaluation of its formula, for several masks, tile sizes that
//! do and do not divide T, broadcast batch dims, fully masked rows, and its size limit.

use super::*;
use crate::ir::mask::Mask;

fn attention_graph(mask: &str, tiles: (usize, usize), shapes: [Vec<DimExpr>; 3]) -> Graph {
    let mut g = Graph::new(vec!["T".into()]);
    let [qs, ks, vs] = shapes;
    let q = leaf(&mut g, "q", DType::F32, qs);
    let k = leaf(&mut g, "k", DType::F32, ks);
    let v = leaf(&mut g, "v", DType::F32, vs);
    let op = Op::Attention {
        mask: Mask::parse(mask).unwrap(),
        scale: 0.5,
        tile_q: tiles.0,
        tile_k: tiles.1,
    };
    let y = g.add(op, vec![q, k, v]).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn matches_hand_computed_values() {
    // q = [1, 2], k = [2, 0], v = [10, 20] (D = E = 1), scale 0.5: scores t=0: [1, 0],
    // t=1: [2, 0].
    let shapes = [c(&[2, 1]), c(&[2, 1]), c(&[2, 1])];
    let tensors = ts(vec![
        ("q", f32t(&[2, 1], &[1.0, 2.0])),
        ("k", f32t(&[2, 1], &[2.0, 0.0])),
        ("v", f32t(&[2, 1], &[10.0, 20.0])),
    ]);
    let e2 = 2f64.exp();
    for tiles in [(1, 1), (64, 64), (2, 1)] {
        let causal = attention_graph("le(s, t)", tiles, shapes.clone());
        let y = run_y(&causal, &dims(&[("T", 2)]), &tensors).to_f64_vec();
        assert_close(&y, &[10.0, (10.0 * e2 + 20.0) / (e2 + 1.0)], 1e-6);
        let full = attention_graph("true", tiles, shapes.clone());
        let y = run_y(&full, &dims(&[("T", 2)]), &tensors).to_f64_vec();
        let e1 = 1f64.exp();
        assert_close(
            &y,
            &[
                (10.0 * e1 + 20.0) / (e1 + 1.0),
                (10.0 * e2 + 20.0) / (e2 + 1.0),
            ],
            1e-6,
        );
        // Strictly causal: row 0 sees no key and is NaN (as the unfused softmax gives).
        let strict = attention_graph("lt(s, t)", tiles, shapes.clone());
        let y = run_y(&strict, &dims(&[("T", 2)]), &tensors).to_f64_vec();
        assert!(y[0].is_nan() && y[1] == 10.0, "{y:?}");
    }
}

/// The formula of ir/op.rs evaluated directly: all scores of a row, then max, exp, sum.
fn direct(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: &Mask,
    (t_len, d, e): (usize, usize, usize),
) -> Vec<f64> {
    let mut out = Vec::new();
    for t in 0..t_len {
        let x: Vec<f64> = (0..t_len)
            .map(|s| {
                if mask.holds(t as i64, s as i64) {
                    let dot: f64 = (0..d).map(|j| q[t * d + j] * k[s * d + j]).sum();
                    r32(r32(dot) * 0.5)
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = x.iter().map(|xi| (xi - m).exp()).collect();
        let z: f64 = p.iter().sum();
        for j in 0..e {
            out.push((0..t_len).map(|s| p[s] * v[s * e + j]).sum::<f64>() / z);
        }
    }
    out
}

#[test]
fn tiled_online_softmax_matches_the_direct_formula() {
    let masks = [
        "true",
        "le(s, t)",
        "and(le(s, t), lt(sub(t, s), 3))",
        "and(le(s, t), or(lt(s, 2), eq(rem(sub(t, s), 3), 0)))",
        "eq(div(t, 4), div(s, 4))",
    ];
    let (d, e) = (3, 2);
    for t_len in [1usize, 5, 13] {
        let t = t_sym();
        let shapes = [
            vec![t.clone(), DimExpr::constant(d as i64)],
            vec![t.clone(), DimExpr::constant(d as i64)],
            vec![t.clone(), DimExpr::constant(e as i64)],
        ];
        let q = randn(1, t_len * d);
        let k = randn(2, t_len * d);
        let v = randn(3, t_len * e);
        let tensors = ts(vec![
            ("q", f32t(&[t_len, d], &q)),
            ("k", f32t(&[t_len, d], &k)),
            ("v", f32t(&[t_len, e], &v)),
        ]);
        for m in masks {
            let mask = Mask::parse(m).unwrap();
            let want: Vec<f64> = direct(&q, &k, &v, &mask, (t_len, d, e))
                .into_iter()
                .map(r32)
                .collect();
            for tiles in [(1, 1), (4, 3), (3, 5), (64, 64)] {
                let g = attention_graph(m, tiles, shapes.clone());
                let y = run_y(&g, &dims(&[("T", t_len as i64)]), &tensors).to_f64_vec();
                assert_close(&y, &want, 1e-5);
            }
        }
    }
}

#[test]
fn attention_lse_gives_the_rows_log_sum_exp() {
    let mut g = Graph::new(vec!["T".into()]);
    let t = t_sym();
    let q = leaf(&mut g, "q", DType::F32, vec![t.clone(), 2.into()]);
    let k = leaf(&mut g, "k", DType::F32, vec![t.clone(), 2.into()]);
    let v = leaf(&mut g, "v", DType::F32, vec![t, 1.into()]);
    let mask = Mask::parse("lt(s, t)").unwrap();
    let op = Op::AttentionLse {
        mask: mask.clone(),
        scale: 0.5,
        tile_q: 2,
        tile_k: 3,
    };
    let pair = g.add(op, vec![q, k, v]).unwrap();
    let out = g.add(Op::Extract { index: 0 }, vec![pair]).unwrap();
    let lse = g.add(Op::Extract { index: 1 }, vec![pair]).unwrap();
    g.add_output("y", out);
    g.add_output("lse", lse);
    let (qv, kv, vv) = (randn(7, 14), randn(8, 14), randn(9, 7));
    let tensors = ts(vec![
        ("q", f32t(&[7, 2], &qv)),
        ("k", f32t(&[7, 2], &kv)),
        ("v", f32t(&[7, 1], &vv)),
    ]);
    let out = run(&g, &dims(&[("T", 7)]), &tensors).unwrap();
    let got = out["lse"].to_f64_vec();
    assert_eq!(out["lse"].shape, vec![7, 1]);
    // Row 0 sees no key: −∞ (and its attention row is NaN).
    assert_eq!(got[0], f64::NEG_INFINITY);
    assert!(out["y"].to_f64_vec()[0].is_nan());
    for t in 1..7 {
        let want: f64 = (0..t)
            .map(|s| r32(r32(qv[2 * t] * kv[2 * s] + qv[2 * t + 1] * kv[2 * s + 1]) * 0.5).exp())
            .sum::<f64>()
            .ln();
        assert_close(&got[t..t + 1], &[r32(want)], 1e-6);
    }
    let want = direct(&qv, &kv, &vv, &mask, (7, 2, 1));
    assert_close(&out["y"].to_f64_vec()[1..], &want[1..], 1e-5);
}

#[test]
fn batch_dims_broadcast() {
    // q: [2, 1, 3, 2], k: [3, 3, 2], v: [1, 3, 1] → [2, 3, 3, 1].
    let g = attention_graph(
        "le(s, t)",
        (2, 2),
        [c(&[2, 1, 3, 2]), c(&[3, 3, 2]), c(&[1, 3, 1])],
    );
    let (q, k, v) = (randn(4, 12), randn(5, 18), randn(6, 3));
    let tensors = ts(vec![
        ("q", f32t(&[2, 1, 3, 2], &q)),
        ("k", f32t(&[3, 3, 2], &k)),
        ("v", f32t(&[1, 3, 1], &v)),
    ]);
    let y = run_y(&g, &dims(&[("T", 1)]), &tensors);
    assert_eq!(y.shape, vec![2, 3, 3, 1]);
    let y = y.to_f64_vec();
    let mask = Mask::parse("le(s, t)").unwrap();
    for a in 0..2 {
        for b in 0..3 {
            let want = direct(&q[a * 6..][..6], &k[b * 6..][..6], &v, &mask, (3, 2, 1));
            let want: Vec<f64> = want.into_iter().map(r32).collect();
            assert_close(&y[(a * 3 + b) * 3..][..3], &want, 1e-5);
        }
    }
}

#[test]
fn huge_attention_is_an_error_not_a_hang() {
    let t = t_sym();
    let g = attention_graph(
        "le(s, t)",
        (64, 64),
        [
            vec![t.clone(), 1.into()],
            vec![t.clone(), 1.into()],
            vec![t, 1.into()],
        ],
    );
    let n = 1usize << 21;
    let z = f32t(&[n, 1], &vec![0.0; n]);
    let tensors = ts(vec![("q", z.clone()), ("k", z.clone()), ("v", z)]);
    let e = run(&g, &dims(&[("T", n as i64)]), &tensors).unwrap_err();
    assert!(
        e.to_string()
            .contains("`attention`: the attention would take more than 2^40"),
        "{e}"
    );
}
