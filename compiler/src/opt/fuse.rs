//! Fusion, the optimizer's last pass: after extraction, elementwise chains — and an
//! elementwise chain feeding a reduction — are grouped into `fused` nodes, each one loop nest
//! that reads its operands and writes its result once.
//!
//! A producer joins its consumer's group when the consumer is its only user (and it is not a
//! graph output), so no value is computed twice and every grouping saves the producer's
//! write and read: fusion never needs the cost model's judgement. Producers are elementwise
//! operators (unary, binary, `select`, `cast`); consumers are elementwise operators and
//! reductions; a reduction is only ever a group's root, so a body has at most one, at its
//! output. Scalar constants and `iota`s (index grids, e.g. of causal masks) are copied into
//! the bodies that use them, so a mask is computed in the loop, never stored. A group holds at most
//! [`MAX_BODY`] operators and reads at most [`MAX_OPERANDS`] operands.
//!
//! This is a graph pass, not e-graph rules: grouping inside the e-graph creates one e-node
//! per partial group (every prefix of every chain, for every alternative of every member),
//! which on `hf_minimax` grew 550 e-nodes to 2,750 and hit the phase's time limit; and with
//! single-use producers there is nothing for extraction to choose.

use crate::ir::{Graph, NodeId, Op, Type};
use std::collections::BTreeMap;

/// The most operators one fused body holds (inputs and constants not counted).
pub const MAX_BODY: usize = 12;
/// The most operands one fused node reads.
pub const MAX_OPERANDS: usize = 8;

fn is_producer(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast { .. }
    )
}

fn is_consumer(op: &Op) -> bool {
    is_producer(op) || matches!(op, Op::Reduce { .. })
}

/// `g` with its fusion groups made `fused` nodes (same inputs, params and outputs, in order).
pub fn fuse(g: &Graph) -> Result<Graph, String> {
    let n = g.nodes.len();
    let mut users = vec![0usize; n];
    for node in &g.nodes {
        for x in &node.inputs {
            users[x.index()] += 1;
        }
    }
    for (_, id) in &g.outputs {
        users[id.index()] += 1;
    }
    // root[i]: the root of the group node i belongs to (itself when alone).
    let mut root: Vec<usize> = (0..n).collect();
    // The members of each root's group, ascending (a topological order).
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        if !is_consumer(&g.nodes[i].op) {
            continue;
        }
        let mut group = vec![i];
        for x in &g.nodes[i].inputs {
            let j = x.index();
            if users[j] != 1 || !is_producer(&g.nodes[j].op) || root[j] != j {
                continue;
            }
            let theirs = members.get(&j).cloned().unwrap_or_else(|| vec![j]);
            let mut joined = group.clone();
            joined.extend(&theirs);
            joined.sort_unstable();
            joined.dedup();
            if fits(g, &joined) {
                group = joined;
            }
        }
        if group.len() > 1 {
            for &m in &group {
                root[m] = i;
                members.remove(&m);
            }
            members.insert(i, group);
        }
    }
    rebuild(g, &root, &members)
}

/// The operands of a group: values from outside it that its members read, in order of first
/// use, scalar constants excepted (they are copied in).
fn operands(g: &Graph, group: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    for &m in group {
        for x in &g.nodes[m].inputs {
            let j = x.index();
            if !group.contains(&j) && !is_copied_in(g, j) && !out.contains(&j) {
                out.push(j);
            }
        }
    }
    out
}

/// Scalar constants and `iota`s are copied into the bodies that read them: a loop nest
/// computes them from its indices instead of reading them from memory.
fn is_copied_in(g: &Graph, i: usize) -> bool {
    matches!(g.nodes[i].op, Op::Const { .. } | Op::Iota { .. })
}

/// Within the limits, and reading at least one operand (a group of constants and iotas only
/// is left as it is).
fn fits(g: &Graph, group: &[usize]) -> bool {
    let n = operands(g, group).len();
    group.len() <= MAX_BODY && (1..=MAX_OPERANDS).contains(&n)
}

