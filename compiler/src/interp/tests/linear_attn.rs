//! `linear_attn` (run by the chunked algorithm) against the naive masked quadratic form
//! written out here, for every chunk size against sequence lengths that are and are not
//! multiples of it, with no decay, a per-step decay and a per-channel decay, strict or not.

use super::*;

/// out_t = Σ_{s≤t (s<t if strict)} Σ_c q_tc k_sc e^{G_{t′,c} − G_sc} v_s, t′ = t or t − 1.
// The test's reference formula takes the op's operands and attributes as they are.
#[allow(clippy::too_many_arguments)]
fn naive(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    g: Option<(&[f64], bool)>,
    (bs, len, kd, vd): (usize, usize, usize, usize),
    strict: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; bs * len * vd];
    for b in 0..bs {
        // G[t][c], inclusive cumsum; gcum(-1) = 0.
        let mut big_g = vec![vec![0.0; kd]; len + 1];
        for t in 0..len {
            for c in 0..kd {
                let step = match g {
                    None => 0.0,
                    Some((gv, true)) => gv[(b * len + t) * kd + c],
                    Some((gv, false)) => gv[b * len + t],
                };
                big_g[t + 1][c] = big_g[t][c] + step;
            }
        }
        for t in 0..len {
            let gt = &big_g[if strict { t } else { t + 1 }];
            for s in 0..(if strict { t } else { t + 1 }) {
                let w: f64 = (0..kd)
                    .map(|c| {
                        q[(b * len + t) * kd + c]
                            * k[(b * len + s) * kd + c]
                            * (gt[c] - big_g[s + 1][c]).exp()
                    })
                    .sum();
                for e in 0..vd {
                    out[(b * len + t) * vd + e] += w * v[(b * len + s) * vd + e];
                }
            }
        }
    }
    out
}

fn graph(kd: i64, vd: i64, g: Option<bool>, chunk: usize, strict: bool) -> Graph {
    let mut gr = Graph::new(vec!["T".into()]);
    let sh = |d: i64| vec![2.into(), t_sym(), d.into()];
    let q = leaf(&mut gr, "q", DType::F32, sh(kd));
    let k = leaf(&mut gr, "k", DType::F32, sh(kd));
    let v = leaf(&mut gr, "v", DType::F32, sh(vd));
    let mut ins = vec![q, k, v];
    if let Some(per_channel) = g {
        let shape = if per_channel {
            sh(kd)
        } else {
            vec![2.into(), t_sym()]
        };
        ins.push(leaf(&mut gr, "g", DType::F32, shape));
    }
    let y = gr.add(Op::LinearAttn { chunk, strict }, ins).unwrap();
    gr.add_output("y", y);
    gr
}

#[test]
fn chunked_algorithm_equals_the_quadratic_form() {
    let (kd, vd) = (3, 2);
    for len in [1usize, 7, 16, 37] {
        for g in [None, Some(false), Some(true)] {
            for strict in [false, true] {
                let q = randn(1, 2 * len * kd);
                let k = randn(2, 2 * len * kd);
                let v = randn(3, 2 * len * vd);
                // Log-decays in (−1, 0) (decays e^g in (0.37, 1)), as the specs produce.
                let gn = if g == Some(true) {
                    2 * len * kd
                } else {
                    2 * len
                };
                let gv: Vec<f64> = randn(4, gn)
                    .iter()
                    .map(|x| -(x.abs().min(3.0)) / 3.0)
                    .collect();
                let want = naive(
                    &q,
                    &k,
                    &v,
                    g.map(|pc| (gv.as_slice(), pc)),
                    (2, len, kd, vd),
                    strict,
                );
                let mut t = ts(vec![
                    ("q", f32t(&[2, len, kd], &q)),
                    ("k", f32t(&[2, len, kd], &k)),
                    ("v", f32t(&[2, len, vd], &v)),
                ]);
                if let Some(pc) = g {
                    let shape = if pc { vec![2, len, kd] } else { vec![2, len] };
                    t.insert("g".into(), f32t(&shape, &gv));
                }
                for chunk in [1, 4, 16, 64] {
                    let gr = graph(kd as i64, vd as i64, g, chunk, strict);
                    let got = run_y(&gr, &dims(&[("T", len as i64)]), &t).to_f64_vec();
                    assert_eq!(got.len(), want.len());
                    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale,
                            "T={len} g={g:?} strict={strict} chunk={chunk}: element {i}: \
                             {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn strict_output_starts_at_zero_and_decays_stay_finite() {
    // Strong decays (g = −50 per step): e^{G_t − G_s} underflows for distant steps but no
    // exponent is positive, so nothing overflows to inf or NaN.
    let len = 40;
    let gr = graph(2, 2, Some(false), 8, true);
    let t = ts(vec![
        ("q", f32t(&[2, len, 2], &randn(5, 2 * len * 2))),
        ("k", f32t(&[2, len, 2], &randn(6, 2 * len * 2))),
        ("v", f32t(&[2, len, 2], &randn(7, 2 * len * 2))),
        ("g", f32t(&[2, len], &vec![-50.0; 2 * len])),
    ]);
    let got = run_y(&gr, &dims(&[("T", len as i64)]), &t).to_f64_vec();
    assert!(got.iter().all(|x| x.is_finite()), "{got:?}");
    assert_eq!(&got[..2], &[0.0, 0.0]);
}

#[test]
fn bad_operands_are_refused_by_name() {
    let mut gr = Graph::new(vec!["T".into()]);
    let q = leaf(&mut gr, "q", DType::F32, vec![t_sym(), 3.into()]);
    let k4 = leaf(&mut gr, "k", DType::F32, vec![t_sym(), 4.into()]);
    let v = leaf(&mut gr, "v", DType::F32, vec![t_sym(), 2.into()]);
    let vi = leaf(&mut gr, "vi", DType::I32, vec![t_sym(), 2.into()]);
    let g_bad = leaf(&mut gr, "g", DType::F32, vec![t_sym(), 2.into()]);
    let v3 = leaf(&mut gr, "v3", DType::F32, vec![2.into(), t_sym(), 2.into()]);
    let q1 = leaf(&mut gr, "q1", DType::F32, vec![t_sym()]);
    let kh = leaf(&mut gr, "kh", DType::F16, vec![t_sym(), 3.into()]);
    let la = |chunk| Op::LinearAttn {
        chunk,
        strict: false,
    };
    let cases: Vec<(Op, Vec<NodeId>, &str)> = vec![
        (la(0), vec![q, q, v], "chunk must be at least 1, found 0"),
        (
            la(4),
            vec![q, q],
            "takes 3 or 4 operands (q, k, v[, g]), found 2",
        ),
        (
            la(4),
            vec![q, k4, v],
            "k must be f32[T, 3] like q, found f32[T, 4]",
        ),
        (la(4), vec![q, q, vi], "needs a float tensor, found i32"),
        (
            la(4),
            vec![q, q, v, g_bad],
            "g must be f32[T] or f32[T, 3], found f32[T, 2]",
        ),
        (
            la(4),
            vec![q, q, v3],
            "v must be f32[T, V], found f32[2, T, 2]",
        ),
        (
            la(4),
            vec![q1, q1, v],
            "q must be [..., T, K], found f32[T]",
        ),
        (
            la(4),
            vec![q, kh, v],
            "k must be f32 like q, found f16[T, 3]",
        ),
    ];
    for (op, ins, want) in cases {
        let e = gr.add(op, ins).expect_err(want);
        assert!(e.to_string().contains(want), "{e} does not contain {want}");
    }
}
