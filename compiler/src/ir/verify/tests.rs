//! Tests of the verifier: one broken graph per invariant, and valid graphs passing.

use super::*;
use crate::ir::op::{Literal, UnaryOp};
use crate::ir::print::samples;
use crate::ir::types::TensorType;
use seqc_runtime::DType;

/// `graph(B) { %0 = input "x" : f32[B, 4]; %1 = param "w" : f32[4]; %2 = mul(%0, %1);
/// %3 = exp(%2); output "y" = %3 }`.
fn small() -> Graph {
    let mut g = Graph::new(vec!["B".into()]);
    let bx4 = vec![DimExpr::sym("B"), 4.into()];
    let x = g.add_leaf(
        Op::Input { name: "x".into() },
        TensorType::new(DType::F32, bx4),
    );
    let w_ty = TensorType::new(DType::F32, vec![4.into()]);
    let w = g.add_leaf(Op::Param { name: "w".into() }, w_ty);
    let m = g
        .add(Op::Binary(super::super::op::BinaryOp::Mul), vec![x, w])
        .unwrap();
    let e = g.add(Op::Unary(UnaryOp::Exp), vec![m]).unwrap();
    g.add_output("y", e);
    g
}

fn scan_fn_index(g: &Graph) -> usize {
    g.nodes
        .iter()
        .position(|n| matches!(n.op, Op::ScanFn { .. }))
        .unwrap()
}

fn body_mut(g: &mut Graph) -> &mut Graph {
    let i = scan_fn_index(g);
    match &mut g.nodes[i].op {
        Op::ScanFn { body, .. } => body,
        _ => unreachable!(),
    }
}

#[test]
fn valid_graphs_pass() {
    verify(&small()).unwrap();
    verify(&samples::all_ops()).unwrap();
    verify(&samples::nested_scan()).unwrap();
    verify(&Graph::default()).unwrap();
}

#[test]
fn duplicate_dims() {
    let mut g = small();
    g.dims.push("B".into());
    assert_eq!(
        verify(&g),
        Err(VerifyError::DuplicateDim { name: "B".into() })
    );
}

#[test]
fn topological_order() {
    let mut g = small();
    g.nodes[2].inputs[1] = NodeId(3);
    let e = verify(&g).unwrap_err();
    assert_eq!(
        e,
        VerifyError::NotTopological {
            node: NodeId(2),
            op: "mul",
            input: NodeId(3)
        }
    );
    assert!(
        e.to_string()
            .starts_with("%2 (`mul`): input %3 is not an earlier node"),
        "{e}"
    );
    let mut g = small();
    g.nodes[3].inputs[0] = NodeId(3);
    let e = verify(&g).unwrap_err();
    assert_eq!(
        e,
        VerifyError::NotTopological {
            node: NodeId(3),
            op: "exp",
            input: NodeId(3)
        }
    );
    let mut g = small();
    g.nodes[3].inputs[0] = NodeId(99);
    assert!(matches!(
        verify(&g),
        Err(VerifyError::NotTopological { .. })
    ));
}

#[test]
fn leaves_have_no_inputs_and_tensor_types() {
    let mut g = small();
    g.nodes[1].inputs.push(NodeId(0));
    let e = verify(&g).unwrap_err();
    assert_eq!(
        e,
        VerifyError::LeafHasInputs {
            node: NodeId(1),
            op: "param",
            found: 1
        }
    );
    let mut g = small();
    let t = g.nodes[1].ty.tensor().unwrap().clone();
    g.nodes[1].ty = Type::Tuple(vec![t]);
    let e = verify(&g).unwrap_err();
    assert!(matches!(
        e,
        VerifyError::LeafNotTensor {
            node: NodeId(1),
            op: "param",
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "%1 (`param`): a leaf must have a tensor type, found (f32[4])"
    );
}

#[test]
fn stored_types_match_inference() {
    let mut g = small();
    let found = Type::Tensor(TensorType::new(DType::F32, vec![4.into()]));
    let expected = g.nodes[3].ty.clone();
    g.nodes[3].ty = found.clone();
    let e = verify(&g).unwrap_err();
    let want = VerifyError::TypeMismatch {
        node: NodeId(3),
        op: "exp",
        expected,
        found,
    };
    assert_eq!(e, want);
    assert_eq!(
        e.to_string(),
        "%3 (`exp`): stored type is f32[4], but inference gives f32[B, 4]"
    );
    let mut g = small();
    g.nodes[3].op = Op::Unary(UnaryOp::Not);
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Infer { node: NodeId(3), op: "not", message }
        if message.contains("does not accept dtype f32")),
        "{e}"
    );
}

