//! Recurrences against hand-written loops: scan, scan_matrix, scan_fn, conv1d_causal.

use super::*;

#[test]
fn scan_equals_its_unrolled_loop() {
    let (b_, t_, n_) = (2, 5, 3);
    let mut g = Graph::new(vec!["T".into()]);
    let shape = vec![2.into(), t_sym(), 3.into()];
    let a = leaf(&mut g, "a", DType::F32, shape.clone());
    let b = leaf(&mut g, "b", DType::F32, shape);
    let y = g
        .add(
            Op::Scan {
                axis: 1,
                reverse: false,
            },
            vec![a, b],
        )
        .unwrap();
    g.add_output("y", y);
    let (av, bv) = (randn(1, b_ * t_ * n_), randn(2, b_ * t_ * n_));
    let t = ts(vec![
        ("a", f32t(&[b_, t_, n_], &av)),
        ("b", f32t(&[b_, t_, n_], &bv)),
    ]);
    let got = run_y(&g, &dims(&[("T", t_ as i64)]), &t).to_f64_vec();
    let mut want = vec![0.0; got.len()];
    for i in 0..b_ {
        for k in 0..n_ {
            let mut h = 0.0;
            for s in 0..t_ {
                let at = i * t_ * n_ + s * n_ + k;
                h = r32(av[at] * h + bv[at]);
                want[at] = h;
            }
        }
    }
    assert_close(&got, &want, 1e-6);
}

#[test]
fn scan_with_initial_state_reversed_and_broadcast_decay() {
    let mut g = Graph::new(vec![]);
    let a = leaf(&mut g, "a", DType::F32, c(&[2]));
    let b = leaf(&mut g, "b", DType::F32, c(&[4, 2]));
    let h0 = leaf(&mut g, "h0", DType::F32, c(&[2]));
    let y = g
        .add(
            Op::Scan {
                axis: 0,
                reverse: true,
            },
            vec![a, b, h0],
        )
        .unwrap();
    g.add_output("y", y);
    let t = ts(vec![
        ("a", f32t(&[2], &[0.5, 2.0])),
        (
            "b",
            f32t(&[4, 2], &[1.0, 0.0, 2.0, 1.0, 3.0, 0.0, 4.0, 1.0]),
        ),
        ("h0", f32t(&[2], &[8.0, 1.0])),
    ]);
    // Channel 0, t = 3..0: 0.5·8+4 = 8, 0.5·8+3 = 7, 0.5·7+2 = 5.5, 0.5·5.5+1 = 3.75.
    // Channel 1: 2·1+1 = 3, 2·3+0 = 6, 2·6+1 = 13, 2·13+0 = 26.
    let want = [3.75, 26.0, 5.5, 13.0, 7.0, 6.0, 8.0, 3.0];
    assert_eq!(run_y(&g, &dims(&[]), &t).to_f64_vec(), want);
}

#[test]
fn scan_matrix_equals_its_loop() {
    let (t_, n_) = (3, 2);
    let mut g = Graph::new(vec![]);
    let a = leaf(&mut g, "a", DType::F32, c(&[3, 2, 2]));
    let b = leaf(&mut g, "b", DType::F32, c(&[3, 2]));
    let h0 = leaf(&mut g, "h0", DType::F32, c(&[2]));
    let y = g.add(Op::ScanMatrix { axis: 0 }, vec![a, b, h0]).unwrap();
    g.add_output("y", y);
    let (av, bv, hv) = (randn(3, 12), randn(4, 6), randn(5, 2));
    let t = ts(vec![
        ("a", f32t(&[3, 2, 2], &av)),
        ("b", f32t(&[3, 2], &bv)),
        ("h0", f32t(&[2], &hv)),
    ]);
    let got = run_y(&g, &dims(&[]), &t).to_f64_vec();
    let mut h = hv.clone();
    let mut want = vec![];
    for s in 0..t_ {
        let m = &av[s * 4..s * 4 + 4];
        let next: Vec<f64> = (0..n_)
            .map(|i| r32(m[i * 2] * h[0] + m[i * 2 + 1] * h[1] + bv[s * 2 + i]))
            .collect();
        want.extend_from_slice(&next);
        h = next;
    }
    assert_close(&got, &want, 1e-6);
}

