//! Index operators: take, gather, scatter_add, sorting, topk and argmax.

use super::*;

fn index_graph(op: Op, x: (DType, &[i64]), idx: &[i64], src: Option<&[i64]>) -> Graph {
    let mut g = Graph::new(vec![]);
    let xs = leaf(&mut g, "x", x.0, c(x.1));
    let is = leaf(&mut g, "idx", DType::I32, c(idx));
    let mut ins = vec![xs, is];
    if let Some(s) = src {
        ins.push(leaf(&mut g, "src", x.0, c(s)));
    }
    let y = g.add(op, ins).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn take_is_an_embedding_lookup() {
    let table = f32t(&[4, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0]);
    let g = index_graph(Op::Take { axis: 0 }, (DType::F32, &[4, 2]), &[2, 2], None);
    let t = ts(vec![
        ("x", table.clone()),
        ("idx", i32t(&[2, 2], &[3, 0, 1, 1])),
    ]);
    let y = run_y(&g, &dims(&[]), &t);
    assert_eq!(y.shape, vec![2, 2, 2]);
    assert_eq!(
        y.to_f64_vec(),
        vec![30.0, 31.0, 0.0, 1.0, 10.0, 11.0, 10.0, 11.0]
    );
    // Along axis 1: columns [1, 1, 0].
    let g = index_graph(Op::Take { axis: 1 }, (DType::F32, &[4, 2]), &[3], None);
    let t = ts(vec![("x", table), ("idx", i32t(&[3], &[1, 1, 0]))]);
    let y = run_y(&g, &dims(&[]), &t);
    assert_eq!(y.shape, vec![4, 3]);
    assert_eq!(y.to_f64_vec()[..6], [1.0, 1.0, 0.0, 11.0, 11.0, 10.0]);
}

#[test]
fn out_of_range_take_is_an_error() {
    let g = index_graph(Op::Take { axis: 0 }, (DType::F32, &[4, 2]), &[2], None);
    for bad in [4, -1] {
        let t = ts(vec![
            ("x", f32t(&[4, 2], &[0.0; 8])),
            ("idx", i32t(&[2], &[0, bad])),
        ]);
        let e = run(&g, &dims(&[]), &t).unwrap_err().to_string();
        assert!(
            e.contains("take") && e.contains(&bad.to_string()) && e.contains("0..4"),
            "{e}"
        );
    }
}

#[test]
fn gather_and_scatter_add() {
    // torch.gather([[1, 2], [3, 4]], 1, [[0, 0], [1, 0]]) = [[1, 1], [4, 3]].
    let g = index_graph(Op::Gather { axis: 1 }, (DType::F32, &[2, 2]), &[2, 2], None);
    let t = ts(vec![
        ("x", f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0])),
        ("idx", i32t(&[2, 2], &[0, 0, 1, 0])),
    ]);
    assert_eq!(
        run_y(&g, &dims(&[]), &t).to_f64_vec(),
        vec![1.0, 1.0, 4.0, 3.0]
    );

    // Duplicate indices accumulate.
    let g = index_graph(
        Op::ScatterAdd { axis: 0 },
        (DType::F32, &[5]),
        &[5],
        Some(&[5]),
    );
    let t = ts(vec![
        ("x", f32t(&[5], &[0.5, 0.0, 0.0, 0.0, 0.0])),
        ("idx", i32t(&[5], &[0, 1, 0, 4, 0])),
        ("src", f32t(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0])),
    ]);
    assert_eq!(
        run_y(&g, &dims(&[]), &t).to_f64_vec(),
        vec![9.5, 2.0, 0.0, 0.0, 4.0]
    );

    // Rank 2 along axis 0: out[idx[i, j], j] += src[i, j].
    let g = index_graph(
        Op::ScatterAdd { axis: 0 },
        (DType::I32, &[3, 2]),
        &[2, 2],
        Some(&[2, 2]),
    );
    let t = ts(vec![
        ("x", i32t(&[3, 2], &[0; 6])),
        ("idx", i32t(&[2, 2], &[0, 1, 2, 0])),
        ("src", i32t(&[2, 2], &[1, 2, 3, 4])),
    ]);
    assert_eq!(ints(&run_y(&g, &dims(&[]), &t)), vec![1, 4, 0, 2, 3, 0]);
}

fn sort_op(op: Op, x: &[f64]) -> HostTensor {
    let mut g = Graph::new(vec![]);
    let xs = leaf(&mut g, "x", DType::F32, c(&[x.len() as i64]));
    let y = g.add(op, vec![xs]).unwrap();
    g.add_output("y", y);
    run_y(&g, &dims(&[]), &ts(vec![("x", f32t(&[x.len()], x))]))
}