#[test]
fn leaf_names_are_unique() {
    let mut g = small();
    g.nodes[1].op = Op::Input { name: "x".into() };
    let e = verify(&g).unwrap_err();
    let want = VerifyError::DuplicateName {
        node: NodeId(1),
        op: "input",
        name: "x".into(),
        first: NodeId(0),
    };
    assert_eq!(e, want);
    // An input and a param may share a name; two params may not.
    let mut g = small();
    g.nodes[1].op = Op::Param { name: "x".into() };
    verify(&g).unwrap();
    let ty = g.nodes[1].ty.tensor().unwrap().clone();
    g.add_leaf(Op::Param { name: "x".into() }, ty);
    let e = verify(&g).unwrap_err();
    assert!(matches!(
        e,
        VerifyError::DuplicateName {
            node: NodeId(4),
            op: "param",
            ..
        }
    ));
}

#[test]
fn output_names_are_unique() {
    let mut g = small();
    g.add_output("y", NodeId(2));
    assert_eq!(
        verify(&g),
        Err(VerifyError::DuplicateOutput { name: "y".into() })
    );
}

#[test]
fn dims_are_declared() {
    let mut g = small();
    g.dims = vec!["T".into()];
    let e = verify(&g).unwrap_err();
    assert_eq!(
        e.to_string(),
        "%0 (`input`): dim `B` in its type is not declared in graph(T)"
    );
    let mut g = small();
    let pad = Op::Pad {
        axis: 0,
        before: DimExpr::sym("Q"),
        after: 0.into(),
        value: Literal::Float(0.0),
    };
    let p = g.add(pad, vec![NodeId(3)]).unwrap();
    let e = verify(&g).unwrap_err();
    let want = VerifyError::UndeclaredDim {
        node: p,
        op: "pad",
        symbol: "Q".into(),
        place: "attribute `before`".into(),
        declared: "B".into(),
    };
    assert_eq!(e, want);
    let mut g = small();
    let iota = Op::Iota {
        shape: vec![DimExpr::sym("B").ceil_div(2).unwrap(), DimExpr::sym("S")],
        axis: 0,
    };
    g.add(iota, vec![]).unwrap();
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(&e, VerifyError::UndeclaredDim { symbol, place, .. }
        if symbol == "S" && place == "attribute `shape`"),
        "{e}"
    );
}

#[test]
fn tuples_feed_only_extract() {
    let mut g = samples::all_ops();
    let s = scan_fn_index(&g);
    let ty = g.nodes[s].ty.clone();
    let id = NodeId(g.nodes.len() as u32);
    g.nodes.push(crate::ir::graph::Node {
        op: Op::Unary(UnaryOp::Exp),
        inputs: vec![NodeId(s as u32)],
        ty: ty.clone(),
    });
    let e = verify(&g).unwrap_err();
    let want = VerifyError::TupleUse {
        node: id,
        op: "exp",
        input: NodeId(s as u32),
        found: ty,
    };
    assert_eq!(e, want);
    assert!(e.to_string().contains("only `extract` may consume a tuple"));
}

#[test]
fn outputs_exist_and_are_tensors() {
    let mut g = small();
    g.add_output("z", NodeId(9));
    let e = verify(&g).unwrap_err();
    assert_eq!(
        e,
        VerifyError::OutputUndefined {
            name: "z".into(),
            node: NodeId(9),
            count: 4
        }
    );
    let mut g = samples::all_ops();
    let s = NodeId(scan_fn_index(&g) as u32);
    g.add_output("states", s);
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(&e, VerifyError::OutputNotTensor { name, node, found: Type::Tuple(_) }
        if name == "states" && *node == s),
        "{e}"
    );
}

