//! The tensor IR: a typed dataflow graph with symbolic shapes (see `op.rs` for the operator
//! semantics and `graph.rs` for the invariants). The IR knows nothing of the spec language,
//! egg, or any backend.

pub mod dim;
pub mod graph;
pub mod infer;
pub mod mask;
pub mod op;
pub mod types;

pub use dim::{DimBindings, DimExpr};
pub use graph::{Graph, Node, NodeId};
pub use op::{BinaryOp, Distribution, Literal, Op, ReduceOp, UnaryOp};
pub use types::{Shape, TensorType, Type};
pub mod parse;
pub mod print;
pub mod verify;
