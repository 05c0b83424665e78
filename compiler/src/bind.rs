//! Binding run-time tensors to a graph: dims from shapes, validation, seeded fill.
//!
//! [`bind_dims`] unifies the declared (symbolic) types of a graph's inputs and params with
//! the concrete tensors given; [`fill_missing`] makes up seeded random values for the rest;
//! [`check_tensors`] validates a complete set. Every error names the tensor, what was
//! expected (the declared type and what it evaluates to) and what was found.

use crate::ir::{DimBindings, DimExpr, Graph, NodeId, Op, TensorType};
use crate::rng::Rng;
use seqc_runtime::{DType, HostTensor, TensorData};
use std::collections::BTreeMap;
use thiserror::Error;

/// The largest value a dim may take, and the most elements a tensor may have (2^31).
pub const MAX_SIZE: i64 = 1 << 31;

/// Integer inputs that index nothing are filled uniformly in `[0, DEFAULT_INT_BOUND)`.
pub const DEFAULT_INT_BOUND: i64 = 16;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum BindError {
    #[error("tensor `{name}` is not an input or param of the graph (expected one of: {expected})")]
    UnknownTensor { name: String, expected: String },
    #[error("{kind} `{name}` is missing: expected {expected}, found no tensor of that name")]
    MissingTensor {
        kind: &'static str,
        name: String,
        expected: String,
    },
    #[error("{kind} `{name}` has the wrong dtype: expected {expected}, found {found}")]
    WrongDType {
        kind: &'static str,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{kind} `{name}` has the wrong shape: expected {expected}, found {found}")]
    WrongShape {
        kind: &'static str,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{kind} `{name}`: {conflict}: expected {expected}, found {found}")]
    DimConflict {
        kind: &'static str,
        name: String,
        /// E.g. "dim `T` is 64 (from --dims) but axis 1 of the tensor is 32".
        conflict: String,
        expected: String,
        found: String,
    },
    #[error(
        "--dims names `{name}`, which the graph does not declare (expected one of: {expected})"
    )]
    UnknownDim { name: String, expected: String },
    #[error(
        "dim `{name}` is not bound: no --dims value and no given tensor fixes it (it is used by {used_by}); give it with --dims {name}=<n>"
    )]
    UnboundDim { name: String, used_by: String },
    #[error("dim `{name}` would be {value} (from {from}): expected a size in 1..=2^31")]
    BadDim {
        name: String,
        value: i64,
        from: String,
    },
    #[error("{kind} `{name}`: expected {expected}, which has {found}")]
    BadShape {
        kind: &'static str,
        name: String,
        expected: String,
        found: String,
    },
    #[error(
        "tensor `{name}`: its shape {shape:?} needs {expected} elements, found a buffer of {found}"
    )]
    BadBuffer {
        name: String,
        shape: Vec<usize>,
        expected: String,
        found: usize,
    },
}

/// An input or param of a graph.
struct Leaf<'g> {
    kind: &'static str,
    name: &'g str,
    id: NodeId,
    ty: &'g TensorType,
}

fn leaves(graph: &Graph) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        let (kind, name) = match &n.op {
            Op::Input { name } => ("input", name),
            Op::Param { name } => ("param", name),
            _ => continue,
        };
        if let Some(ty) = n.ty.tensor() {
            out.push(Leaf {
                kind,
                name,
                id: NodeId(i as u32),
                ty,
            });
        }
    }
    out
}

/// `f32[B, T, 64] = f32[2, 8, 64]` (`?` for what is not bound yet); just the type when it
/// has no symbols.
fn show(ty: &TensorType, dims: &DimBindings) -> String {
    let vals: Vec<String> = ty
        .shape
        .iter()
        .map(|d| d.eval(dims).map_or("?".to_string(), |v| v.to_string()))
        .collect();
    let concrete = format!("{}[{}]", ty.dtype, vals.join(", "));
    let declared = ty.to_string();
    if declared == concrete {
        declared
    } else {
        format!("{declared} = {concrete}")
    }
}