#[test]
fn scan_fn_bodies_are_verified() {
    let mut g = samples::all_ops();
    let s = NodeId(scan_fn_index(&g) as u32);
    let body = body_mut(&mut g);
    let last = body.nodes.len() - 1;
    body.nodes[last].ty = Type::Tensor(TensorType::new(DType::F32, vec![]));
    let e = verify(&g).unwrap_err();
    let VerifyError::Body { node, error, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*node, s);
    assert!(matches!(**error, VerifyError::TypeMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{s} (`scan_fn`) body: %8 (`add`): stored type")),
        "{e}"
    );
    // Two levels deep.
    let mut g = samples::nested_scan();
    let inner = body_mut(body_mut(&mut g));
    inner.add_output("h", NodeId(0));
    let e = verify(&g).unwrap_err();
    assert!(
        e.to_string()
            .contains("body: %4 (`scan_fn`) body: output \"h\" is declared twice"),
        "{e}"
    );
}

#[test]
fn scan_fn_bodies_declare_outer_dims_only() {
    let mut g = samples::all_ops();
    let s = NodeId(scan_fn_index(&g) as u32);
    body_mut(&mut g).dims.push("Z".into());
    let e = verify(&g).unwrap_err();
    let want = VerifyError::BodyDimUndeclared {
        node: s,
        op: "scan_fn",
        symbol: "Z".into(),
        declared: "B, T".into(),
    };
    assert_eq!(e, want);
    // A body may declare fewer dims, as long as it uses only those.
    let mut g = samples::all_ops();
    body_mut(&mut g).dims = vec!["B".into()];
    verify(&g).unwrap();
}

#[test]
fn scan_fn_bodies_match_the_scan() {
    let mut g = samples::all_ops();
    let s = NodeId(scan_fn_index(&g) as u32);
    body_mut(&mut g).outputs.pop();
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Infer { node, op: "scan_fn", message }
        if *node == s && message.contains("returns 1 value(s) for 2 state(s)")),
        "{e}"
    );
}

fn fused_body_mut(g: &mut crate::ir::Graph, f: usize) -> &mut crate::ir::Graph {
    match &mut g.nodes[f].op {
        Op::Fused { body } => body,
        _ => unreachable!("not a fused node"),
    }
}

#[test]
fn fused_bodies_hold_elementwise_ops_and_one_final_reduction() {
    let g = samples::all_ops();
    let f = g
        .nodes
        .iter()
        .position(|n| matches!(n.op, Op::Fused { .. }))
        .expect("the sample has a fused node");
    // The reduction must be the output: make the output the addition before it.
    let mut bad = g.clone();
    let b = fused_body_mut(&mut bad, f);
    let before = NodeId(b.nodes.len() as u32 - 2);
    b.outputs[0].1 = before;
    b.nodes.pop();
    let e = verify(&bad).unwrap_err().to_string();
    assert!(e.contains("(`fused`)"), "{e}");
    // A view is not allowed in a body.
    let mut bad = g.clone();
    let b = fused_body_mut(&mut bad, f);
    // The addition before the sum becomes an (identity) transpose of the product.
    let add = b.nodes.len() - 2;
    let mul = b.nodes[add].inputs[0];
    b.nodes[add].op = Op::Transpose {
        perm: vec![0, 1, 2],
    };
    b.nodes[add].inputs = vec![mul];
    let e = verify(&bad).unwrap_err().to_string();
    assert!(e.contains("not `transpose`"), "{e}");
    // A body dim the enclosing graph lacks.
    let mut bad = g.clone();
    fused_body_mut(&mut bad, f).dims.push("Z".into());
    let e = verify(&bad).unwrap_err();
    assert!(
        matches!(e, VerifyError::BodyDimUndeclared { op: "fused", .. }),
        "{e}"
    );
}
