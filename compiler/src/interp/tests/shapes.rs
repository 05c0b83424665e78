//! Reductions, einsum and layout operators against hand-computed values.

use super::*;

fn reduce_graph(op: ReduceOp, axes: Vec<usize>, keepdim: bool, shape: &[i64]) -> Graph {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", DType::F32, c(shape));
    let y = g.add(Op::Reduce { op, axes, keepdim }, vec![x]).unwrap();
    g.add_output("y", y);
    g
}

/// (op, axes, keepdim, result shape, result values).
type ReduceCase = (ReduceOp, Vec<usize>, bool, Vec<usize>, Vec<f64>);

#[test]
fn reductions() {
    let x = ts(vec![("x", f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]);
    let cases: Vec<ReduceCase> = vec![
        (ReduceOp::Sum, vec![1], false, vec![2], vec![6.0, 15.0]),
        (ReduceOp::Sum, vec![1], true, vec![2, 1], vec![6.0, 15.0]),
        (
            ReduceOp::Sum,
            vec![0],
            true,
            vec![1, 3],
            vec![5.0, 7.0, 9.0],
        ),
        (ReduceOp::Mean, vec![0, 1], false, vec![], vec![3.5]),
        (ReduceOp::Max, vec![0], false, vec![3], vec![4.0, 5.0, 6.0]),
        (ReduceOp::Min, vec![1], false, vec![2], vec![1.0, 4.0]),
        (
            ReduceOp::LogSumExp,
            vec![1],
            false,
            vec![2],
            vec![3.40760596444438, 6.40760596444438],
        ),
    ];
    for (op, axes, keep, shape, want) in cases {
        let y = run_y(&reduce_graph(op, axes, keep, &[2, 3]), &dims(&[]), &x);
        assert_eq!(y.shape, shape);
        assert_close(&y.to_f64_vec(), &want, 1e-7);
    }
    let inf = ts(vec![(
        "x",
        f32t(&[2], &[f64::NEG_INFINITY, f64::NEG_INFINITY]),
    )]);
    let y = run_y(
        &reduce_graph(ReduceOp::LogSumExp, vec![0], false, &[2]),
        &dims(&[]),
        &inf,
    );
    assert_eq!(y.to_f64_vec(), vec![f64::NEG_INFINITY]);
}

fn einsum_graph(spec: &str, a: &[i64], b: &[i64]) -> Graph {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "a", DType::F32, c(a));
    let y = leaf(&mut g, "b", DType::F32, c(b));
    let z = g.add(Op::Einsum { spec: spec.into() }, vec![x, y]).unwrap();
    g.add_output("y", z);
    g
}

