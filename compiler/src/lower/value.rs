//! Values of the front end: tensors (IR nodes) and compile-time values that fold away.

use crate::ir::{DimExpr, NodeId};
use seqc_runtime::DType;

/// A value during lowering. Compile-time values (`Int`, `Float`, `Bool`, …) never become IR
/// nodes unless they meet a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An IR value, with the generation of the graph it lives in (scan bodies are graphs of
    /// their own; a tensor from another graph cannot be used there).
    Tensor(NodeId, u32),
    /// A compile-time integer, possibly symbolic (`T - 1`).
    Int(DimExpr),
    Float(f64),
    Bool(bool),
    Str(String),
    DType(DType),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A function, by name (an argument of `scan_fn`).
    Func(String),
    /// The result of an expression that already reported an error.
    Poison,
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Tensor(..) => "a tensor",
            Value::Int(d) if d.is_const() => "an integer",
            Value::Int(_) => "a symbolic dimension",
            Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Str(_) => "a string",
            Value::DType(_) => "a dtype",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Func(_) => "a function",
            Value::Poison => "an erroneous value",
        }
    }

    /// A value that exists at compile time only (no tensor inside).
    pub fn is_compile_time(&self) -> bool {
        match self {
            Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Str(_) | Value::Poison => {
                true
            }
            Value::List(xs) | Value::Tuple(xs) => xs.iter().all(Value::is_compile_time),
            _ => false,
        }
    }

    pub fn int(c: i64) -> Value {
        Value::Int(DimExpr::constant(c))
    }
}
