//! Weights bound to a model: safetensors files memory-mapped (never copied unless a tensor is
//! misaligned for its dtype), or tensors already in memory.

// unsafe: memory-mapping a file (memmap2's `Mmap::map`) and viewing mapped bytes as tensors.
#![allow(unsafe_code)]

use super::ModelError;
use crate::{DType, HostTensor, RuntimeError, TensorData};
use memmap2::Mmap;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The bytes of one tensor.
enum Blob {
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
    /// 8-byte aligned owned bytes.
    Owned(Vec<u64>, usize),
}

/// One weight tensor.
pub struct Weight {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Where it came from, for error messages.
    pub source: String,
    blob: Blob,
}

impl Weight {
    /// The first byte (aligned for the dtype).
    pub(super) fn ptr(&self) -> *const u8 {
        match &self.blob {
            Blob::Mapped { map, offset, .. } => map[*offset..].as_ptr(),
            Blob::Owned(v, _) => v.as_ptr().cast(),
        }
    }

    /// Its bytes, as the kernels read them.
    #[cfg(feature = "cuda")]
    pub(super) fn as_bytes(&self) -> &[u8] {
        // SAFETY: `ptr` points at `bytes` initialised bytes, mapped or owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.bytes()) }
    }

    pub fn bytes(&self) -> usize {
        match &self.blob {
            Blob::Mapped { len, .. } => *len,
            Blob::Owned(_, len) => *len,
        }
    }
}

fn owned(bytes: &[u8]) -> Blob {
    let mut v = vec![0u64; bytes.len().div_ceil(8)];
    for (i, b) in bytes.iter().enumerate() {
        v[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    Blob::Owned(v, bytes.len())
}

/// Named weights.
#[derive(Default)]
pub struct Weights {
    pub(super) tensors: BTreeMap<String, Weight>,
}

fn dtype_of(d: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match d {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::I32 => DType::I32,
        S::I64 => DType::I64,
        S::BOOL => DType::Bool,
        _ => return None,
    })
}

impl Weights {
    /// Memory-maps safetensors files; a name in two files is an error naming both.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Weights, ModelError> {
        let mut w = Weights::default();
        for p in paths {
            let p = p.as_ref();
            let src = p.display().to_string();
            let io = |source| RuntimeError::Io {
                path: src.clone(),
                source,
            };
            let file = std::fs::File::open(p).map_err(io)?;
            // SAFETY: the map is read-only and private to this process; like every mmap user,
            // we rely on the file not being truncated or rewritten while the model is alive
            // (documented on `Model`).
            let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
            let st = SafeTensors::deserialize(&map).map_err(|e| RuntimeError::Safetensors {
                path: src.clone(),
                reason: e.to_string(),
            })?;
            let base = map.as_ptr() as usize;
            let mut found = Vec::new();
            for (name, view) in st.tensors() {
                let dtype =
                    dtype_of(view.dtype()).ok_or_else(|| RuntimeError::UnsupportedDType {
                        path: src.clone(),
                        name: name.clone(),
                        found: format!("{:?}", view.dtype()),
                    })?;
                let data = view.data();
                let offset = data.as_ptr() as usize - base;
                let blob = if (data.as_ptr() as usize).is_multiple_of(dtype.size_bytes()) {
                    Blob::Mapped {
                        map: Arc::clone(&map),
                        offset,
                        len: data.len(),
                    }
                } else {
                    owned(data)
                };
                found.push((name, dtype, view.shape().to_vec(), blob));
            }
            for (name, dtype, shape, blob) in found {
                w.insert(name, dtype, shape, src.clone(), blob)?;
            }
        }
        Ok(w)
    }

    /// Weights from tensors in memory (copied).
    pub fn from_tensors(tensors: &BTreeMap<String, HostTensor>) -> Result<Weights, ModelError> {
        let mut w = Weights::default();
        for (name, t) in tensors {
            let bytes = crate::io::tensor_bytes(t);
            w.insert(
                name.clone(),
                t.dtype(),
                t.shape.clone(),
                "memory".into(),
                owned(&bytes),
            )?;
        }
        Ok(w)
    }

    fn insert(
        &mut self,
        name: String,
        dtype: DType,
        shape: Vec<usize>,
        source: String,
        blob: Blob,
    ) -> Result<(), ModelError> {
        if let Some(old) = self.tensors.get(&name) {
            return Err(ModelError::DuplicateWeight {
                name,
                first: old.source.clone(),
                second: source,
            });
        }
        self.tensors.insert(
            name,
            Weight {
                dtype,
                shape,
                source,
                blob,
            },
        );
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

/// The first byte of a host tensor's elements (native layout; bools are one byte, 0 or 1).
pub(super) fn tensor_ptr(t: &HostTensor) -> *const u8 {
    match &t.data {
        TensorData::F32(v) => v.as_ptr().cast(),
        TensorData::F16(v) => v.as_ptr().cast(),
        TensorData::BF16(v) => v.as_ptr().cast(),
        TensorData::I32(v) => v.as_ptr().cast(),
        TensorData::I64(v) => v.as_ptr().cast(),
        TensorData::Bool(v) => v.as_ptr().cast(),
    }
}

/// The bytes of a host tensor's elements (see [`tensor_ptr`]).
#[cfg(feature = "cuda")]
pub(super) fn tensor_bytes(t: &HostTensor) -> &[u8] {
    let n = t.numel() * t.dtype().size_bytes();
    // SAFETY: the tensor's buffer holds `numel` initialised elements of its dtype (a bool is
    // one byte, 0 or 1), borrowed for the result's lifetime.
    unsafe { std::slice::from_raw_parts(tensor_ptr(t), n) }
}