#[test]
fn einsum_contractions() {
    let a = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32t(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    let g = einsum_graph("ij,jk->ik", &[2, 3], &[3, 2]);
    let y = run_y(
        &g,
        &dims(&[]),
        &ts(vec![("a", a.clone()), ("b", b.clone())]),
    );
    assert_eq!(y.to_f64_vec(), vec![58.0, 64.0, 139.0, 154.0]);

    // Batched: batch 0 is the product above, batch 1 picks rows 0 and 1 of b.
    let ab = f32t(
        &[2, 2, 3],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    );
    let bb = f32t(
        &[2, 3, 2],
        &[
            7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ],
    );
    let g = einsum_graph("bij,bjk->bik", &[2, 2, 3], &[2, 3, 2]);
    let y = run_y(&g, &dims(&[]), &ts(vec![("a", ab), ("b", bb)]));
    assert_eq!(y.shape, vec![2, 2, 2]);
    assert_eq!(
        y.to_f64_vec(),
        vec![58.0, 64.0, 139.0, 154.0, 7.0, 8.0, 9.0, 10.0]
    );

    // Contraction against a transposed operand: a · cᵀ.
    let cm = f32t(&[2, 3], &[1.0, 1.0, 1.0, 0.0, 1.0, 0.0]);
    let g = einsum_graph("ij,kj->ik", &[2, 3], &[2, 3]);
    let y = run_y(&g, &dims(&[]), &ts(vec![("a", a.clone()), ("b", cm)]));
    assert_eq!(y.to_f64_vec(), vec![6.0, 2.0, 15.0, 5.0]);

    // Output order differs from the input order: (a·b)ᵀ.
    let g = einsum_graph("ij,jk->ki", &[2, 3], &[3, 2]);
    let y = run_y(&g, &dims(&[]), &ts(vec![("a", a), ("b", b)]));
    assert_eq!(y.to_f64_vec(), vec![58.0, 139.0, 64.0, 154.0]);
}

/// x = [[0, 1, 2], [3, 4, 5]] through one layout op.
fn layout(op: Op) -> HostTensor {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", DType::F32, c(&[2, 3]));
    let y = g.add(op, vec![x]).unwrap();
    g.add_output("y", y);
    run_y(
        &g,
        &dims(&[]),
        &ts(vec![("x", f32t(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))]),
    )
}

#[test]
fn layout_ops() {
    let y = layout(Op::Reshape { shape: c(&[3, 2]) });
    assert_eq!(
        (y.shape.clone(), y.to_f64_vec()),
        (vec![3, 2], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    );
    let y = layout(Op::Transpose { perm: vec![1, 0] });
    assert_eq!(
        (y.shape.clone(), y.to_f64_vec()),
        (vec![3, 2], vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0])
    );
    let y = layout(Op::Slice {
        axis: 1,
        start: 0.into(),
        end: 3.into(),
        step: 2,
    });
    assert_eq!(
        (y.shape.clone(), y.to_f64_vec()),
        (vec![2, 2], vec![0.0, 2.0, 3.0, 5.0])
    );
    let y = layout(Op::Slice {
        axis: 0,
        start: 1.into(),
        end: 2.into(),
        step: 1,
    });
    assert_eq!(y.to_f64_vec(), vec![3.0, 4.0, 5.0]);
    let y = layout(Op::Pad {
        axis: 1,
        before: 1.into(),
        after: 2.into(),
        value: Literal::Float(9.0),
    });
    assert_eq!(y.shape, vec![2, 6]);
    assert_eq!(
        y.to_f64_vec(),
        vec![9.0, 0.0, 1.0, 2.0, 9.0, 9.0, 9.0, 3.0, 4.0, 5.0, 9.0, 9.0]
    );
    let y = layout(Op::Broadcast {
        shape: c(&[2, 2, 3]),
    });
    assert_eq!(y.to_f64_vec()[6..], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

    let mut g = Graph::new(vec![]);
    let a = leaf(&mut g, "a", DType::F32, c(&[2, 1]));
    let b = leaf(&mut g, "b", DType::F32, c(&[2, 2]));
    let y = g.add(Op::Concat { axis: 1 }, vec![a, b, a]).unwrap();
    g.add_output("y", y);
    let t = ts(vec![
        ("a", f32t(&[2, 1], &[1.0, 2.0])),
        ("b", f32t(&[2, 2], &[3.0, 4.0, 5.0, 6.0])),
    ]);
    let y = run_y(&g, &dims(&[]), &t);
    assert_eq!(y.shape, vec![2, 4]);
    assert_eq!(y.to_f64_vec(), vec![1.0, 3.0, 4.0, 1.0, 2.0, 5.0, 6.0, 2.0]);
}

#[test]
fn slice_with_symbolic_bounds() {
    // x[1 : T - 1 : 2] along axis 0 with T = 6 picks rows 1 and 3.
    let mut g = Graph::new(vec!["T".into()]);
    let x = leaf(&mut g, "x", DType::F32, vec![t_sym()]);
    let end = t_sym().sub(&1.into());
    let y = g
        .add(
            Op::Slice {
                axis: 0,
                start: 1.into(),
                end,
                step: 2,
            },
            vec![x],
        )
        .unwrap();
    g.add_output("y", y);
    let t = ts(vec![("x", f32t(&[6], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))]);
    assert_eq!(
        run_y(&g, &dims(&[("T", 6)]), &t).to_f64_vec(),
        vec![1.0, 3.0]
    );
}
