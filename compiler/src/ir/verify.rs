//! The IR verifier: checks the invariants listed in graph.rs. [`verify`] checks, in this
//! order, for a graph and recursively for every `scan_fn` body:
//!
//! 1. dim names are distinct;
//! 2. for each node `%n` in arena order:
//!    - topological order: every input is a node `%k` with `k < n`;
//!    - `input`/`param` leaves have no inputs and a tensor type, and no two inputs (no two
//!      params) share a name;
//!    - a tuple-typed value is consumed only by `extract`;
//!    - every dim symbol in the node's attributes (`shape`, `start`, `end`, `before`, `after`,
//!      `k`) and in its type is declared in the graph's `dims`;
//!    - a `scan_fn` body declares only dims of the enclosing graph (it may copy them all)
//!      and itself verifies;
//!    - every non-leaf node's stored type equals [`infer`] of its inputs' stored types (for
//!      `scan_fn`, this is where the body's inputs and outputs are matched to the scan);
//! 3. outputs have distinct names, refer to existing nodes, and are tensors.
//!
//! The first broken invariant is reported, naming the node (`%id` and op) and what was
//! expected and found; errors inside a body are wrapped in [`VerifyError::Body`].

use super::dim::DimExpr;
use super::graph::{Graph, Node, NodeId};
use super::infer::infer;
use super::op::Op;
use super::types::Type;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("dim `{name}` is declared twice")]
    DuplicateDim { name: String },
    #[error(
        "{node} (`{op}`): input {input} is not an earlier node (the arena must be in topological order: expected an id below {node})"
    )]
    NotTopological {
        node: NodeId,
        op: &'static str,
        input: NodeId,
    },
    #[error("{node} (`{op}`): a leaf takes no inputs, found {found}")]
    LeafHasInputs {
        node: NodeId,
        op: &'static str,
        found: usize,
    },
    #[error("{node} (`{op}`): a leaf must have a tensor type, found {found}")]
    LeafNotTensor {
        node: NodeId,
        op: &'static str,
        found: Type,
    },
    #[error("{node} (`{op}`): the name \"{name}\" is already used by {op} {first}")]
    DuplicateName {
        node: NodeId,
        op: &'static str,
        name: String,
        first: NodeId,
    },
    #[error(
        "{node} (`{op}`): input {input} is a tuple {found}; only `extract` may consume a tuple"
    )]
    TupleUse {
        node: NodeId,
        op: &'static str,
        input: NodeId,
        found: Type,
    },
    #[error("{node} (`{op}`): dim `{symbol}` in its {place} is not declared in graph({declared})")]
    UndeclaredDim {
        node: NodeId,
        op: &'static str,
        symbol: String,
        place: String,
        declared: String,
    },
    #[error(
        "{node} (`{op}`): its body declares dim `{symbol}`, which the enclosing graph({declared}) does not"
    )]
    BodyDimUndeclared {
        node: NodeId,
        op: &'static str,
        symbol: String,
        declared: String,
    },
    #[error("{node} (`{op}`) body: {error}")]
    Body {
        node: NodeId,
        op: &'static str,
        error: Box<VerifyError>,
    },
    #[error("{node} (`{op}`): its inputs do not type-check: {message}")]
    Infer {
        node: NodeId,
        op: &'static str,
        message: String,
    },
    #[error("{node} (`{op}`): stored type is {found}, but inference gives {expected}")]
    TypeMismatch {
        node: NodeId,
        op: &'static str,
        expected: Type,
        found: Type,
    },
    #[error("output \"{name}\" is declared twice")]
    DuplicateOutput { name: String },
    #[error("output \"{name}\" refers to {node}, but the graph has only {count} node(s)")]
    OutputUndefined {
        name: String,
        node: NodeId,
        count: usize,
    },
    #[error("output \"{name}\" ({node}) must be a tensor, found {found}")]
    OutputNotTensor {
        name: String,
        node: NodeId,
        found: Type,
    },
}

type R = Result<(), VerifyError>;

