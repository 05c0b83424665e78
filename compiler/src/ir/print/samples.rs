//! Hand-built graphs shared by the print, parse and verify tests.

use crate::ir::dim::DimExpr;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::op::{
    BINARY_OPS, BinaryOp, Distribution, Literal, Op, REDUCE_OPS, UNARY_OPS, UnaryOp,
};
use crate::ir::types::TensorType;
use seqc_runtime::DType;

fn c(x: i64) -> DimExpr {
    DimExpr::constant(x)
}

fn add(g: &mut Graph, op: Op, inputs: &[NodeId]) -> NodeId {
    g.add(op.clone(), inputs.to_vec())
        .unwrap_or_else(|e| panic!("{op:?}: {e}"))
}

fn leaf(g: &mut Graph, op: Op, dtype: DType, shape: Vec<DimExpr>) -> NodeId {
    g.add_leaf(op, TensorType::new(dtype, shape))
}

fn konst(g: &mut Graph, value: Literal, dtype: DType) -> NodeId {
    add(g, Op::Const { value, dtype }, &[])
}

/// The body of the sample `scan_fn`: states h: [B, 8], c: [B]; sequence x: [B, 8];
/// capture w: [8, 8].
fn scan_body() -> Graph {
    let b = DimExpr::sym("B");
    let mut g = Graph::new(vec!["B".into(), "T".into()]);
    let f32 = DType::F32;
    let h = leaf(
        &mut g,
        Op::Input { name: "h".into() },
        f32,
        vec![b.clone(), c(8)],
    );
    let s = leaf(&mut g, Op::Input { name: "c".into() }, f32, vec![b.clone()]);
    let x = leaf(&mut g, Op::Input { name: "x".into() }, f32, vec![b, c(8)]);
    let w = leaf(
        &mut g,
        Op::Input { name: "w".into() },
        f32,
        vec![c(8), c(8)],
    );
    let hw = add(
        &mut g,
        Op::Einsum {
            spec: "bd,ed->be".into(),
        },
        &[h, w],
    );
    let sum = add(&mut g, Op::Binary(BinaryOp::Add), &[hw, x]);
    let nh = add(&mut g, Op::Unary(UnaryOp::Tanh), &[sum]);
    let xs = add(&mut g, reduce_sum(vec![1]), &[x]);
    let ns = add(&mut g, Op::Binary(BinaryOp::Add), &[s, xs]);
    g.add_output("h", nh);
    g.add_output("c", ns);
    g
}

fn reduce_sum(axes: Vec<usize>) -> Op {
    Op::Reduce {
        op: crate::ir::op::ReduceOp::Sum,
        axes,
        keepdim: false,
    }
}

