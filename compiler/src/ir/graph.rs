//! The tensor IR graph: an arena of nodes addressed by typed handles, in topological order.
//!
//! Invariants (checked by [`super::verify`]):
//! 1. every input of node `n` is a node with a smaller id (the arena is topologically sorted);
//! 2. every node's type equals what [`super::infer::infer`] computes from its inputs'
//!    types (inputs and params carry their declared types);
//! 3. input names are unique, param names are unique, output names are unique;
//! 4. every dim symbol used in a type is declared in `dims`;
//! 5. tuple-typed values are used only by `Extract`, and outputs are tensors;
//! 6. a `ScanFn` body is itself a valid graph whose inputs and outputs match the scan.

use super::infer::infer;
use super::op::Op;
use super::types::{TensorType, Type};
use std::fmt;

/// A handle to a node of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub ty: Type,
}

/// A dataflow graph with named symbolic dims, inputs, params and outputs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// Symbolic dims bound at run time, in declaration order.
    pub dims: Vec<String>,
    pub nodes: Vec<Node>,
    /// Named outputs, in declaration order.
    pub outputs: Vec<(String, NodeId)>,
}

impl Graph {
    pub fn new(dims: Vec<String>) -> Self {
        Graph {
            dims,
            nodes: Vec::new(),
            outputs: Vec::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn ty(&self, id: NodeId) -> &Type {
        &self.nodes[id.index()].ty
    }

    /// The tensor type of a value (panics on a tuple; callers check first).
    pub fn tensor_ty(&self, id: NodeId) -> &TensorType {
        self.ty(id).tensor().expect("tensor-typed value")
    }

    fn push(&mut self, op: Op, inputs: Vec<NodeId>, ty: Type) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node { op, inputs, ty });
        id
    }

    /// Adds an input or param leaf with its declared type.
    pub fn add_leaf(&mut self, op: Op, ty: TensorType) -> NodeId {
        debug_assert!(matches!(op, Op::Input { .. } | Op::Param { .. }));
        self.push(op, Vec::new(), Type::Tensor(ty))
    }

    /// Adds a node, inferring its type; the error says what is wrong with the operands.
    pub fn add(&mut self, op: Op, inputs: Vec<NodeId>) -> Result<NodeId, String> {
        let tys: Vec<&Type> = inputs.iter().map(|i| self.ty(*i)).collect();
        let ty = infer(&op, &tys)?;
        Ok(self.push(op, inputs, ty))
    }

    pub fn add_output(&mut self, name: &str, id: NodeId) {
        self.outputs.push((name.to_string(), id));
    }

    /// Input leaves in order, as (name, id).
    pub fn inputs(&self) -> impl Iterator<Item = (&str, NodeId)> {
        self.leaves(|op| match op {
            Op::Input { name } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Param leaves in order, as (name, id).
    pub fn params(&self) -> impl Iterator<Item = (&str, NodeId)> {
        self.leaves(|op| match op {
            Op::Param { name } => Some(name.as_str()),
            _ => None,
        })
    }

    fn leaves<'a>(
        &'a self,
        f: impl Fn(&'a Op) -> Option<&'a str> + 'a,
    ) -> impl Iterator<Item = (&'a str, NodeId)> + 'a {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(move |(i, n)| f(&n.op).map(|s| (s, NodeId(i as u32))))
    }
}
