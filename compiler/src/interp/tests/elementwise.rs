//! Elementwise operators, constants, iota and random against hand-computed values.

use super::*;
use std::f64::consts::{LN_2, SQRT_2};

/// A one-op graph `y = op(x)` on a rank-1 f32 input.
fn unary_graph(u: UnaryOp, n: usize, dtype: DType) -> Graph {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", dtype, c(&[n as i64]));
    let y = g.add(Op::Unary(u), vec![x]).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn erf_matches_reference_values() {
    let cases = [
        (0.5, 0.5204998778130465),
        (-0.3, -0.3286267594591274),
        (1.0, 0.8427007929497149),
        (2.5, 0.999593047982555),
        (-3.7, -0.9999998328489421),
        (0.1, 0.1124629160182849),
        (6.0, 1.0),
        (0.0, 0.0),
    ];
    for (x, want) in cases {
        assert!(
            (erf(x) - want).abs() < 1e-15,
            "erf({x}) = {} not {want}",
            erf(x)
        );
    }
    assert!(erf(f64::NAN).is_nan());
    assert_eq!(erf(f64::INFINITY), 1.0);
    assert_eq!(erf(f64::NEG_INFINITY), -1.0);
}

#[test]
fn unary_ops_at_known_points() {
    let cases: &[(UnaryOp, &[f64], &[f64])] = &[
        (UnaryOp::Neg, &[-1.5, 0.5], &[1.5, -0.5]),
        (UnaryOp::Abs, &[-1.5, 0.5], &[1.5, 0.5]),
        (
            UnaryOp::Exp,
            &[-1.5, 0.5, 2.0],
            &[0.22313016014842982, 1.6487212707001282, 7.38905609893065],
        ),
        (
            UnaryOp::Log,
            &[0.5, 2.0, 3.0],
            &[-LN_2, LN_2, 1.0986122886681098],
        ),
        (
            UnaryOp::Log1p,
            &[-0.5, 0.25, 3.0],
            &[-LN_2, 0.22314355131420976, 1.3862943611198906],
        ),
        (
            UnaryOp::Sqrt,
            &[0.25, 2.0, 3.0],
            &[0.5, SQRT_2, 1.7320508075688772],
        ),
        (
            UnaryOp::Rsqrt,
            &[0.25, 2.0, 3.0],
            &[2.0, 0.7071067811865475, 0.5773502691896258],
        ),
        (UnaryOp::Recip, &[-4.0, 3.0], &[-0.25, 0.3333333333333333]),
        (
            UnaryOp::Sigmoid,
            &[-2.0, 0.0, 1.5],
            &[0.11920292202211755, 0.5, 0.8175744761936437],
        ),
        (
            UnaryOp::Softplus,
            &[30.0, -30.0, 0.0, 1.5],
            &[30.0, 9.357622968839737e-14, LN_2, 1.7014132779827524],
        ),
        (
            UnaryOp::Silu,
            &[-2.0, 1.5],
            &[-0.2384058440442351, 1.2263617142904655],
        ),
        (
            UnaryOp::Gelu,
            &[-1.5, 0.5, 2.0],
            &[
                -0.10021080190328713,
                0.34573123063700656,
                1.9544997361036416,
            ],
        ),
        (
            UnaryOp::GeluTanh,
            &[-1.5, 0.5, 2.0],
            &[-0.10042842301976707, 0.34571400982514394, 1.954597694087775],
        ),
        (UnaryOp::Relu, &[-1.5, 0.5], &[0.0, 0.5]),
        (UnaryOp::Elu, &[-1.5, 0.5], &[-0.7768698398515702, 0.5]),
        (
            UnaryOp::Tanh,
            &[-1.5, 0.5],
            &[-0.9051482536448664, 0.46211715726000974],
        ),
        (
            UnaryOp::Erf,
            &[-1.5, 0.5, 2.0],
            &[-0.9661051464753108, 0.5204998778130465, 0.9953222650189527],
        ),
        (
            UnaryOp::Sin,
            &[-1.5, 0.5],
            &[-0.9974949866040544, 0.479425538604203],
        ),
        (
            UnaryOp::Cos,
            &[-1.5, 0.5],
            &[0.0707372016677029, 0.8775825618903728],
        ),
        (UnaryOp::Floor, &[-1.5, 2.75], &[-2.0, 2.0]),
    ];
    for (u, xs, want) in cases {
        let g = unary_graph(*u, xs.len(), DType::F32);
        let y = run_y(&g, &dims(&[]), &ts(vec![("x", f32t(&[xs.len()], xs))]));
        // f32 results: within f32 rounding of the f64 reference.
        assert_close(&y.to_f64_vec(), want, 1e-7);
        assert_eq!(y.dtype(), DType::F32);
    }
}

#[test]
fn int_and_bool_unary_ops_wrap() {
    let x = i32t(&[3], &[-3, 5, i32::MIN]);
    for (u, want) in [
        (UnaryOp::Neg, vec![3, -5, i32::MIN as i64]),
        (UnaryOp::Abs, vec![3, 5, i32::MIN as i64]),
        (UnaryOp::Relu, vec![0, 5, 0]),
    ] {
        let g = unary_graph(u, 3, DType::I32);
        assert_eq!(
            ints(&run_y(&g, &dims(&[]), &ts(vec![("x", x.clone())]))),
            want
        );
    }
    let g = unary_graph(UnaryOp::Not, 2, DType::Bool);
    let b = HostTensor::new("", vec![2], TensorData::Bool(vec![true, false])).unwrap();
    let y = run_y(&g, &dims(&[]), &ts(vec![("x", b)]));
    assert_eq!(y.data, TensorData::Bool(vec![false, true]));
}

#[test]
fn half_precision_results_are_rounded() {
    for (dtype, want) in [(DType::F16, 0.0999755859375), (DType::BF16, 0.10009765625)] {
        let g = unary_graph(UnaryOp::Abs, 1, dtype);
        let x = HostTensor::from_f64(dtype, vec![1], &[-0.1]);
        let y = run_y(&g, &dims(&[]), &ts(vec![("x", x)]));
        assert_eq!(y.dtype(), dtype);
        assert_eq!(y.to_f64_vec(), vec![want]);
    }
}

fn binary_graph(op: BinaryOp, dtype: DType, a: &[i64], b: &[i64]) -> Graph {
    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "a", dtype, c(a));
    let y = leaf(&mut g, "b", dtype, c(b));
    let z = g.add(Op::Binary(op), vec![x, y]).unwrap();
    g.add_output("y", z);
    g
}

