//! Caller-owned outputs for `Model::run_into`: which outputs the kernels can write straight
//! into the caller's tensors, and fitting a kept tensor to a call's shape without a new
//! allocation when its capacity suffices.

use super::{ModelError, describe, eval_shape, numel};
use crate::artifact::{BufferKind, Manifest, TensorSig};
use crate::sym::DimValues;
use crate::{DType, HostTensor, TensorData};
use std::collections::BTreeMap;

/// Refuses an entry of `outputs` that names no output of `m` or holds another dtype.
pub(super) fn check_outputs(
    m: &Manifest,
    outputs: &BTreeMap<String, HostTensor>,
) -> Result<(), ModelError> {
    for (name, t) in outputs {
        let Some(sig) = m.outputs.iter().find(|s| &s.name == name) else {
            return Err(ModelError::ExtraOutput {
                name: name.clone(),
                known: m
                    .outputs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if t.dtype() != sig.dtype {
            return Err(ModelError::Mismatch {
                kind: "output",
                name: name.clone(),
                expected: describe(sig.dtype, &sig.shape),
                found: describe(t.dtype(), &t.shape),
            });
        }
    }
    Ok(())
}

/// The outputs whose arena buffer the kernels can write in the caller's tensor instead, with
/// their shapes at `bound`: the buffer is an arena buffer of exactly the output's size that
/// no other output shares (an output that is an input, a weight or another output's buffer is
/// copied), and the dtype is not bool (a kernel's byte is not a valid Rust `bool` in general).
pub(super) fn direct_outputs<'m>(
    m: &'m Manifest,
    bound: &DimValues,
) -> Result<Vec<(&'m TensorSig, Vec<usize>)>, ModelError> {
    let mut direct = Vec::new();
    for sig in &m.outputs {
        let shared = m.outputs.iter().filter(|o| o.buffer == sig.buffer).count() > 1;
        let buf = &m.buffers[sig.buffer];
        if shared || sig.dtype == DType::Bool || !matches!(buf.kind, BufferKind::Arena { .. }) {
            continue;
        }
        let shape = eval_shape(sig, bound)?;
        if numel(m, sig.buffer, bound)? == shape.iter().product::<usize>() {
            direct.push((sig, shape));
        }
    }
    Ok(direct)
}

/// An empty buffer of `dtype`.
pub(super) fn empty_data(dtype: DType) -> TensorData {
    match dtype {
        DType::F32 => TensorData::F32(Vec::new()),
        DType::F16 => TensorData::F16(Vec::new()),
        DType::BF16 => TensorData::BF16(Vec::new()),
        DType::I32 => TensorData::I32(Vec::new()),
        DType::I64 => TensorData::I64(Vec::new()),
        DType::Bool => TensorData::Bool(Vec::new()),
    }
}

/// Gives `t` the shape `shape` (its dtype is already the output's) and returns its element
/// pointer for the kernels to write. The storage is kept when its capacity suffices. Its old
/// contents are not cleared: kernels write every element of an output. Debug builds (the
/// tests) fill float outputs with NaN first, so a kernel that skips an element fails them.
pub(super) fn fit(t: &mut HostTensor, shape: &[usize]) -> *mut u8 {
    let n = shape.iter().product::<usize>();
    t.shape = shape.to_vec();
    let poison = cfg!(debug_assertions);
    match &mut t.data {
        TensorData::F32(v) => {
            v.resize(n, 0.0);
            if poison {
                v.fill(f32::NAN);
            }
            v.as_mut_ptr().cast()
        }
        TensorData::F16(v) => {
            v.resize(n, half::f16::ZERO);
            if poison {
                v.fill(half::f16::NAN);
            }
            v.as_mut_ptr().cast()
        }
        TensorData::BF16(v) => {
            v.resize(n, half::bf16::ZERO);
            if poison {
                v.fill(half::bf16::NAN);
            }
            v.as_mut_ptr().cast()
        }
        TensorData::I32(v) => {
            v.resize(n, 0);
            v.as_mut_ptr().cast()
        }
        TensorData::I64(v) => {
            v.resize(n, 0);
            v.as_mut_ptr().cast()
        }
        TensorData::Bool(v) => {
            v.resize(n, false);
            v.as_mut_ptr().cast()
        }
    }
}