/// Body: s1' = s1·w + x, s2' = s2 + s1' (all f32[3]).
fn two_state_body() -> Graph {
    let mut b = Graph::new(vec![]);
    let s1 = leaf(&mut b, "s1", DType::F32, c(&[3]));
    let s2 = leaf(&mut b, "s2", DType::F32, c(&[3]));
    let x = leaf(&mut b, "x", DType::F32, c(&[3]));
    let w = leaf(&mut b, "w", DType::F32, c(&[3]));
    let m = b.add(Op::Binary(BinaryOp::Mul), vec![s1, w]).unwrap();
    let n1 = b.add(Op::Binary(BinaryOp::Add), vec![m, x]).unwrap();
    let n2 = b.add(Op::Binary(BinaryOp::Add), vec![s2, n1]).unwrap();
    b.add_output("s1", n1);
    b.add_output("s2", n2);
    b
}

#[test]
fn scan_fn_with_two_states_equals_its_loop() {
    // xs: [3, T] scanned along axis 1; states are stacked along axis 1 too: [3, T].
    let t_ = 4;
    let mut g = Graph::new(vec!["T".into()]);
    let i1 = leaf(&mut g, "i1", DType::F32, c(&[3]));
    let i2 = leaf(&mut g, "i2", DType::F32, c(&[3]));
    let xs = leaf(&mut g, "xs", DType::F32, vec![3.into(), t_sym()]);
    let w = leaf(&mut g, "w", DType::F32, c(&[3]));
    let op = Op::ScanFn {
        axis: 1,
        n_state: 2,
        n_xs: 1,
        body: Box::new(two_state_body()),
    };
    let s = g.add(op, vec![i1, i2, xs, w]).unwrap();
    let o1 = g.add(Op::Extract { index: 0 }, vec![s]).unwrap();
    let o2 = g.add(Op::Extract { index: 1 }, vec![s]).unwrap();
    g.add_output("y", o1);
    g.add_output("z", o2);
    let (v1, v2, vx, vw) = (randn(6, 3), randn(7, 3), randn(8, 3 * t_), randn(9, 3));
    let t = ts(vec![
        ("i1", f32t(&[3], &v1)),
        ("i2", f32t(&[3], &v2)),
        ("xs", f32t(&[3, t_], &vx)),
        ("w", f32t(&[3], &vw)),
    ]);
    let out = run(&g, &dims(&[("T", t_ as i64)]), &t).unwrap();
    assert_eq!(out["y"].shape, vec![3, t_]);
    let (mut want1, mut want2) = (vec![0.0; 3 * t_], vec![0.0; 3 * t_]);
    for k in 0..3 {
        let (mut s1, mut s2) = (v1[k], v2[k]);
        for s in 0..t_ {
            s1 = r32(r32(s1 * vw[k]) + vx[k * t_ + s]);
            s2 = r32(s2 + s1);
            want1[k * t_ + s] = s1;
            want2[k * t_ + s] = s2;
        }
    }
    assert_close(&out["y"].to_f64_vec(), &want1, 1e-6);
    assert_close(&out["z"].to_f64_vec(), &want2, 1e-6);
}

#[test]
fn conv1d_causal_matches_the_formula() {
    let (t_, c_, k_) = (5, 2, 3);
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", DType::F32, c(&[1, 5, 2]));
    let w = leaf(&mut g, "w", DType::F32, c(&[2, 3]));
    let y = g.add(Op::Conv1dCausal, vec![x, w]).unwrap();
    g.add_output("y", y);
    let (xv, wv) = (randn(10, t_ * c_), randn(11, c_ * k_));
    let t = ts(vec![
        ("x", f32t(&[1, t_, c_], &xv)),
        ("w", f32t(&[c_, k_], &wv)),
    ]);
    let got = run_y(&g, &dims(&[]), &t).to_f64_vec();
    let mut want = vec![0.0; t_ * c_];
    for s in 0..t_ as i64 {
        for ch in 0..c_ {
            for k in 0..k_ as i64 {
                let src = s - (k_ as i64 - 1) + k;
                if src >= 0 {
                    want[s as usize * c_ + ch] +=
                        wv[ch * k_ + k as usize] * xv[src as usize * c_ + ch];
                }
            }
        }
    }
    // t = 0 sees only x[0] through the last tap.
    assert!((want[0] - wv[2] * xv[0]).abs() < 1e-12);
    assert_close(
        &got,
        &want.iter().map(|&v| r32(v)).collect::<Vec<_>>(),
        1e-6,
    );
}