#[test]
fn broadcasting_add() {
    let g = binary_graph(BinaryOp::Add, DType::F32, &[2, 1], &[3]);
    let t = ts(vec![
        ("a", f32t(&[2, 1], &[1.0, 2.0])),
        ("b", f32t(&[3], &[10.0, 20.0, 30.0])),
    ]);
    let y = run_y(&g, &dims(&[]), &t);
    assert_eq!(y.shape, vec![2, 3]);
    assert_eq!(y.to_f64_vec(), vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
}

#[test]
fn integer_division_is_pythons() {
    let a = i32t(&[4], &[-7, 7, -7, 7]);
    let b = i32t(&[4], &[2, 2, -2, -2]);
    let t = ts(vec![("a", a), ("b", b)]);
    let div = binary_graph(BinaryOp::Div, DType::I32, &[4], &[4]);
    assert_eq!(ints(&run_y(&div, &dims(&[]), &t)), vec![-4, 3, 3, -4]);
    let rem = binary_graph(BinaryOp::Rem, DType::I32, &[4], &[4]);
    assert_eq!(ints(&run_y(&rem, &dims(&[]), &t)), vec![1, 1, -1, -1]);
    // Float remainder x − y·floor(x/y) has the divisor's sign too.
    let frem = binary_graph(BinaryOp::Rem, DType::F32, &[2], &[2]);
    let t = ts(vec![
        ("a", f32t(&[2], &[-7.0, 7.5])),
        ("b", f32t(&[2], &[2.0, -2.0])),
    ]);
    assert_eq!(run_y(&frem, &dims(&[]), &t).to_f64_vec(), vec![1.0, -0.5]);
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let g = binary_graph(BinaryOp::Div, DType::I32, &[2], &[2]);
    let t = ts(vec![("a", i32t(&[2], &[1, 2])), ("b", i32t(&[2], &[1, 0]))]);
    let e = run(&g, &dims(&[]), &t).unwrap_err().to_string();
    assert!(
        e.contains("%2") && e.contains("div") && e.contains("division by zero"),
        "{e}"
    );
}

#[test]
fn i32_arithmetic_wraps() {
    let g = binary_graph(BinaryOp::Add, DType::I32, &[1], &[1]);
    let t = ts(vec![
        ("a", i32t(&[1], &[i32::MAX])),
        ("b", i32t(&[1], &[1])),
    ]);
    assert_eq!(ints(&run_y(&g, &dims(&[]), &t)), vec![i32::MIN as i64]);
}

#[test]
fn comparisons_select_and_cast() {
    let g = binary_graph(BinaryOp::Lt, DType::F32, &[3], &[]);
    let t = ts(vec![
        ("a", f32t(&[3], &[1.0, 2.0, 3.0])),
        ("b", f32t(&[], &[2.0])),
    ]);
    assert_eq!(
        run_y(&g, &dims(&[]), &t).data,
        TensorData::Bool(vec![true, false, false])
    );

    let mut g = Graph::new(vec![]);
    let x = leaf(&mut g, "x", DType::F32, c(&[3]));
    let zero = g
        .add(
            Op::Const {
                value: Literal::Float(0.0),
                dtype: DType::F32,
            },
            vec![],
        )
        .unwrap();
    let pos = g.add(Op::Binary(BinaryOp::Gt), vec![x, zero]).unwrap();
    let neg = g.add(Op::Unary(UnaryOp::Neg), vec![x]).unwrap();
    let sel = g.add(Op::Select, vec![pos, x, neg]).unwrap();
    let as_int = g.add(Op::Cast { to: DType::I32 }, vec![sel]).unwrap();
    let back = g.add(Op::Cast { to: DType::Bool }, vec![as_int]).unwrap();
    g.add_output("abs", sel);
    g.add_output("int", as_int);
    g.add_output("bool", back);
    let out = run(
        &g,
        &dims(&[]),
        &ts(vec![("x", f32t(&[3], &[-2.5, 0.75, 3.5]))]),
    )
    .unwrap();
    assert_eq!(out["abs"].to_f64_vec(), vec![2.5, 0.75, 3.5]);
    assert_eq!(ints(&out["int"]), vec![2, 0, 3]);
    assert_eq!(out["bool"].data, TensorData::Bool(vec![true, false, true]));
}

#[test]
fn constants_iota_and_random() {
    let mut g = Graph::new(vec!["T".into()]);
    let i = g
        .add(
            Op::Iota {
                shape: vec![2.into(), t_sym()],
                axis: 1,
            },
            vec![],
        )
        .unwrap();
    let r = Op::Random {
        shape: vec![t_sym()],
        dist: Distribution::Normal,
        seed: 7,
    };
    let r = g.add(r, vec![]).unwrap();
    let k = g
        .add(
            Op::Const {
                value: Literal::Int(3),
                dtype: DType::I64,
            },
            vec![],
        )
        .unwrap();
    g.add_output("iota", i);
    g.add_output("rand", r);
    g.add_output("k", k);
    let out = run(&g, &dims(&[("T", 3)]), &Tensors::new()).unwrap();
    assert_eq!(ints(&out["iota"]), vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(out["iota"].dtype(), DType::I32);
    assert_eq!(
        out["rand"].data,
        TensorData::F32(crate::rng::fill(7, 3, true))
    );
    assert_eq!(out["k"].data, TensorData::I64(vec![3]));
}
