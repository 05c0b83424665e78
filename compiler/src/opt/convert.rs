//! IR ↔ e-graph. [`to_egraph`] adds every node of a graph (hash-consing merges identical
//! subexpressions); [`to_graph`] rebuilds an IR graph from an extraction through
//! `Graph::add`, so every type is re-inferred. The inputs and params come first in their
//! original order (the signature is unchanged even if one becomes unused); the other nodes
//! follow in a topological order that keeps the original order where it can: among the
//! nodes whose operands are built, the one whose e-class held the earliest original node goes
//! first, and a new e-class ranks with its latest operand (so it follows its operands).

use super::analysis::{EG, TypeAnalysis};
use super::extract::Choice;
use super::lang::{OpKey, TNode};
use crate::ir::{Graph, NodeId, Op, TensorType};
use egg::Id;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// A graph in an e-graph: the e-classes of its outputs and its leaves.
pub struct Converted {
    pub egraph: EG,
    pub dims: Vec<String>,
    /// Output names and their e-classes, in order.
    pub outputs: Vec<(String, Id)>,
    /// Input and param leaves in their original order, with their e-classes.
    pub leaves: Vec<(Op, TensorType, Id)>,
    /// The e-class of every original node, by original index.
    pub origin: Vec<Id>,
}

/// Adds every node of `g` to a fresh e-graph.
pub fn to_egraph(g: &Graph) -> Converted {
    let mut egraph = EG::new(TypeAnalysis);
    let mut ids: Vec<Id> = Vec::with_capacity(g.nodes.len());
    let mut leaves = Vec::new();
    for n in &g.nodes {
        let node = match (&n.op, n.ty.tensor()) {
            (Op::Input { .. } | Op::Param { .. }, Some(t)) => {
                TNode::new(OpKey::leaf(n.op.clone(), t.clone()), vec![])
            }
            _ => TNode::new(
                OpKey::new(n.op.clone()),
                n.inputs.iter().map(|i| ids[i.index()]).collect(),
            ),
        };
        let id = egraph.add(node);
        if let (Op::Input { .. } | Op::Param { .. }, Some(t)) = (&n.op, n.ty.tensor()) {
            leaves.push((n.op.clone(), t.clone(), id));
        }
        ids.push(id);
    }
    egraph.rebuild();
    Converted {
        egraph,
        dims: g.dims.clone(),
        outputs: g
            .outputs
            .iter()
            .map(|(name, id)| (name.clone(), ids[id.index()]))
            .collect(),
        leaves,
        origin: ids,
    }
}

/// Rebuilds a graph from the chosen e-nodes; the error names what failed to type-check.
pub fn to_graph(c: &Converted, choice: &Choice) -> Result<Graph, String> {
    let eg = &c.egraph;
    let mut g = Graph::new(c.dims.clone());
    let mut done: BTreeMap<Id, NodeId> = BTreeMap::new();
    for (op, ty, id) in &c.leaves {
        let n = g.add_leaf(op.clone(), ty.clone());
        done.insert(eg.find(*id), n);
    }
    // The e-classes to build: those reachable from the outputs through the choice.
    let mut todo: BTreeSet<Id> = BTreeSet::new();
    let mut stack: Vec<Id> = c.outputs.iter().map(|(_, r)| eg.find(*r)).collect();
    while let Some(cls) = stack.pop() {
        if done.contains_key(&cls) || !todo.insert(cls) {
            continue;
        }
        let node = choice
            .get(&cls)
            .ok_or_else(|| format!("e-class {cls} was not extracted"))?;
        stack.extend(node.children.iter().map(|ch| eg.find(*ch)));
    }
    // Kahn's algorithm, ready e-classes ordered by (rank, id).
    let mut rank: BTreeMap<Id, usize> = BTreeMap::new();
    for (i, id) in c.origin.iter().enumerate() {
        rank.entry(eg.find(*id)).or_insert(i);
    }
    let mut waiting: BTreeMap<Id, usize> = BTreeMap::new();
    let mut users: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
    let mut ready: BinaryHeap<Reverse<(usize, Id)>> = BinaryHeap::new();
    for &cls in &todo {
        let kids: BTreeSet<Id> = choice[&cls]
            .children
            .iter()
            .map(|ch| eg.find(*ch))
            .filter(|ch| todo.contains(ch))
            .collect();
        for k in &kids {
            users.entry(*k).or_default().push(cls);
        }
        if kids.is_empty() {
            ready.push(Reverse((rank_of(&rank, eg, choice, cls), cls)));
        } else {
            waiting.insert(cls, kids.len());
        }
    }
    while let Some(Reverse((r, cls))) = ready.pop() {
        let node = &choice[&cls];
        let inputs: Vec<NodeId> = node
            .children
            .iter()
            .map(|ch| {
                done.get(&eg.find(*ch))
                    .copied()
                    .ok_or_else(|| format!("e-class {ch} is used before it is built"))
            })
            .collect::<Result<_, _>>()?;
        let id = g
            .add(node.op.op().clone(), inputs)
            .map_err(|e| format!("`{}` does not type-check: {e}", node.op.name()))?;
        done.insert(cls, id);
        rank.entry(cls).or_insert(r);
        for u in users.remove(&cls).unwrap_or_default() {
            let w = waiting.get_mut(&u).expect("a user waits");
            *w -= 1;
            if *w == 0 {
                waiting.remove(&u);
                ready.push(Reverse((rank_of(&rank, eg, choice, u), u)));
            }
        }
    }
    if let Some(cls) = waiting.keys().next() {
        return Err(format!("the extracted choice is cyclic at e-class {cls}"));
    }
    for (name, root) in &c.outputs {
        g.add_output(name, done[&eg.find(*root)]);
    }
    Ok(g)
}

/// An e-class's rank: that of its earliest original node, else that of its latest operand.
fn rank_of(rank: &BTreeMap<Id, usize>, eg: &EG, choice: &Choice, cls: Id) -> usize {
    rank.get(&cls).copied().unwrap_or_else(|| {
        choice[&cls]
            .children
            .iter()
            .filter_map(|ch| rank.get(&eg.find(*ch)).copied())
            .max()
            .unwrap_or(0)
    })
}
