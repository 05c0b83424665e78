//! Tests of the IR printer.

use super::*;
use crate::ir::op::BinaryOp;
use crate::ir::types::TensorType;
use seqc_runtime::DType;

#[test]
fn prints_the_documented_form() {
    let (b, t) = (DimExpr::sym("B"), DimExpr::sym("T"));
    let mut g = Graph::new(vec!["B".into(), "T".into()]);
    let x_ty = TensorType::new(DType::F32, vec![b.clone(), t.clone(), 64.into()]);
    let x = g.add_leaf(Op::Input { name: "x".into() }, x_ty);
    let w_ty = TensorType::new(DType::F32, vec![64.into(), 64.into()]);
    let w = g.add_leaf(
        Op::Param {
            name: "layers.0.q_proj.weight".into(),
        },
        w_ty,
    );
    let y = g
        .add(
            Op::Einsum {
                spec: "btd,ed->bte".into(),
            },
            vec![x, w],
        )
        .unwrap();
    let half = Op::Const {
        value: Literal::Float(0.5),
        dtype: DType::F32,
    };
    let half = g.add(half, vec![]).unwrap();
    let m = g.add(Op::Binary(BinaryOp::Mul), vec![y, half]).unwrap();
    let sum = Op::Reduce {
        op: crate::ir::op::ReduceOp::Sum,
        axes: vec![2],
        keepdim: false,
    };
    g.add(sum, vec![m]).unwrap();
    let end = t.sub(&1.into());
    g.add(
        Op::Slice {
            axis: 1,
            start: 0.into(),
            end,
            step: 1,
        },
        vec![x],
    )
    .unwrap();
    g.add_output("y", m);
    let want = r#"graph(B, T) {
  %0 = input "x" : f32[B, T, 64]
  %1 = param "layers.0.q_proj.weight" : f32[64, 64]
  %2 = einsum(%0, %1) spec="btd,ed->bte" : f32[B, T, 64]
  %3 = const 0.5 dtype=f32 : f32[]
  %4 = mul(%2, %3) : f32[B, T, 64]
  %5 = sum(%4) axes=[2] keepdim=false : f32[B, T]
  %6 = slice(%0) axis=1 start=0 end=T - 1 step=1 : f32[B, T - 1, 64]
  output "y" = %4
}
"#;
    assert_eq!(print_graph(&g), want);
    assert_eq!(g.to_string(), want);
}

#[test]
fn prints_nested_bodies_indented() {
    let text = print_graph(&samples::all_ops());
    assert!(text.contains(
        "scan_fn(%94, %102, %3, %1) axis=1 n_state=2 n_xs=1 : (f32[B, T, 8], f32[B, T]) {\n    graph(B, T) {\n      %0 = input \"h\" : f32[B, 8]\n"
    ), "{text}");
    assert!(text.contains("      output \"c\" = %8\n    }\n  }\n  %104 = extract(%103) index=0"));
}

#[test]
fn literals_and_strings() {
    assert_eq!(literal_text(&Literal::Float(1.0)), "1.0");
    assert_eq!(literal_text(&Literal::Float(1e20)), "1e20");
    assert_eq!(literal_text(&Literal::Float(-0.0)), "-0.0");
    assert_eq!(literal_text(&Literal::Float(f64::NAN)), "nan");
    assert_eq!(literal_text(&Literal::Float(f64::NEG_INFINITY)), "-inf");
    assert_eq!(literal_text(&Literal::Int(-3)), "-3");
    assert_eq!(literal_text(&Literal::Bool(false)), "false");
    assert_eq!(quote("a\"b\\c\nd\u{7f}é"), r#""a\"b\\c\nd\u{7f}é""#);
}
