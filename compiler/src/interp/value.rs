//! Interpreter values: tensors stored as f64 / i64 / bool buffers with a dtype and a concrete
//! shape, rounding to the dtype, conversion to and from host tensors, and index helpers.

use seqc_runtime::{DType, HostTensor, TensorData};
use std::cmp::Ordering;

/// The most elements one tensor may have (2^31).
pub(crate) const MAX_ELEMS: usize = 1 << 31;

/// A flat, row-major element buffer. Floats of every float dtype are held as f64 (already
/// rounded to the dtype), integers of every int dtype as i64 (already wrapped to it).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    F(Vec<f64>),
    I(Vec<i64>),
    B(Vec<bool>),
}

/// A concrete tensor value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// The value of a node: a tensor, or the tuple a general scan returns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    T(Tensor),
    Tuple(Vec<Tensor>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
            Data::B(v) => v.len(),
        }
    }

    /// The elements at `idx`, in order; every index must be `< len`.
    pub fn pick(&self, idx: &[usize]) -> Result<Data, String> {
        let n = self.len();
        if let Some(bad) = idx.iter().find(|&&i| i >= n) {
            return Err(format!("internal: element {bad} of a buffer of {n}"));
        }
        Ok(match self {
            Data::F(v) => Data::F(idx.iter().map(|&i| v[i]).collect()),
            Data::I(v) => Data::I(idx.iter().map(|&i| v[i]).collect()),
            Data::B(v) => Data::B(idx.iter().map(|&i| v[i]).collect()),
        })
    }

    /// Appends `other`, which must hold the same kind of element.
    pub fn append(&mut self, other: &Data) -> Result<(), String> {
        match (self, other) {
            (Data::F(a), Data::F(b)) => a.extend_from_slice(b),
            (Data::I(a), Data::I(b)) => a.extend_from_slice(b),
            (Data::B(a), Data::B(b)) => a.extend_from_slice(b),
            _ => return Err("internal: joining buffers of different kinds".into()),
        }
        Ok(())
    }

    /// Compares elements `i` and `j` (floats: NaN above everything, −0 = 0; false < true).
    pub fn cmp_at(&self, i: usize, j: usize) -> Ordering {
        match self {
            Data::F(v) => cmp_f64(v[i], v[j]),
            Data::I(v) => v[i].cmp(&v[j]),
            Data::B(v) => v[i].cmp(&v[j]),
        }
    }
}

/// A total order on floats for sorting: NaN is the largest value, −0 equals 0.
pub(crate) fn cmp_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// The kind of buffer a dtype is stored in, as an empty buffer.
pub(crate) fn empty_for(dtype: DType) -> Data {
    if dtype.is_float() {
        Data::F(Vec::new())
    } else if dtype.is_int() {
        Data::I(Vec::new())
    } else {
        Data::B(Vec::new())
    }
}

impl Tensor {
    /// Builds a tensor, checking the buffer's kind and length against the dtype and shape,
    /// and rounding floats / wrapping ints to the dtype.
    pub fn new(dtype: DType, shape: Vec<usize>, mut data: Data) -> Result<Tensor, String> {
        let n = numel(&shape)?;
        if data.len() != n {
            return Err(format!(
                "internal: {} elements for shape {shape:?}",
                data.len()
            ));
        }
        let kind_ok = match &data {
            Data::F(_) => dtype.is_float(),
            Data::I(_) => dtype.is_int(),
            Data::B(_) => dtype == DType::Bool,
        };
        if !kind_ok {
            return Err(format!(
                "internal: a buffer of the wrong kind for dtype {dtype}"
            ));
        }
        round_data(dtype, &mut data);
        Ok(Tensor { dtype, shape, data })
    }

    pub fn floats(&self) -> Result<&[f64], String> {
        match &self.data {
            Data::F(v) => Ok(v),
            _ => Err(format!("expected a float tensor, found {}", self.dtype)),
        }
    }

    pub fn ints(&self) -> Result<&[i64], String> {
        match &self.data {
            Data::I(v) => Ok(v),
            _ => Err(format!("expected an integer tensor, found {}", self.dtype)),
        }
    }

    /// `dtype[d0, d1, ...]`, for messages.
    pub fn describe(&self) -> String {
        describe(self.dtype, &self.shape)
    }