/// A graph using every operator, every literal kind and every dim form.
pub(crate) fn all_ops() -> Graph {
    let (b, t) = (DimExpr::sym("B"), DimExpr::sym("T"));
    let (f32, i32) = (DType::F32, DType::I32);
    let mut g = Graph::new(vec!["B".into(), "T".into()]);
    let bt8 = vec![b.clone(), t.clone(), c(8)];
    let x = leaf(&mut g, Op::Input { name: "x".into() }, f32, bt8.clone());
    let wname = "layers.0.q_proj.weight".into();
    let w = leaf(&mut g, Op::Param { name: wname }, f32, vec![c(8), c(8)]);
    let odd_shape = vec![
        t.ceil_div(64).unwrap(),
        t.modulo(8).unwrap(),
        t.mul(&c(2)).sub(&c(1)),
        c(100).sub(&b),
        b.mul(&t).mul(&c(64)),
        b.mul(&b)
            .mul(&t)
            .add(&t.floor_div(2).unwrap().modulo(3).unwrap()),
        c(0),
    ];
    let odd = "odd \"name\" \\ \n\t\u{1} é.0".into();
    leaf(&mut g, Op::Param { name: odd }, DType::I64, odd_shape);
    let y = add(
        &mut g,
        Op::Einsum {
            spec: "btd,ed->bte".into(),
        },
        &[x, w],
    );
    let half = konst(&mut g, Literal::Float(0.5), f32);
    konst(&mut g, Literal::Int(3), i32);
    konst(&mut g, Literal::Int(-9223372036854775808), DType::I64);
    konst(&mut g, Literal::Int(2), f32);
    konst(&mut g, Literal::Bool(true), DType::Bool);
    konst(&mut g, Literal::Float(f64::NEG_INFINITY), f32);
    konst(&mut g, Literal::Float(f64::INFINITY), DType::BF16);
    konst(&mut g, Literal::Float(1e-7), DType::F16);
    konst(&mut g, Literal::Float(1e300), f32);
    let bt = vec![b.clone(), t.clone()];
    let iota = add(
        &mut g,
        Op::Iota {
            shape: bt.clone(),
            axis: 1,
        },
        &[],
    );
    let (normal, uniform) = (Distribution::Normal, Distribution::Uniform);
    let shape = vec![t.clone(), c(4)];
    add(
        &mut g,
        Op::Random {
            shape,
            dist: normal,
            seed: 42,
        },
        &[],
    );
    let shape = vec![c(2), c(3)];
    add(
        &mut g,
        Op::Random {
            shape,
            dist: uniform,
            seed: u64::MAX,
        },
        &[],
    );
    for u in UNARY_OPS.into_iter().filter(|u| *u != UnaryOp::Not) {
        add(&mut g, Op::Unary(u), &[y]);
    }
    for u in [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Relu] {
        add(&mut g, Op::Unary(u), &[iota]);
    }
    let cond = add(&mut g, Op::Binary(BinaryOp::Lt), &[y, y]);
    add(&mut g, Op::Unary(UnaryOp::Not), &[cond]);
    for op in BINARY_OPS {
        let (l, r) = match op {
            BinaryOp::And | BinaryOp::Or => (cond, cond),
            _ => (y, half),
        };
        add(&mut g, Op::Binary(op), &[l, r]);
    }
    add(&mut g, Op::Select, &[cond, y, half]);
    add(&mut g, Op::Cast { to: i32 }, &[y]);
    add(&mut g, Op::Cast { to: DType::Bool }, &[iota]);
    for op in REDUCE_OPS {
        add(
            &mut g,
            Op::Reduce {
                op,
                axes: vec![2],
                keepdim: false,
            },
            &[y],
        );
        add(
            &mut g,
            Op::Reduce {
                op,
                axes: vec![0, 2],
                keepdim: true,
            },
            &[y],
        );
    }
    add(
        &mut g,
        Op::Reduce {
            op: REDUCE_OPS[0],
            axes: vec![],
            keepdim: false,
        },
        &[y],
    );
    let shape = vec![b.mul(&t), c(8)];
    add(&mut g, Op::Reshape { shape }, &[y]);
    let shape = vec![b.clone(), t.clone(), c(2), c(4)];
    add(&mut g, Op::Reshape { shape }, &[y]);
    add(
        &mut g,
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        &[y],
    );
    add(&mut g, Op::Broadcast { shape: bt8.clone() }, &[half]);
    let (start, end) = (c(1), t.sub(&c(1)));
    add(
        &mut g,
        Op::Slice {
            axis: 1,
            start,
            end,
            step: 2,
        },
        &[y],
    );
    let (start, end) = (c(0), c(8));
    add(
        &mut g,
        Op::Slice {
            axis: 2,
            start,
            end,
            step: 1,
        },
        &[y],
    );
    add(&mut g, Op::Concat { axis: 2 }, &[y, y, y]);
    add(&mut g, Op::Concat { axis: 0 }, &[y]);
    let pads = [
        (y, c(1), t.clone(), Literal::Float(-1.5)),
        (y, c(0), c(2), Literal::Float(f64::NEG_INFINITY)),
        (y, c(0), c(2), Literal::Int(1)),
        (iota, c(0), b.clone(), Literal::Int(-7)),
        (cond, c(3), c(0), Literal::Bool(false)),
    ];
    for (x, before, after, value) in pads {
        add(
            &mut g,
            Op::Pad {
                axis: 1,
                before,
                after,
                value,
            },
            &[x],
        );
    }
    add(&mut g, Op::Take { axis: 0 }, &[w, iota]);
    let idx = add(
        &mut g,
        Op::Iota {
            shape: vec![b.clone(), t.clone(), c(3)],
            axis: 2,
        },
        &[],
    );
    let gathered = add(&mut g, Op::Gather { axis: 2 }, &[y, idx]);
    add(&mut g, Op::ScatterAdd { axis: 2 }, &[y, idx, gathered]);
    add(
        &mut g,
        Op::Sort {
            axis: 2,
            descending: true,
        },
        &[y],
    );
    add(
        &mut g,
        Op::Argsort {
            axis: 1,
            descending: false,
        },
        &[y],
    );
    let k = c(4);
    add(
        &mut g,
        Op::TopK {
            axis: 2,
            k,
            largest: true,
            indices: false,
        },
        &[y],
    );
    let k = t.clone();
    add(
        &mut g,
        Op::TopK {
            axis: 1,
            k,
            largest: false,
            indices: true,
        },
        &[y],
    );
    add(&mut g, Op::ArgMax { axis: 2 }, &[y]);
    let decay = add(&mut g, Op::Unary(UnaryOp::Sigmoid), &[y]);
    let h0 = add(&mut g, reduce_sum(vec![1]), &[y]);
    add(
        &mut g,
        Op::Scan {
            axis: 1,
            reverse: false,
        },
        &[decay, y],
    );
    add(
        &mut g,
        Op::Scan {
            axis: 1,
            reverse: true,
        },
        &[decay, y, h0],
    );
    let shape = vec![b.clone(), t.clone(), c(4), c(4)];
    let am = add(
        &mut g,
        Op::Random {
            shape,
            dist: normal,
            seed: 1,
        },
        &[],
    );
    let shape = vec![b.clone(), t.clone(), c(4)];
    let bm = add(
        &mut g,
        Op::Random {
            shape,
            dist: normal,
            seed: 2,
        },
        &[],
    );
    let hm = add(
        &mut g,
        Op::Random {
            shape: vec![b.clone(), c(4)],
            dist: normal,
            seed: 3,
        },
        &[],
    );
    add(&mut g, Op::ScanMatrix { axis: 1 }, &[am, bm]);
    add(&mut g, Op::ScanMatrix { axis: 1 }, &[am, bm, hm]);
    let c0 = add(&mut g, reduce_sum(vec![1]), &[h0]);
    let body = Box::new(scan_body());
    let scan_fn = Op::ScanFn {
        axis: 1,
        n_state: 2,
        n_xs: 1,
        body,
    };
    let states = add(&mut g, scan_fn, &[h0, c0, y, w]);
    let hs = add(&mut g, Op::Extract { index: 0 }, &[states]);
    let cs = add(&mut g, Op::Extract { index: 1 }, &[states]);
    let wc = leaf(
        &mut g,
        Op::Param {
            name: "conv.weight".into(),
        },
        f32,
        vec![c(8), c(4)],
    );
    let conv = add(&mut g, Op::Conv1dCausal, &[y, wc]);
    let body = Box::new(fused_body(&g, conv));
    let fused = add(&mut g, Op::Fused { body }, &[conv]);
    g.add_output("fused", fused);
    let window = crate::ir::mask::Mask::parse("and(le(s, t), lt(sub(t, s), 5))").unwrap();
    let att = Op::Attention {
        mask: window,
        scale: 0.25,
        tile_q: 4,
        tile_k: 3,
    };
    let att = add(&mut g, att, &[y, y, conv]);
    let causal = crate::ir::mask::Mask::parse("le(s, t)").unwrap();
    let att_lse = Op::AttentionLse {
        mask: causal,
        scale: 1.0,
        tile_q: 2,
        tile_k: 64,
    };
    let pair = add(&mut g, att_lse, &[y, y, y]);
    let lse = add(&mut g, Op::Extract { index: 1 }, &[pair]);
    let bt = b.mul(&t);
    let rows = add(
        &mut g,
        Op::Reshape {
            shape: vec![bt.clone(), c(8)],
        },
        &[y],
    );
    let experts = vec![c(3), c(5), c(8)];
    let we = leaf(
        &mut g,
        Op::Param {
            name: "experts".into(),
        },
        f32,
        experts,
    );
    let group = add(
        &mut g,
        Op::Iota {
            shape: vec![bt],
            axis: 0,
        },
        &[],
    );
    add(&mut g, Op::GroupedMatmul, &[rows, we, group]);
    g.add_output("y", conv);
    g.add_output("h", hs);
    g.add_output("c \"sum\"", cs);
    g.add_output("att", att);
    g.add_output("lse", lse);
    g
}