/// Emits every input and param, and the nodes and groups the outputs need (a constant copied
/// into every body that uses it is dropped from the outer graph).
fn rebuild(
    g: &Graph,
    root: &[usize],
    members: &BTreeMap<usize, Vec<usize>>,
) -> Result<Graph, String> {
    let mut live = vec![false; g.nodes.len()];
    for (_, id) in &g.outputs {
        live[id.index()] = true;
    }
    for i in (0..g.nodes.len()).rev() {
        if !live[i] || root[i] != i {
            continue;
        }
        match members.get(&i) {
            Some(group) => operands(g, group).into_iter().for_each(|j| live[j] = true),
            None => g.nodes[i]
                .inputs
                .iter()
                .for_each(|x| live[x.index()] = true),
        }
    }
    let mut out = Graph::new(g.dims.clone());
    let mut map: Vec<Option<NodeId>> = vec![None; g.nodes.len()];
    let get = |map: &[Option<NodeId>], i: usize| {
        map[i].ok_or_else(|| format!("internal: fusion reordered %{i}"))
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let leaf = matches!(node.op, Op::Input { .. } | Op::Param { .. });
        if root[i] != i || !(live[i] || leaf) {
            continue; // inside a group's body, or no longer needed
        }
        let id = match (&node.op, members.get(&i)) {
            (Op::Input { .. } | Op::Param { .. }, _) => {
                let Type::Tensor(t) = &node.ty else {
                    return Err(format!("internal: leaf %{i} has a tuple type"));
                };
                out.add_leaf(node.op.clone(), t.clone())
            }
            (_, Some(group)) => {
                let ops = operands(g, group);
                let body = body(g, group, &ops)?;
                let args = ops
                    .iter()
                    .map(|&j| get(&map, j))
                    .collect::<Result<Vec<_>, _>>()?;
                out.add(
                    Op::Fused {
                        body: Box::new(body),
                    },
                    args,
                )?
            }
            (op, None) => {
                let args = node
                    .inputs
                    .iter()
                    .map(|x| get(&map, x.index()))
                    .collect::<Result<Vec<_>, _>>()?;
                out.add(op.clone(), args)?
            }
        };
        map[i] = Some(id);
    }
    for (name, id) in &g.outputs {
        out.add_output(name, get(&map, id.index())?);
    }
    Ok(out)
}

/// The body of a group: one input per operand (in order), the members in order, constants
/// copied in; its output is the group's root (the last member).
fn body(g: &Graph, group: &[usize], ops: &[usize]) -> Result<Graph, String> {
    // The dims its types use: the operands', the members' and those of copied-in iotas.
    let mut symbols: Vec<String> = Vec::new();
    let copied = group
        .iter()
        .flat_map(|&m| g.nodes[m].inputs.iter().map(|x| x.index()))
        .filter(|&j| is_copied_in(g, j));
    for j in ops
        .iter()
        .copied()
        .chain(group.iter().copied())
        .chain(copied)
    {
        if let Type::Tensor(t) = &g.nodes[j].ty {
            symbols.extend(t.shape.iter().flat_map(|d| d.symbols()));
        }
    }
    let dims: Vec<String> = g
        .dims
        .iter()
        .filter(|d| symbols.contains(d))
        .cloned()
        .collect();
    let mut b = Graph::new(dims);
    let mut map: BTreeMap<usize, NodeId> = BTreeMap::new();
    for (k, &j) in ops.iter().enumerate() {
        let Type::Tensor(t) = &g.nodes[j].ty else {
            return Err(format!("internal: fused operand %{j} is a tuple"));
        };
        map.insert(
            j,
            b.add_leaf(
                Op::Input {
                    name: format!("x{k}"),
                },
                t.clone(),
            ),
        );
    }
    for &m in group {
        let mut args = Vec::new();
        for x in &g.nodes[m].inputs {
            let j = x.index();
            let id = match map.get(&j) {
                Some(id) => *id,
                None if is_copied_in(g, j) => {
                    let id = b.add(g.nodes[j].op.clone(), vec![])?;
                    map.insert(j, id);
                    id
                }
                None => return Err(format!("internal: fused member %{m} reads %{j}, unmapped")),
            };
            args.push(id);
        }
        let id = b.add(g.nodes[m].op.clone(), args)?;
        map.insert(m, id);
    }
    let last = *group.last().ok_or("internal: an empty fusion group")?;
    b.add_output("y", map[&last]);
    Ok(b)
}
