//! The e-graph language: an e-node is an IR operator (with all its attributes) and its
//! children e-classes, so every IR operator is representable without a per-operator enum.
//!
//! [`OpKey`] wraps an [`Op`] behind an `Arc` together with a canonical key text; equality,
//! ordering and hashing use the key alone. The key is the operator's `Debug` text, which
//! names every attribute exactly (floats in shortest round-trip form, dims in canonical
//! form); `input`/`param` leaves append their declared type, which inference cannot recover.
//! A `scan_fn` is an opaque operator: its body is part of its key and its children are its
//! operands.

use crate::ir::{Op, TensorType};
use egg::{Id, Language};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

struct OpData {
    key: String,
    op: Op,
    /// The declared type of an `input` or `param` leaf.
    leaf_ty: Option<TensorType>,
}

/// An IR operator as an e-node label.
#[derive(Clone)]
pub struct OpKey(Arc<OpData>);

impl OpKey {
    /// Any operator but an `input` or `param` leaf.
    pub fn new(op: Op) -> Self {
        debug_assert!(!matches!(op, Op::Input { .. } | Op::Param { .. }));
        OpKey(Arc::new(OpData {
            key: format!("{op:?}"),
            op,
            leaf_ty: None,
        }))
    }

    /// An `input` or `param` leaf with its declared type.
    pub fn leaf(op: Op, ty: TensorType) -> Self {
        debug_assert!(matches!(op, Op::Input { .. } | Op::Param { .. }));
        OpKey(Arc::new(OpData {
            key: format!("{op:?} : {ty}"),
            op,
            leaf_ty: Some(ty),
        }))
    }

    pub fn op(&self) -> &Op {
        &self.0.op
    }

    pub fn leaf_ty(&self) -> Option<&TensorType> {
        self.0.leaf_ty.as_ref()
    }

    /// The canonical key text.
    pub fn key(&self) -> &str {
        &self.0.key
    }

    /// The operator's name in the IR text form (`einsum`, `transpose`, …).
    pub fn name(&self) -> &'static str {
        self.0.op.name()
    }
}

impl PartialEq for OpKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.key == other.0.key
    }
}

impl Eq for OpKey {}

impl PartialOrd for OpKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OpKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

impl Hash for OpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state)
    }
}

impl fmt::Debug for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.key)
    }
}

/// An e-node: an operator applied to e-classes, in operand order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TNode {
    pub op: OpKey,
    pub children: Vec<Id>,
}

impl TNode {
    pub fn new(op: OpKey, children: Vec<Id>) -> Self {
        TNode { op, children }
    }
}

impl Language for TNode {
    /// The operator name: e-classes are indexed by it, and rules search by it.
    type Discriminant = &'static str;

    fn discriminant(&self) -> Self::Discriminant {
        self.op.name()
    }

    fn matches(&self, other: &Self) -> bool {
        self.op == other.op && self.children.len() == other.children.len()
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}

impl fmt::Display for TNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.key())
    }
}
