//! Expands the optimizer's `fused` groups before lowering: each `fused` node is replaced by
//! its body's nodes, the body's inputs bound to the group's operands in order, so that
//! lowering's own elementwise fusion (`lower.rs`) turns the chain back into one loop nest
//! and every node rounds exactly where the interpreter's evaluation of the body rounds.

use super::KernelError;
use crate::ir::{Graph, Node, NodeId, Op};
use std::borrow::Cow;

/// `g` with every `fused` node (at any depth) replaced by its body; `g` itself when it has
/// none.
pub(super) fn expand_fused(g: &Graph) -> Result<Cow<'_, Graph>, KernelError> {
    if !g.nodes.iter().any(|n| matches!(n.op, Op::Fused { .. })) {
        return Ok(Cow::Borrowed(g));
    }
    let mut out = Graph::new(g.dims.clone());
    let mut map: Vec<NodeId> = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let inputs: Vec<NodeId> = n.inputs.iter().map(|x| map[x.index()]).collect();
        let id = match &n.op {
            Op::Fused { body } => {
                let at = NodeId(i as u32);
                let body = expand_fused(body)?;
                splice(&mut out, &body, &inputs, at, n)?
            }
            _ => push(&mut out, n.op.clone(), inputs, n),
        };
        map.push(id);
    }
    out.outputs = g
        .outputs
        .iter()
        .map(|(name, id)| (name.clone(), map[id.index()]))
        .collect();
    Ok(Cow::Owned(out))
}

fn push(g: &mut Graph, op: Op, inputs: Vec<NodeId>, like: &Node) -> NodeId {
    g.nodes.push(Node {
        op,
        inputs,
        ty: like.ty.clone(),
    });
    NodeId(g.nodes.len() as u32 - 1)
}

/// Appends `body`'s nodes to `g` with its `input` leaves bound to `args`; returns the node
/// holding the body's result.
fn splice(
    g: &mut Graph,
    body: &Graph,
    args: &[NodeId],
    at: NodeId,
    fused: &Node,
) -> Result<NodeId, KernelError> {
    let invalid = |msg: String| KernelError::Invalid {
        node: at,
        op: "fused".to_string(),
        msg,
    };
    let mut map: Vec<NodeId> = Vec::with_capacity(body.nodes.len());
    let mut next_arg = 0;
    for n in &body.nodes {
        let id = match &n.op {
            Op::Input { .. } => {
                let a = *args.get(next_arg).ok_or_else(|| {
                    invalid(format!(
                        "the body has more inputs than the {} operands",
                        args.len()
                    ))
                })?;
                if g.node(a).ty != n.ty {
                    return Err(invalid(format!(
                        "body input {next_arg} has type {}, operand has {}",
                        n.ty,
                        g.node(a).ty
                    )));
                }
                next_arg += 1;
                a
            }
            Op::Param { name } => {
                return Err(invalid(format!(
                    "the body holds param `{name}`; expected only elementwise operators, \
                     constants and one reduction"
                )));
            }
            op => {
                let inputs = n.inputs.iter().map(|x| map[x.index()]).collect();
                push(g, op.clone(), inputs, n)
            }
        };
        map.push(id);
    }
    if next_arg != args.len() {
        return Err(invalid(format!(
            "the body has {next_arg} inputs, expected {} (one per operand)",
            args.len()
        )));
    }
    let [(_, result)] = body.outputs.as_slice() else {
        return Err(invalid(format!(
            "the body has {} outputs, expected exactly one",
            body.outputs.len()
        )));
    };
    let r = map[result.index()];
    if g.node(r).ty != fused.ty {
        return Err(invalid(format!(
            "the body returns {}, the node has type {}",
            g.node(r).ty,
            fused.ty
        )));
    }
    Ok(r)
}
