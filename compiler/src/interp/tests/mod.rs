//! Tests of the reference interpreter: every operator against hand-computed values, scans
//! against hand-written loops, and the error paths (bad index, unbound dim, bad tensors).

mod attention;
mod elementwise;
mod index;
mod linear_attn;
mod model;
mod scan;
mod shapes;

use super::*;
use crate::ir::{
    BinaryOp, DimExpr, Distribution, Graph, Literal, NodeId, Op, ReduceOp, TensorType, UnaryOp,
};
use crate::rng::Rng;
use seqc_runtime::{DType, HostTensor, TensorData};

pub(super) type Tensors = BTreeMap<String, HostTensor>;

pub(super) fn c(v: &[i64]) -> Vec<DimExpr> {
    v.iter().map(|&d| DimExpr::constant(d)).collect()
}

pub(super) fn t_sym() -> DimExpr {
    DimExpr::sym("T")
}

pub(super) fn leaf(g: &mut Graph, name: &str, dtype: DType, shape: Vec<DimExpr>) -> NodeId {
    g.add_leaf(
        Op::Input { name: name.into() },
        TensorType::new(dtype, shape),
    )
}

pub(super) fn f32t(shape: &[usize], v: &[f64]) -> HostTensor {
    HostTensor::f32(shape.to_vec(), v.iter().map(|&x| x as f32).collect())
}

pub(super) fn i32t(shape: &[usize], v: &[i32]) -> HostTensor {
    HostTensor::new("", shape.to_vec(), TensorData::I32(v.to_vec())).unwrap()
}

pub(super) fn ints(h: &HostTensor) -> Vec<i64> {
    match &h.data {
        TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I64(v) => v.clone(),
        d => panic!("not an int tensor: {d:?}"),
    }
}

pub(super) fn ts(items: Vec<(&str, HostTensor)>) -> Tensors {
    items.into_iter().map(|(n, h)| (n.to_string(), h)).collect()
}

pub(super) fn dims(items: &[(&str, i64)]) -> DimBindings {
    items.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

/// Runs and returns output `y`.
pub(super) fn run_y(g: &Graph, d: &DimBindings, t: &Tensors) -> HostTensor {
    let mut out = run(g, d, t).unwrap_or_else(|e| panic!("run failed: {e}"));
    out.remove("y").expect("output y")
}

/// Relative closeness (f32 results against f64 references).
pub(super) fn assert_close(got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "lengths: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= rel * w.abs() || (g == w);
        assert!(
            ok,
            "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

pub(super) fn randn(seed: u64, n: usize) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.normal() as f32 as f64).collect()
}

pub(super) fn r32(x: f64) -> f64 {
    x as f32 as f64
}
