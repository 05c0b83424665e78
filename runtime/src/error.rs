//! Errors of the runtime crate: every one names the thing, what was expected and what was found.

use crate::DType;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid safetensors file: {reason}")]
    Safetensors { path: String, reason: String },
    #[error("tensor `{name}` in `{path}` has dtype {found}, which seqc does not support")]
    UnsupportedDType {
        path: String,
        name: String,
        found: String,
    },
    #[error("tensor `{name}`: expected {expected} elements for shape {shape:?}, found {found}")]
    ElementCount {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    #[error("tensor `{name}`: expected dtype {expected}, found {found}")]
    DTypeMismatch {
        name: String,
        expected: DType,
        found: DType,
    },
}