    /// Converts a host tensor, checking that its buffer matches its shape.
    pub fn from_host(h: &HostTensor) -> Result<Tensor, String> {
        let n = numel(&h.shape)?;
        if h.data.len() != n {
            return Err(format!(
                "its buffer holds {} elements, its shape {:?} needs {n}",
                h.data.len(),
                h.shape
            ));
        }
        let data = match &h.data {
            TensorData::F32(_) | TensorData::F16(_) | TensorData::BF16(_) => {
                Data::F(h.to_f64_vec())
            }
            TensorData::I32(v) => Data::I(v.iter().map(|&x| x as i64).collect()),
            TensorData::I64(v) => Data::I(v.clone()),
            TensorData::Bool(v) => Data::B(v.clone()),
        };
        Tensor::new(h.dtype(), h.shape.clone(), data)
    }

    /// Converts to a host tensor of the same dtype.
    pub fn to_host(&self) -> Result<HostTensor, String> {
        let data = match (&self.data, self.dtype) {
            (Data::I(v), DType::I32) => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
            (Data::I(v), DType::I64) => TensorData::I64(v.clone()),
            (Data::B(v), DType::Bool) => TensorData::Bool(v.clone()),
            (Data::F(v), d) if d.is_float() => {
                if numel(&self.shape)? != v.len() {
                    return Err(format!(
                        "internal: {} elements for {}",
                        v.len(),
                        self.describe()
                    ));
                }
                return Ok(HostTensor::from_f64(d, self.shape.clone(), v));
            }
            _ => {
                return Err(format!(
                    "internal: a {} tensor with the wrong buffer",
                    self.dtype
                ));
            }
        };
        HostTensor::new("", self.shape.clone(), data).map_err(|e| e.to_string())
    }
}

/// `dtype[d0, d1, ...]`.
pub(crate) fn describe(dtype: DType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{dtype}[{}]", dims.join(", "))
}

/// Rounds floats to the dtype (f32, f16 or bf16, round to nearest even, one rounding from the
/// f64: `round.rs`) and wraps ints to it.
pub(crate) fn round_data(dtype: DType, data: &mut Data) {
    match (dtype, data) {
        (DType::F32, Data::F(v)) => v.iter_mut().for_each(|x| *x = *x as f32 as f64),
        (DType::F16 | DType::BF16, Data::F(v)) => {
            v.iter_mut().for_each(|x| *x = round_f(dtype, *x))
        }
        (DType::I32, Data::I(v)) => v.iter_mut().for_each(|x| *x = *x as i32 as i64),
        _ => {}
    }
}

/// Rounds one float to the dtype.
pub(crate) fn round_f(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::F32 => x as f32 as f64,
        _ => super::round::format(dtype).map_or(x, |f| super::round::round_half(f, x)),
    }
}

/// The number of elements of a shape, refusing more than [`MAX_ELEMS`].
pub(crate) fn numel(shape: &[usize]) -> Result<usize, String> {
    // The product of the non-zero dims is bounded too, so that no later product overflows.
    let mut n: usize = 1;
    for &d in shape.iter().filter(|&&d| d != 0) {
        n = n.saturating_mul(d);
        if n > MAX_ELEMS {
            return Err(format!(
                "a tensor of shape {shape:?} would have more than 2^31 elements"
            ));
        }
    }
    Ok(if shape.contains(&0) { 0 } else { n })
}

/// Row-major strides.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// (product of dims before `axis`, dim at `axis`, product of dims after `axis`).
pub(crate) fn split_axis(shape: &[usize], axis: usize) -> Result<(usize, usize, usize), String> {
    if axis >= shape.len() {
        return Err(format!("axis {axis} is out of range for shape {shape:?}"));
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

/// For every index of `shape` in row-major order, `Σ index_i · strides_i`.
pub(crate) fn offsets(shape: &[usize], strides: &[usize]) -> Result<Vec<usize>, String> {
    let n = numel(shape)?;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    let mut idx = vec![0usize; shape.len()];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(off);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// The concrete NumPy broadcast of two shapes.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        if da == db || db == 1 {
            out.push(da);
        } else if da == 1 {
            out.push(db);
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        }
    }
    Ok(out)
}

/// For each element of `out` (row-major), the offset of the element of a tensor of shape
/// `input` that broadcasts to it.
pub(crate) fn broadcast_offsets(input: &[usize], out: &[usize]) -> Result<Vec<usize>, String> {
    if input.len() > out.len() {
        return Err(format!("cannot broadcast shape {input:?} to {out:?}"));
    }
    let lead = out.len() - input.len();
    let s = strides(input);
    let mut st = vec![0usize; out.len()];
    for (i, &d) in input.iter().enumerate() {
        if d == out[lead + i] {
            st[lead + i] = s[i];
        } else if d != 1 {
            return Err(format!("cannot broadcast shape {input:?} to {out:?}"));
        }
    }
    offsets(out, &st)
}