fn show_found(h: &HostTensor) -> String {
    let dims: Vec<String> = h.shape.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", h.dtype(), dims.join(", "))
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known names nearest to `name` first (at most 8), as text.
fn candidates(name: &str, known: &[&str]) -> String {
    let mut ks: Vec<&str> = known.to_vec();
    ks.sort_by_key(|k| (distance(name, k), *k));
    ks.dedup();
    let mut shown: Vec<String> = ks.iter().take(8).map(|k| format!("`{k}`")).collect();
    if ks.len() > 8 {
        shown.push(format!("… ({} in all)", ks.len()));
    }
    if shown.is_empty() {
        "none".to_string()
    } else {
        shown.join(", ")
    }
}

fn check_unknown(graph: &Graph, tensors: &BTreeMap<String, HostTensor>) -> Result<(), BindError> {
    let ls = leaves(graph);
    let known: Vec<&str> = ls.iter().map(|l| l.name).collect();
    match tensors.keys().find(|n| !known.contains(&n.as_str())) {
        Some(name) => Err(BindError::UnknownTensor {
            name: name.clone(),
            expected: candidates(name, &known),
        }),
        None => Ok(()),
    }
}

/// Checks that the buffer holds `prod(shape)` elements and the dtype and rank are right.
fn check_basic(l: &Leaf, h: &HostTensor, dims: &DimBindings) -> Result<(), BindError> {
    let need = h
        .shape
        .iter()
        .try_fold(1u128, |a, &d| a.checked_mul(d as u128));
    if need != Some(h.data.len() as u128) {
        return Err(BindError::BadBuffer {
            name: l.name.to_string(),
            shape: h.shape.clone(),
            expected: need.map_or("too many".to_string(), |n| n.to_string()),
            found: h.data.len(),
        });
    }
    if h.dtype() != l.ty.dtype {
        return Err(BindError::WrongDType {
            kind: l.kind,
            name: l.name.to_string(),
            expected: show(l.ty, dims),
            found: show_found(h),
        });
    }
    if h.shape.len() != l.ty.rank() {
        return Err(BindError::WrongShape {
            kind: l.kind,
            name: l.name.to_string(),
            expected: format!("{} (rank {})", show(l.ty, dims), l.ty.rank()),
            found: format!("{} (rank {})", show_found(h), h.shape.len()),
        });
    }
    Ok(())
}

/// The symbol a dim is exactly, if it is one.
fn as_symbol(d: &DimExpr) -> Option<String> {
    let syms = d.symbols();
    (syms.len() == 1 && *d == DimExpr::sym(&syms[0])).then(|| syms[0].clone())
}

fn in_range(v: i64) -> bool {
    (1..=MAX_SIZE).contains(&v)
}

/// Binds dims: start from `given` (e.g. `--dims T=64,B=1`), then unify every input's (and
/// param's) declared symbolic shape with the provided tensor's concrete shape. A dim that is
/// exactly a symbol is bound from the tensor; dims that are expressions are checked after
/// binding. Tensors may be missing (they can be filled afterwards); only dims that neither
/// `given` nor a provided tensor fixes are errors.
pub fn bind_dims(
    graph: &Graph,
    given: &DimBindings,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<DimBindings, BindError> {
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    let mut dims = DimBindings::new();
    for (name, &v) in given {
        if !graph.dims.contains(name) {
            let known: Vec<&str> = graph.dims.iter().map(|s| s.as_str()).collect();
            return Err(BindError::UnknownDim {
                name: name.clone(),
                expected: candidates(name, &known),
            });
        }
        if !in_range(v) {
            return Err(BindError::BadDim {
                name: name.clone(),
                value: v,
                from: "--dims".into(),
            });
        }
        dims.insert(name.clone(), v);
        from.insert(name.clone(), "--dims".into());
    }
    check_unknown(graph, tensors)?;
    let ls = leaves(graph);
    for l in &ls {
        let Some(h) = tensors.get(l.name) else {
            continue;
        };
        check_basic(l, h, &dims)?;
        for (axis, (d, &n)) in l.ty.shape.iter().zip(&h.shape).enumerate() {
            let Some(sym) = as_symbol(d) else { continue };
            let here = format!("axis {axis} of {} `{}`", l.kind, l.name);
            let value = i64::try_from(n).unwrap_or(i64::MAX);
            if let Some(&bound) = dims.get(&sym) {
                if bound != value {
                    return Err(BindError::DimConflict {
                        kind: l.kind,
                        name: l.name.to_string(),
                        conflict: format!(
                            "dim `{sym}` is {bound} (from {}) but axis {axis} of the tensor is {value}",
                            from[&sym]
                        ),
                        expected: show(l.ty, &dims),
                        found: show_found(h),
                    });
                }
            } else if !in_range(value) {
                return Err(BindError::BadDim {
                    name: sym,
                    value,
                    from: here,
                });
            } else {
                dims.insert(sym.clone(), value);
                from.insert(sym, here);
            }
        }
    }
    // Every declared dim and every symbol of a leaf type must now be bound.
    let mut needed: Vec<String> = graph.dims.clone();
    for l in &ls {
        for d in &l.ty.shape {
            needed.extend(d.symbols());
        }
    }
    if let Some(name) = needed.iter().find(|n| !dims.contains_key(*n)) {
        let users: Vec<String> = ls
            .iter()
            .filter(|l| l.ty.shape.iter().any(|d| d.symbols().contains(name)))
            .map(|l| format!("{} `{}` ({})", l.kind, l.name, l.ty))
            .collect();
        return Err(BindError::UnboundDim {
            name: name.clone(),
            used_by: if users.is_empty() {
                "the graph's operators only".to_string()
            } else {
                users.join(", ")
            },
        });
    }
    // Expression dims of the given tensors, and the sizes of every leaf.
    for l in &ls {
        let shape = eval_shape(l, &dims)?;
        if let Some(h) = tensors.get(l.name)
            && shape != h.shape
        {
            return Err(BindError::WrongShape {
                kind: l.kind,
                name: l.name.to_string(),
                expected: show(l.ty, &dims),
                found: show_found(h),
            });
        }
    }
    Ok(dims)
}

/// The leaf's shape at `dims`: every dim bound, non-negative, at most 2^31 elements.
fn eval_shape(l: &Leaf, dims: &DimBindings) -> Result<Vec<usize>, BindError> {
    let mut shape = Vec::with_capacity(l.ty.rank());
    let mut count: i128 = 1;
    for d in &l.ty.shape {
        let v = d.eval(dims).map_err(|name| BindError::UnboundDim {
            name,
            used_by: format!("{} `{}` ({})", l.kind, l.name, l.ty),
        })?;
        let bad = |found: String| BindError::BadShape {
            kind: l.kind,
            name: l.name.to_string(),
            expected: show(l.ty, dims),
            found,
        };
        if v < 0 {
            return Err(bad(format!("a negative dim ({d} = {v})")));
        }
        count = count.saturating_mul(i128::from(v));
        if count > i128::from(MAX_SIZE) {
            return Err(bad("more than 2^31 elements".to_string()));
        }
        shape.push(v as usize);
    }
    Ok(shape)
}

/// Validates that every tensor matches its declared dtype and the shape evaluated at `dims`,
/// that nothing is unknown and nothing is missing.
pub fn check_tensors(
    graph: &Graph,
    dims: &DimBindings,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(), BindError> {
    check_unknown(graph, tensors)?;
    for l in leaves(graph) {
        let Some(h) = tensors.get(l.name) else {
            return Err(BindError::MissingTensor {
                kind: l.kind,
                name: l.name.to_string(),
                expected: show(l.ty, dims),
            });
        };
        check_basic(&l, h, dims)?;
        if eval_shape(&l, dims)? != h.shape {
            return Err(BindError::WrongShape {
                kind: l.kind,
                name: l.name.to_string(),
                expected: show(l.ty, dims),
                found: show_found(h),
            });
        }
    }
    Ok(())
}

/// Fills every input and param missing from `tensors` with seeded random values of its
/// declared type at `dims`, and returns the names it filled, sorted. Deterministic given
/// `seed`: each tensor draws from `Rng::new(seed ^ fnv1a(name))`.
///
/// * float params of rank ≥ 2: N(0, 1) / √fan_in, fan_in the last dim;
/// * float params of rank ≤ 1 (norm scales, biases): 1 + 0.1·N(0, 1);
/// * float inputs: N(0, 1);
/// * integer inputs and params: uniform in `[0, bound)`, where `bound` is the smallest dim
///   the values index (through `take`, `gather`, `scatter_add`, also via reshapes, slices,
///   casts and scan bodies), else [`DEFAULT_INT_BOUND`];
/// * bool inputs and params: all true.
pub fn fill_missing(
    graph: &Graph,
    dims: &DimBindings,
    tensors: &mut BTreeMap<String, HostTensor>,
    seed: u64,
) -> Result<Vec<String>, BindError> {
    let mut filled = Vec::new();
    for l in leaves(graph) {
        if tensors.contains_key(l.name) {
            continue;
        }
        let shape = eval_shape(&l, dims)?;
        let n: usize = shape.iter().product();
        let mut rng = Rng::new(seed ^ fnv1a(l.name));
        let dtype = l.ty.dtype;
        let data = if dtype.is_float() {
            let v: Vec<f64> = match (l.kind, shape.len()) {
                ("param", r) if r >= 2 => {
                    let scale = 1.0 / (shape[r - 1].max(1) as f64).sqrt();
                    (0..n).map(|_| rng.normal() * scale).collect()
                }
                ("param", _) => (0..n).map(|_| 1.0 + 0.1 * rng.normal()).collect(),
                _ => (0..n).map(|_| rng.normal()).collect(),
            };
            HostTensor::from_f64(dtype, shape.clone(), &v).data
        } else if dtype.is_int() {
            let bound = index_bound(graph, l.id, dims)
                .unwrap_or(DEFAULT_INT_BOUND)
                .max(1);
            let v = (0..n).map(|_| ((rng.uniform() * bound as f64) as i64).min(bound - 1));
            if dtype == DType::I32 {
                TensorData::I32(v.map(|x| x as i32).collect())
            } else {
                TensorData::I64(v.collect())
            }
        } else {
            TensorData::Bool(vec![true; n])
        };
        tensors.insert(l.name.to_string(), HostTensor { shape, data });
        filled.push(l.name.to_string());
    }
    filled.sort();
    filled.dedup();
    Ok(filled)
}

/// 64-bit FNV-1a of a name.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The smallest dim that the values of `start` (an integer leaf) index, following them
/// through value-preserving operators and into scan bodies.
fn index_bound(graph: &Graph, start: NodeId, dims: &DimBindings) -> Option<i64> {
    let mut carries = vec![false; graph.nodes.len()];
    *carries.get_mut(start.index())? = true;
    let mut bound: Option<i64> = None;
    let mut lower = |b: Option<i64>| {
        if let Some(b) = b {
            bound = Some(bound.map_or(b, |o: i64| o.min(b)));
        }
    };
    let dim_of = |x: NodeId, axis: usize| {
        graph
            .nodes
            .get(x.index())?
            .ty
            .tensor()?
            .shape
            .get(axis)?
            .eval(dims)
            .ok()
    };
    for (i, node) in graph.nodes.iter().enumerate().skip(start.index() + 1) {
        let carried = |x: &NodeId| carries.get(x.index()).copied().unwrap_or(false);
        let c = |k: usize| node.inputs.get(k).is_some_and(carried);
        let any = node.inputs.iter().any(carried);
        let carry = match &node.op {
            Op::Take { axis } | Op::Gather { axis } => {
                if c(1) {
                    lower(dim_of(node.inputs[0], *axis));
                }
                c(0)
            }
            Op::ScatterAdd { axis } => {
                if c(1) {
                    lower(dim_of(node.inputs[0], *axis));
                }
                c(0) || c(2)
            }
            Op::GroupedMatmul => {
                if c(2) {
                    lower(dim_of(node.inputs[1], 0));
                }
                false
            }
            Op::ScanFn { n_state, body, .. } => {
                let body_inputs: Vec<NodeId> = body.inputs().map(|(_, id)| id).collect();
                for (k, x) in node.inputs.iter().enumerate().skip(*n_state) {
                    if let (true, Some(&b)) = (carried(x), body_inputs.get(k)) {
                        lower(index_bound(body, b, dims));
                    }
                }
                false
            }
            Op::Select => c(1) || c(2),
            Op::Cast { to } => to.is_int() && any,
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::Sort { .. }
            | Op::Extract { .. } => any,
            Op::TopK { indices, .. } => !indices && any,
            _ => false,
        };
        carries[i] = carry;
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Op;

    type Tensors = BTreeMap<String, HostTensor>;

    fn sym(s: &str) -> DimExpr {
        DimExpr::sym(s)
    }

    /// Inputs x: f32[B, T, 64] and y: f32[2*T]; param w: f32[64, 8]; dims B, T.
    fn graph() -> Graph {
        let mut g = Graph::new(vec!["B".into(), "T".into()]);
        let two_t = DimExpr::constant(2).mul(&sym("T"));
        let x = TensorType::new(DType::F32, vec![sym("B"), sym("T"), 64.into()]);
        g.add_leaf(Op::Input { name: "x".into() }, x);
        g.add_leaf(
            Op::Input { name: "y".into() },
            TensorType::new(DType::F32, vec![two_t]),
        );
        let w = TensorType::new(DType::F32, vec![64.into(), 8.into()]);
        g.add_leaf(Op::Param { name: "w".into() }, w);
        g
    }

    fn zeros(shape: &[usize]) -> HostTensor {
        HostTensor::f32(shape.to_vec(), vec![0.0; shape.iter().product()])
    }

    fn ts(items: Vec<(&str, HostTensor)>) -> Tensors {
        items.into_iter().map(|(n, h)| (n.to_string(), h)).collect()
    }

    fn dims(items: &[(&str, i64)]) -> DimBindings {
        items.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    fn has_all(msg: &str, parts: &[&str]) {
        for p in parts {
            assert!(msg.contains(p), "`{msg}` does not mention `{p}`");
        }
    }

    #[test]
    fn binds_symbols_from_shapes_and_checks_expressions() {
        let g = graph();
        let t = ts(vec![("x", zeros(&[2, 5, 64])), ("y", zeros(&[10]))]);
        let d = bind_dims(&g, &DimBindings::new(), &t).unwrap();
        assert_eq!(d, dims(&[("B", 2), ("T", 5)]));
        // The same value given with --dims is fine.
        assert_eq!(bind_dims(&g, &dims(&[("T", 5)]), &t).unwrap(), d);
        // 2*T = 10 but y has 11.
        let t = ts(vec![("x", zeros(&[2, 5, 64])), ("y", zeros(&[11]))]);
        let e = bind_dims(&g, &DimBindings::new(), &t)
            .unwrap_err()
            .to_string();
        has_all(&e, &["`y`", "f32[2*T] = f32[10]", "f32[11]"]);
    }

    #[test]
    fn dims_from_given_values_only() {
        let g = graph();
        let d = bind_dims(&g, &dims(&[("B", 1), ("T", 3)]), &Tensors::new()).unwrap();
        assert_eq!(d, dims(&[("B", 1), ("T", 3)]));
    }

    #[test]
    fn unknown_tensor() {
        let g = graph();
        let e = bind_dims(&g, &DimBindings::new(), &ts(vec![("xx", zeros(&[1]))]));
        let e = e.unwrap_err().to_string();
        has_all(&e, &["`xx`", "expected one of: `x`"]);
        let t = ts(vec![("q", zeros(&[1]))]);
        let e = check_tensors(&g, &dims(&[("B", 1), ("T", 1)]), &t)
            .unwrap_err()
            .to_string();
        has_all(&e, &["`q`", "`w`", "`x`", "`y`"]);
    }

    #[test]
    fn missing_tensor() {
        let g = graph();
        let d = dims(&[("B", 2), ("T", 5)]);
        let t = ts(vec![("x", zeros(&[2, 5, 64])), ("y", zeros(&[10]))]);
        let e = check_tensors(&g, &d, &t).unwrap_err().to_string();
        has_all(
            &e,
            &["param `w`", "f32[64, 8]", "missing", "found no tensor"],
        );
    }

    #[test]
    fn wrong_dtype() {
        let g = graph();
        let bad = HostTensor::new("x", vec![2, 5, 64], TensorData::I32(vec![0; 640])).unwrap();
        let e = bind_dims(&g, &DimBindings::new(), &ts(vec![("x", bad)])).unwrap_err();
        assert!(matches!(e, BindError::WrongDType { .. }), "{e:?}");
        has_all(
            &e.to_string(),
            &["input `x`", "f32[B, T, 64]", "i32[2, 5, 64]"],
        );
    }

    #[test]
    fn wrong_rank_and_wrong_constant_dim() {
        let g = graph();
        let e = bind_dims(&g, &DimBindings::new(), &ts(vec![("x", zeros(&[2, 5]))]));
        let e = e.unwrap_err().to_string();
        has_all(
            &e,
            &[
                "input `x`",
                "f32[B, T, 64]",
                "rank 3",
                "f32[2, 5]",
                "rank 2",
            ],
        );
        let e = bind_dims(
            &g,
            &DimBindings::new(),
            &ts(vec![("x", zeros(&[2, 5, 32]))]),
        );
        let e = e.unwrap_err().to_string();
        has_all(
            &e,
            &[
                "input `x`",
                "f32[B, T, 64] = f32[2, 5, 64]",
                "f32[2, 5, 32]",
            ],
        );
        let d = dims(&[("B", 2), ("T", 5)]);
        let t = ts(vec![
            ("x", zeros(&[2, 5, 64])),
            ("y", zeros(&[10])),
            ("w", zeros(&[8, 64])),
        ]);
        let e = check_tensors(&g, &d, &t).unwrap_err().to_string();
        has_all(&e, &["param `w`", "f32[64, 8]", "f32[8, 64]"]);
    }

    #[test]
    fn dim_given_twice_inconsistently() {
        let g = graph();
        let t = ts(vec![("x", zeros(&[1, 32, 64]))]);
        let e = bind_dims(&g, &dims(&[("T", 64)]), &t).unwrap_err();
        assert!(matches!(e, BindError::DimConflict { .. }), "{e:?}");
        has_all(
            &e.to_string(),
            &[
                "input `x`",
                "`T` is 64",
                "--dims",
                "f32[B, T, 64] = f32[1, 64, 64]",
                "f32[1, 32, 64]",
            ],
        );
        // Two tensors that disagree: 2*T = 10 binds nothing, but x fixes T = 5 and z says 6.
        let mut g = graph();
        let z = TensorType::new(DType::F32, vec![sym("T")]);
        g.add_leaf(Op::Input { name: "z".into() }, z);
        let t = ts(vec![("x", zeros(&[1, 5, 64])), ("z", zeros(&[6]))]);
        let e = bind_dims(&g, &DimBindings::new(), &t)
            .unwrap_err()
            .to_string();
        has_all(
            &e,
            &[
                "input `z`",
                "`T` is 5",
                "axis 1 of input `x`",
                "f32[T] = f32[5]",
                "f32[6]",
            ],
        );
    }

    #[test]
    fn unknown_dims_name() {
        let g = graph();
        let e = bind_dims(&g, &dims(&[("Q", 3)]), &Tensors::new())
            .unwrap_err()
            .to_string();
        has_all(&e, &["`Q`", "`B`", "`T`"]);
    }

    #[test]
    fn unbound_dim_after_all_tensors() {
        let g = graph();
        // y: f32[2*T] cannot bind T; x (which could) is missing.
        let e = bind_dims(&g, &dims(&[("B", 1)]), &ts(vec![("y", zeros(&[10]))])).unwrap_err();
        assert!(
            matches!(&e, BindError::UnboundDim { name, .. } if name == "T"),
            "{e:?}"
        );
        has_all(
            &e.to_string(),
            &[
                "`T`",
                "input `x` (f32[B, T, 64])",
                "input `y` (f32[2*T])",
                "--dims T=",
            ],
        );
    }

    #[test]
    fn zero_negative_and_huge_dims() {
        let g = graph();
        let e = bind_dims(
            &g,
            &DimBindings::new(),
            &ts(vec![("x", zeros(&[2, 0, 64]))]),
        );
        let e = e.unwrap_err().to_string();
        has_all(&e, &["`T`", "0", "axis 1 of input `x`", "1..=2^31"]);
        for v in [0, -4, (1 << 31) + 1] {
            let e = bind_dims(&g, &dims(&[("T", v)]), &Tensors::new())
                .unwrap_err()
                .to_string();
            has_all(&e, &["`T`", &v.to_string(), "--dims", "1..=2^31"]);
        }
        // Each dim is fine, but x would have 2^16 · 2^16 · 64 elements.
        let e = bind_dims(
            &g,
            &dims(&[("B", 1 << 16), ("T", 1 << 16)]),
            &Tensors::new(),
        );
        let e = e.unwrap_err().to_string();
        has_all(
            &e,
            &[
                "input `x`",
                "f32[B, T, 64] = f32[65536, 65536, 64]",
                "more than 2^31 elements",
            ],
        );
    }

    #[test]
    fn buffer_not_matching_its_shape() {
        let g = graph();
        let broken = HostTensor {
            shape: vec![2, 5, 64],
            data: TensorData::F32(vec![0.0; 7]),
        };
        let e = bind_dims(&g, &DimBindings::new(), &ts(vec![("x", broken)]))
            .unwrap_err()
            .to_string();
        has_all(&e, &["`x`", "640", "7"]);
    }

    /// ids: i32[T] indexes a table param emb: f32[V, 4] (V = 3); mask: bool[T]; a scale
    /// param g: f32[4]; a float input h: f32[T, 4].
    fn lm_graph() -> Graph {
        let mut g = Graph::new(vec!["T".into()]);
        let ids = g.add_leaf(
            Op::Input { name: "ids".into() },
            TensorType::new(DType::I32, vec![sym("T")]),
        );
        let emb = TensorType::new(DType::F32, vec![3.into(), 4.into()]);
        let emb = g.add_leaf(Op::Param { name: "emb".into() }, emb);
        let mask = TensorType::new(DType::Bool, vec![sym("T")]);
        g.add_leaf(
            Op::Input {
                name: "mask".into(),
            },
            mask,
        );
        g.add_leaf(
            Op::Param { name: "g".into() },
            TensorType::new(DType::F32, vec![4.into()]),
        );
        g.add_leaf(
            Op::Input { name: "h".into() },
            TensorType::new(DType::F32, vec![sym("T"), 4.into()]),
        );
        // The ids pass through a reshape before the lookup.
        let r = g
            .add(
                Op::Reshape {
                    shape: vec![sym("T"), 1.into()],
                },
                vec![ids],
            )
            .unwrap();
        let y = g.add(Op::Take { axis: 0 }, vec![emb, r]).unwrap();
        g.add_output("y", y);
        g
    }

    #[test]
    fn fill_missing_is_deterministic_and_in_range() {
        let g = lm_graph();
        let d = bind_dims(&g, &dims(&[("T", 200)]), &Tensors::new()).unwrap();
        let mut a = Tensors::new();
        let filled = fill_missing(&g, &d, &mut a, 7).unwrap();
        assert_eq!(filled, vec!["emb", "g", "h", "ids", "mask"]);
        check_tensors(&g, &d, &a).unwrap();
        let mut b = Tensors::new();
        fill_missing(&g, &d, &mut b, 7).unwrap();
        assert_eq!(a, b);
        let mut c = Tensors::new();
        fill_missing(&g, &d, &mut c, 8).unwrap();
        assert_ne!(a["h"], c["h"]);

        let TensorData::I32(ids) = &a["ids"].data else {
            panic!("ids are i32")
        };
        assert!(ids.iter().all(|&i| (0..3).contains(&i)), "{ids:?}");
        assert!(
            (0..3).all(|v| ids.contains(&v)),
            "all of 0..3 appear in 200 draws"
        );
        assert_eq!(a["mask"].data, TensorData::Bool(vec![true; 200]));
        // Norm-like params are near 1, matrices ~ N(0, 1/fan_in).
        assert!(a["g"].to_f64_vec().iter().all(|&v| (0.5..1.5).contains(&v)));
        let emb = a["emb"].to_f64_vec();
        assert!(emb.iter().all(|v| v.abs() < 0.5 * 6.0) && emb.iter().any(|&v| v != 0.0));

        // Given tensors are kept; only the rest is filled.
        let mut part = ts(vec![("h", HostTensor::f32(vec![200, 4], vec![1.0; 800]))]);
        let filled = fill_missing(&g, &d, &mut part, 7).unwrap();
        assert_eq!(filled, vec!["emb", "g", "ids", "mask"]);
        assert_eq!(part["h"].to_f64_vec(), vec![1.0; 800]);
    }

    #[test]
    fn int_inputs_that_index_nothing_use_the_default_bound() {
        let mut g = Graph::new(vec![]);
        let k = TensorType::new(DType::I64, vec![1000.into()]);
        g.add_leaf(Op::Input { name: "k".into() }, k);
        let mut t = Tensors::new();
        fill_missing(&g, &DimBindings::new(), &mut t, 1).unwrap();
        let TensorData::I64(v) = &t["k"].data else {
            panic!("k is i64")
        };
        assert!(v.iter().all(|&i| (0..DEFAULT_INT_BOUND).contains(&i)));
        assert!(v.contains(&(DEFAULT_INT_BOUND - 1)));
    }

    #[test]
    fn fill_needs_bound_dims() {
        let g = lm_graph();
        let e = fill_missing(&g, &DimBindings::new(), &mut Tensors::new(), 0).unwrap_err();
        has_all(&e.to_string(), &["`T`", "ids"]);
    }
}
