//! The e-class analysis: every e-class carries the IR [`Type`] of its value, computed by the
//! single type-inference function [`infer`] from the children's types (leaves carry their
//! declared types). Rules add only nodes whose types they have inferred first, so `make`
//! never sees an ill-typed node, and a union never joins values of different types.

use super::lang::TNode;
use crate::ir::Type;
use crate::ir::infer::infer;
use egg::{Analysis, DidMerge, EGraph, Id};

/// The e-graph of this optimizer.
pub type EG = EGraph<TNode, TypeAnalysis>;

/// Types as e-class data.
#[derive(Clone, Copy, Debug, Default)]
pub struct TypeAnalysis;

/// The type of `node` given its children's types; `Err` says why it does not type-check.
pub fn node_type(egraph: &EG, node: &TNode) -> Result<Type, String> {
    if let Some(ty) = node.op.leaf_ty() {
        return Ok(Type::Tensor(ty.clone()));
    }
    let tys: Vec<&Type> = node.children.iter().map(|c| &egraph[*c].data).collect();
    infer(node.op.op(), &tys)
}

impl Analysis<TNode> for TypeAnalysis {
    type Data = Type;

    fn make(egraph: &mut EG, enode: &TNode, _id: Id) -> Type {
        node_type(egraph, enode).unwrap_or_else(|e| {
            panic!(
                "internal: an e-node that does not type-check reached the e-graph ({}): {e}",
                enode.op.key()
            )
        })
    }

    /// A union joins equal values, so their types are equal: anything else is a bug in a
    /// rule (Glenside's lesson: a shape must never change after a merge).
    fn merge(&mut self, a: &mut Type, b: Type) -> DidMerge {
        assert_eq!(
            *a, b,
            "internal: a rewrite joined e-classes of different types"
        );
        DidMerge(false, false)
    }
}
