//! Safetensors I/O: read a file into named host tensors, write named host tensors to a file.
//! Order is deterministic (sorted by name) so that files written twice are byte-identical.

use crate::{DType, HostTensor, RuntimeError, TensorData};
use half::{bf16, f16};
use safetensors::{Dtype as StDtype, SafeTensors, tensor::TensorView};
use std::collections::BTreeMap;
use std::path::Path;

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I32 => StDtype::I32,
        DType::I64 => StDtype::I64,
        DType::Bool => StDtype::BOOL,
    }
}

fn from_st_dtype(d: StDtype) -> Option<DType> {
    Some(match d {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::I32 => DType::I32,
        StDtype::I64 => DType::I64,
        StDtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// Parses safetensors bytes; `path` is only used in error messages.
pub fn parse_safetensors(
    path: &str,
    bytes: &[u8],
) -> Result<BTreeMap<String, HostTensor>, RuntimeError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| RuntimeError::Safetensors {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = from_st_dtype(view.dtype()).ok_or_else(|| RuntimeError::UnsupportedDType {
            path: path.to_string(),
            name: name.clone(),
            found: format!("{:?}", view.dtype()),
        })?;
        let raw = view.data();
        let data = match dtype {
            DType::F32 => TensorData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F16 => TensorData::F16(
                raw.chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::BF16 => TensorData::BF16(
                raw.chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::I32 => TensorData::I32(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::I64 => TensorData::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                    .collect(),
            ),
            DType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        };
        let t = HostTensor::new(&name, view.shape().to_vec(), data)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Reads a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, RuntimeError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| RuntimeError::Io {
        path: p.clone(),
        source,
    })?;
    parse_safetensors(&p, &bytes)
}

/// A tensor's elements as little-endian bytes (bools as 0/1).
pub fn tensor_bytes(t: &HostTensor) -> Vec<u8> {
    match &t.data {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u8).collect(),
    }
}

/// Serializes named tensors to safetensors bytes (names sorted).
pub fn serialize_safetensors(
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<Vec<u8>, RuntimeError> {
    let bufs: Vec<(String, DType, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.dtype(), t.shape.clone(), tensor_bytes(t)))
        .collect();
    let views = bufs
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(st_dtype(*d), s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| RuntimeError::Safetensors {
                    path: n.clone(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| RuntimeError::Safetensors {
        path: "<output>".into(),
        reason: e.to_string(),
    })
}

/// Writes named tensors to a safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(), RuntimeError> {
    let bytes = serialize_safetensors(tensors)?;
    std::fs::write(path, bytes).map_err(|source| RuntimeError::Io {
        path: path.display().to_string(),
        source,
    })
}