/// A `fused` body over a value like `x`: Σ over the last axis of 2·x + iota, the reduction
/// last.
fn fused_body(g: &Graph, x: NodeId) -> Graph {
    let ty = g.tensor_ty(x).clone();
    let mut b = Graph::new(g.dims.clone());
    let last = ty.rank() - 1;
    let shape = ty.shape.clone();
    let x0 = b.add_leaf(Op::Input { name: "x0".into() }, ty);
    let two = add(
        &mut b,
        Op::Const {
            value: Literal::Float(2.0),
            dtype: DType::F32,
        },
        &[],
    );
    let m = add(&mut b, Op::Binary(BinaryOp::Mul), &[x0, two]);
    let i = add(&mut b, Op::Iota { shape, axis: last }, &[]);
    let f = add(&mut b, Op::Cast { to: DType::F32 }, &[i]);
    let s = add(&mut b, Op::Binary(BinaryOp::Add), &[m, f]);
    let r = add(&mut b, reduce_sum(vec![last]), &[s]);
    b.add_output("y", r);
    b
}

/// A `scan_fn` over axis 1 of `xs: [B, S, T, 8]` whose body runs the sample `scan_fn` over
/// T and keeps its last state: two levels of nesting.
pub(crate) fn nested_scan() -> Graph {
    let (b, t) = (DimExpr::sym("B"), DimExpr::sym("T"));
    let f32 = DType::F32;
    // Outer body: state h [B, 8]; sequence x [B, T, 8] (per step); capture w [8, 8].
    let mut body = Graph::new(vec!["B".into(), "T".into()]);
    let h = leaf(
        &mut body,
        Op::Input { name: "h".into() },
        f32,
        vec![b.clone(), c(8)],
    );
    let xt = vec![b.clone(), t.clone(), c(8)];
    let x = leaf(&mut body, Op::Input { name: "x".into() }, f32, xt);
    let w = leaf(
        &mut body,
        Op::Input { name: "w".into() },
        f32,
        vec![c(8), c(8)],
    );
    let c0 = add(&mut body, reduce_sum(vec![1]), &[h]);
    let inner = Op::ScanFn {
        axis: 1,
        n_state: 2,
        n_xs: 1,
        body: Box::new(scan_body()),
    };
    let st = add(&mut body, inner, &[h, c0, x, w]);
    let hs = add(&mut body, Op::Extract { index: 0 }, &[st]);
    let one = c(1);
    let last = add(
        &mut body,
        Op::Slice {
            axis: 1,
            start: t.sub(&one),
            end: t.clone(),
            step: 1,
        },
        &[hs],
    );
    let nh = add(
        &mut body,
        Op::Reshape {
            shape: vec![b.clone(), c(8)],
        },
        &[last],
    );
    body.add_output("h", nh);
    let mut g = Graph::new(vec!["B".into(), "T".into(), "S".into()]);
    let s = DimExpr::sym("S");
    let h0 = leaf(
        &mut g,
        Op::Input { name: "h0".into() },
        f32,
        vec![b.clone(), c(8)],
    );
    let xs = vec![b.clone(), s, t.clone(), c(8)];
    let xs = leaf(&mut g, Op::Input { name: "xs".into() }, f32, xs);
    let w = leaf(
        &mut g,
        Op::Param { name: "w".into() },
        f32,
        vec![c(8), c(8)],
    );
    let outer = Op::ScanFn {
        axis: 1,
        n_state: 1,
        n_xs: 1,
        body: Box::new(body),
    };
    let st = add(&mut g, outer, &[h0, xs, w]);
    let hs = add(&mut g, Op::Extract { index: 0 }, &[st]);
    g.add_output("hs", hs);
    g
}
