//! Whole-model properties (softmax, causal attention) and the error paths.

use super::*;

/// Softmax over the last axis of `x` (rank 2): exp(x − max) / Σ.
fn softmax(g: &mut Graph, x: NodeId) -> NodeId {
    let m = g
        .add(
            Op::Reduce {
                op: ReduceOp::Max,
                axes: vec![1],
                keepdim: true,
            },
            vec![x],
        )
        .unwrap();
    let d = g.add(Op::Binary(BinaryOp::Sub), vec![x, m]).unwrap();
    let e = g.add(Op::Unary(UnaryOp::Exp), vec![d]).unwrap();
    let s = g
        .add(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: vec![1],
                keepdim: true,
            },
            vec![e],
        )
        .unwrap();
    g.add(Op::Binary(BinaryOp::Div), vec![e, s]).unwrap()
}

#[test]
fn softmax_rows_sum_to_one() {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", DType::F32, c(&[3, 4]));
    let y = softmax(&mut g, x);
    g.add_output("y", y);
    let xv = randn(12, 12);
    let got = run_y(&g, &dims(&[]), &ts(vec![("x", f32t(&[3, 4], &xv))])).to_f64_vec();
    for r in 0..3 {
        let row = &got[r * 4..r * 4 + 4];
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        let z: f64 = xv[r * 4..r * 4 + 4].iter().map(|v| v.exp()).sum();
        let want: Vec<f64> = xv[r * 4..r * 4 + 4].iter().map(|v| v.exp() / z).collect();
        assert_close(row, &want, 1e-6);
    }
}

#[test]
fn masked_attention_is_causal() {
    let mut g = Graph::new(vec!["T".into()]);
    let shape = vec![t_sym(), 4.into()];
    let q = leaf(&mut g, "q", DType::F32, shape.clone());
    let k = leaf(&mut g, "k", DType::F32, shape.clone());
    let v = leaf(&mut g, "v", DType::F32, shape);
    let s = g
        .add(
            Op::Einsum {
                spec: "td,sd->ts".into(),
            },
            vec![q, k],
        )
        .unwrap();
    let tt = vec![t_sym(), t_sym()];
    let row = g
        .add(
            Op::Iota {
                shape: tt.clone(),
                axis: 0,
            },
            vec![],
        )
        .unwrap();
    let col = g.add(Op::Iota { shape: tt, axis: 1 }, vec![]).unwrap();
    let mask = g.add(Op::Binary(BinaryOp::Ge), vec![row, col]).unwrap();
    let ninf = Op::Const {
        value: Literal::Float(f64::NEG_INFINITY),
        dtype: DType::F32,
    };
    let ninf = g.add(ninf, vec![]).unwrap();
    let masked = g.add(Op::Select, vec![mask, s, ninf]).unwrap();
    let p = softmax(&mut g, masked);
    let y = g
        .add(
            Op::Einsum {
                spec: "ts,sd->td".into(),
            },
            vec![p, v],
        )
        .unwrap();
    g.add_output("y", y);

    let (t_, t0) = (6usize, 2usize);
    let d = dims(&[("T", t_ as i64)]);
    let inputs = |seed: u64| {
        ts(vec![
            ("q", f32t(&[t_, 4], &randn(seed, t_ * 4))),
            ("k", f32t(&[t_, 4], &randn(seed + 1, t_ * 4))),
            ("v", f32t(&[t_, 4], &randn(seed + 2, t_ * 4))),
        ])
    };
    let base = inputs(20);
    let y0 = run_y(&g, &d, &base).to_f64_vec();
    // Change every input after t0.
    let mut changed = base.clone();
    let other = inputs(40);
    for name in ["q", "k", "v"] {
        let mut vals = base[name].to_f64_vec();
        let new = other[name].to_f64_vec();
        vals[(t0 + 1) * 4..].copy_from_slice(&new[(t0 + 1) * 4..]);
        changed.insert(name.into(), f32t(&[t_, 4], &vals));
    }
    let y1 = run_y(&g, &d, &changed).to_f64_vec();
    assert_eq!(
        y0[..(t0 + 1) * 4],
        y1[..(t0 + 1) * 4],
        "rows up to t0 must not change"
    );
    assert_ne!(
        y0[(t0 + 1) * 4..],
        y1[(t0 + 1) * 4..],
        "later rows do change"
    );
    // Row 0 attends only to itself: it equals v[0].
    assert_close(&y0[..4], &base["v"].to_f64_vec()[..4], 1e-6);
}

#[test]
fn unbound_dim_is_an_error_naming_it() {
    let mut g = Graph::new(vec!["T".into()]);
    let y = g
        .add(
            Op::Iota {
                shape: vec![t_sym()],
                axis: 0,
            },
            vec![],
        )
        .unwrap();
    g.add_output("y", y);
    let e = run(&g, &dims(&[]), &Tensors::new()).unwrap_err();
    assert!(
        matches!(&e, InterpError::UnboundDim { name, .. } if name == "T"),
        "{e:?}"
    );
    assert!(e.to_string().contains("`T`"), "{e}");
}

#[test]
fn absurd_sizes_are_refused() {
    let mut g = Graph::new(vec!["T".into()]);
    let y = g
        .add(
            Op::Iota {
                shape: vec![t_sym(), t_sym()],
                axis: 0,
            },
            vec![],
        )
        .unwrap();
    g.add_output("y", y);
    let e = run(&g, &dims(&[("T", 1 << 20)]), &Tensors::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2^31"), "{e}");
    let e = run(&g, &dims(&[("T", -3)]), &Tensors::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("negative"), "{e}");
}

#[test]
fn bad_tensors_are_errors() {
    let mut g = Graph::new(vec!["T".into()]);
    let x = leaf(&mut g, "x", DType::F32, vec![t_sym(), 2.into()]);
    let y = g.add(Op::Unary(UnaryOp::Exp), vec![x]).unwrap();
    g.add_output("y", y);
    let d = dims(&[("T", 3)]);
    let e = run(&g, &d, &Tensors::new()).unwrap_err().to_string();
    assert!(e.contains("`x`") && e.contains("f32[3, 2]"), "{e}");
    let e = run(&g, &d, &ts(vec![("x", f32t(&[2, 2], &[0.0; 4]))]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`x`") && e.contains("f32[T, 2] = f32[3, 2]") && e.contains("f32[2, 2]"),
        "{e}"
    );
    let e = run(&g, &d, &ts(vec![("x", i32t(&[3, 2], &[0; 6]))]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`x`") && e.contains("i32[3, 2]"), "{e}");
    // A host tensor whose buffer does not match its shape.
    let broken = HostTensor {
        shape: vec![3, 2],
        data: TensorData::F32(vec![0.0; 5]),
    };
    let e = run(&g, &d, &ts(vec![("x", broken)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`x`") && e.contains('5'), "{e}");
}
