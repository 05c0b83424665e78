//! Errors of loading and running a compiled model: each names the tensor, dim or kernel, what
//! was expected and what was found.

use crate::RuntimeError;
use crate::artifact::ArtifactError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("weights: the model needs `{name}` ({expected}), which no weights file provides")]
    MissingWeight { name: String, expected: String },
    #[error("weights: `{name}` is not a parameter of the model (its parameters: {known})")]
    ExtraWeight { name: String, known: String },
    #[error("weights: `{name}` is given twice ({first} and {second})")]
    DuplicateWeight {
        name: String,
        first: String,
        second: String,
    },
    #[error("input `{name}` ({expected}) was not given")]
    MissingInput { name: String, expected: String },
    #[error("`{name}` is not an input of the model (its inputs: {known})")]
    ExtraInput { name: String, known: String },
    #[error("`{name}` is not an output of the model (its outputs: {known})")]
    ExtraOutput { name: String, known: String },
    #[error("{kind} `{name}`: expected {expected}, found {found}")]
    Mismatch {
        kind: &'static str,
        name: String,
        expected: String,
        found: String,
    },
    #[error("dim `{dim}`: {reason}")]
    Dim { dim: String, reason: String },
    #[error("kernel `{symbol}` (node {node} `{op}`): {reason}")]
    Kernel {
        symbol: String,
        node: String,
        op: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Size { what: String, reason: String },
    /// The device cannot be used: the runtime lacks the `cuda` feature, no CUDA driver, no
    /// such device, or a driver call failed (loading the PTX, a launch, a copy).
    #[error("device `{device}`: {reason}")]
    Device { device: String, reason: String },
}