#[test]
fn sorting_is_stable_and_ties_go_to_the_lower_index() {
    let x = [3.0, 1.0, 2.0, 1.0, 3.0];
    assert_eq!(
        ints(&sort_op(
            Op::Argsort {
                axis: 0,
                descending: false
            },
            &x
        )),
        vec![1, 3, 2, 0, 4]
    );
    assert_eq!(
        ints(&sort_op(
            Op::Argsort {
                axis: 0,
                descending: true
            },
            &x
        )),
        vec![0, 4, 2, 1, 3]
    );
    assert_eq!(
        sort_op(
            Op::Sort {
                axis: 0,
                descending: true
            },
            &x
        )
        .to_f64_vec(),
        vec![3.0, 3.0, 2.0, 1.0, 1.0]
    );

    let x = [1.0, 5.0, 5.0, 2.0, 5.0];
    let top = |largest, indices| Op::TopK {
        axis: 0,
        k: 2.into(),
        largest,
        indices,
    };
    assert_eq!(sort_op(top(true, false), &x).to_f64_vec(), vec![5.0, 5.0]);
    assert_eq!(ints(&sort_op(top(true, true), &x)), vec![1, 2]);
    assert_eq!(ints(&sort_op(top(false, true), &x)), vec![0, 3]);
    assert_eq!(
        ints(&sort_op(Op::ArgMax { axis: 0 }, &[1.0, 5.0, 5.0, 2.0])),
        vec![1]
    );
}

#[test]
fn argmax_along_an_inner_axis() {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", DType::F32, c(&[2, 3]));
    let y = g.add(Op::ArgMax { axis: 0 }, vec![x]).unwrap();
    g.add_output("y", y);
    let t = ts(vec![("x", f32t(&[2, 3], &[1.0, 7.0, 3.0, 4.0, 7.0, 0.0]))]);
    assert_eq!(ints(&run_y(&g, &dims(&[]), &t)), vec![1, 0, 0]);
}

fn grouped_graph(n: i64, i: i64, e: i64, o: i64) -> Graph {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", DType::F32, c(&[n, i]));
    let w = leaf(&mut g, "w", DType::F32, c(&[e, o, i]));
    let group = leaf(&mut g, "group", DType::I32, c(&[n]));
    let y = g.add(Op::GroupedMatmul, vec![x, w, group]).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn grouped_matmul_is_a_per_row_expert_product() {
    let (n, i, e, o) = (5usize, 3usize, 3usize, 2usize);
    let z = |v: usize| v as i64;
    let xv: Vec<f64> = (0..n * i).map(|k| (k as f64) * 0.5 - 3.0).collect();
    let wv: Vec<f64> = (0..e * o * i)
        .map(|k| ((k * 7) % 11) as f64 - 5.0)
        .collect();
    let groups = [2i32, 0, 2, 1, 0];
    let g = grouped_graph(z(n), z(i), z(e), z(o));
    let t = ts(vec![
        ("x", f32t(&[n, i], &xv)),
        ("w", f32t(&[e, o, i], &wv)),
        ("group", i32t(&[n], &groups)),
    ]);
    let y = run_y(&g, &dims(&[]), &t);
    assert_eq!(y.shape, vec![n, o]);
    // The naive loop nest of the definition.
    let mut want = vec![0.0; n * o];
    for r in 0..n {
        let ex = groups[r] as usize;
        for col in 0..o {
            for k in 0..i {
                want[r * o + col] += xv[r * i + k] * wv[(ex * o + col) * i + k];
            }
        }
    }
    assert_eq!(y.to_f64_vec(), want);
    // Row 0 through expert 2, by hand: x = [-3, -2.5, -2], w[2, 0] = [2, -2, 5].
    assert_eq!(want[0], -6.0 + 5.0 - 10.0);
}

#[test]
fn out_of_range_group_is_an_error() {
    let g = grouped_graph(2, 2, 3, 1);
    for bad in [3, -1] {
        let t = ts(vec![
            ("x", f32t(&[2, 2], &[1.0; 4])),
            ("w", f32t(&[3, 1, 2], &[1.0; 6])),
            ("group", i32t(&[2], &[0, bad])),
        ]);
        let e = run(&g, &dims(&[]), &t).unwrap_err().to_string();
        assert!(
            e.contains("group") && e.contains(&bad.to_string()) && e.contains("0..3"),
            "{e}"
        );
    }
}