/// Checks every invariant of `g` (see the module doc); the error names the first broken one.
pub fn verify(g: &Graph) -> R {
    for (i, d) in g.dims.iter().enumerate() {
        if g.dims[..i].contains(d) {
            return Err(VerifyError::DuplicateDim { name: d.clone() });
        }
    }
    let mut leaf_names: BTreeMap<(&'static str, &str), NodeId> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        verify_node(g, NodeId(i as u32), n, &mut leaf_names)?;
    }
    for (k, (name, id)) in g.outputs.iter().enumerate() {
        if g.outputs[..k].iter().any(|(o, _)| o == name) {
            return Err(VerifyError::DuplicateOutput { name: name.clone() });
        }
        let Some(n) = g.nodes.get(id.index()) else {
            return Err(VerifyError::OutputUndefined {
                name: name.clone(),
                node: *id,
                count: g.nodes.len(),
            });
        };
        if let Type::Tuple(_) = n.ty {
            return Err(VerifyError::OutputNotTensor {
                name: name.clone(),
                node: *id,
                found: n.ty.clone(),
            });
        }
    }
    Ok(())
}

fn verify_node<'g>(
    g: &'g Graph,
    node: NodeId,
    n: &'g Node,
    leaf_names: &mut BTreeMap<(&'static str, &'g str), NodeId>,
) -> R {
    let op = n.op.name();
    if let Some(&input) = n.inputs.iter().find(|x| x.0 >= node.0) {
        return Err(VerifyError::NotTopological { node, op, input });
    }
    match &n.op {
        Op::Input { name } | Op::Param { name } => {
            if !n.inputs.is_empty() {
                let found = n.inputs.len();
                return Err(VerifyError::LeafHasInputs { node, op, found });
            }
            if let Type::Tuple(_) = n.ty {
                let found = n.ty.clone();
                return Err(VerifyError::LeafNotTensor { node, op, found });
            }
            if let Some(&first) = leaf_names.get(&(op, name.as_str())) {
                let name = name.clone();
                return Err(VerifyError::DuplicateName {
                    node,
                    op,
                    name,
                    first,
                });
            }
            leaf_names.insert((op, name.as_str()), node);
        }
        Op::Extract { .. } => {}
        _ => {
            for &input in &n.inputs {
                if let found @ Type::Tuple(_) = g.ty(input) {
                    let found = found.clone();
                    return Err(VerifyError::TupleUse {
                        node,
                        op,
                        input,
                        found,
                    });
                }
            }
        }
    }
    for (place, d) in attribute_dims(&n.op) {
        check_dims(g, node, op, &format!("attribute `{place}`"), d)?;
    }
    let shapes: Vec<&Vec<DimExpr>> = match &n.ty {
        Type::Tensor(t) => vec![&t.shape],
        Type::Tuple(ts) => ts.iter().map(|t| &t.shape).collect(),
    };
    for d in shapes.into_iter().flatten() {
        check_dims(g, node, op, "type", d)?;
    }
    if let Op::ScanFn { body, .. } | Op::Fused { body } = &n.op {
        if let Some(symbol) = body.dims.iter().find(|d| !g.dims.contains(d)) {
            return Err(VerifyError::BodyDimUndeclared {
                node,
                op,
                symbol: symbol.clone(),
                declared: g.dims.join(", "),
            });
        }
        verify(body).map_err(|e| VerifyError::Body {
            node,
            op,
            error: Box::new(e),
        })?;
    }
    if matches!(n.op, Op::Input { .. } | Op::Param { .. }) {
        return Ok(());
    }
    let tys: Vec<&Type> = n.inputs.iter().map(|x| g.ty(*x)).collect();
    let expected =
        infer(&n.op, &tys).map_err(|message| VerifyError::Infer { node, op, message })?;
    if expected != n.ty {
        let found = n.ty.clone();
        return Err(VerifyError::TypeMismatch {
            node,
            op,
            expected,
            found,
        });
    }
    Ok(())
}

/// The symbolic attributes of `op`, named as in the text form.
fn attribute_dims(op: &Op) -> Vec<(&'static str, &DimExpr)> {
    match op {
        Op::Iota { shape, .. }
        | Op::Random { shape, .. }
        | Op::Reshape { shape }
        | Op::Broadcast { shape } => shape.iter().map(|d| ("shape", d)).collect(),
        Op::Slice { start, end, .. } => vec![("start", start), ("end", end)],
        Op::Pad { before, after, .. } => vec![("before", before), ("after", after)],
        Op::TopK { k, .. } => vec![("k", k)],
        _ => vec![],
    }
}

fn check_dims(g: &Graph, node: NodeId, op: &'static str, place: &str, d: &DimExpr) -> R {
    match d.symbols().into_iter().find(|s| !g.dims.contains(s)) {
        Some(symbol) => Err(VerifyError::UndeclaredDim {
            node,
            op,
            symbol,
            place: place.to_string(),
            declared: g.dims.join(", "),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
