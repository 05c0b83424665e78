//! Running a model from C: `seqc_model_run` copies the caller's input buffers into host
//! tensors (checking name, dtype code, shape and byte length first), runs the model and
//! returns its outputs as a `SeqcOutputs` object; `seqc_model_run_into` writes them into an
//! existing one.

use crate::ffi;
use crate::model::SeqcModel;
use crate::outputs::SeqcOutputs;
use crate::status::{Failure, SeqcDtype, SeqcStatus, guard};
use half::{bf16, f16};
use seqc_runtime::{DType, DimValues, HostTensor, TensorData};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};

/// One input tensor, in caller memory. The data is read (copied) during `seqc_model_run`
/// only; it needs no particular alignment.
#[repr(C)]
pub struct SeqcInput {
    /// The input's name, as `seqc_model_tensor` reports it.
    pub name: *const c_char,
    /// A `SeqcDtype` code; it must be the input's dtype.
    pub dtype: u32,
    /// `rank` non-negative sizes.
    pub shape: *const i64,
    pub rank: usize,
    /// The elements, packed row-major (see `SeqcDtype`); may be null when there are none.
    pub data: *const c_void,
    /// The length of `data` in bytes: the product of `shape` times the dtype's size.
    pub data_bytes: usize,
}

/// The value of a symbolic dim that no input's shape determines.
#[repr(C)]
pub struct SeqcDim {
    pub name: *const c_char,
    pub value: i64,
}

/// Decodes `bytes` (native byte order) as `n` elements of `dtype`.
fn decode(dtype: DType, bytes: &[u8]) -> TensorData {
    fn each<const W: usize, T>(b: &[u8], f: impl Fn([u8; W]) -> T) -> Vec<T> {
        b.chunks_exact(W)
            .map(|c| f(c.try_into().expect("chunks_exact gives W bytes")))
            .collect()
    }
    match dtype {
        DType::F32 => TensorData::F32(each(bytes, f32::from_ne_bytes)),
        DType::F16 => TensorData::F16(each(bytes, |b| f16::from_bits(u16::from_ne_bytes(b)))),
        DType::BF16 => TensorData::BF16(each(bytes, |b| bf16::from_bits(u16::from_ne_bytes(b)))),
        DType::I32 => TensorData::I32(each(bytes, i32::from_ne_bytes)),
        DType::I64 => TensorData::I64(each(bytes, i64::from_ne_bytes)),
        DType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
    }
}

fn input_failure(name: &str, message: String) -> Failure {
    Failure::new(SeqcStatus::Input, format!("input `{name}`: {message}"))
}

/// Copies one caller input into a host tensor.
///
/// # Safety
/// The pointers of `inp` satisfy `seqc_model_run`'s contract.
unsafe fn host_tensor(inp: &SeqcInput, i: usize) -> Result<(String, HostTensor), Failure> {
    // SAFETY (all three): the caller's contract.
    let name = unsafe { ffi::string(inp.name, &format!("inputs[{i}].name")) }?.to_string();
    let dtype = SeqcDtype::decode(inp.dtype, &format!("input `{name}`: `dtype`"))?;
    let dims = unsafe { ffi::slice(inp.shape, inp.rank, &format!("input `{name}`: `shape`")) }?;
    let mut shape = Vec::with_capacity(dims.len());
    for (axis, &d) in dims.iter().enumerate() {
        shape.push(usize::try_from(d).map_err(|_| {
            Failure::new(
                SeqcStatus::InvalidArgument,
                format!("input `{name}`: axis {axis}: expected a size ≥ 0, found {d}"),
            )
        })?);
    }
    let need = shape
        .iter()
        .try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d))
        .ok_or_else(|| input_failure(&name, format!("shape {shape:?} does not fit in memory")))?;
    if inp.data_bytes != need {
        return Err(input_failure(
            &name,
            format!(
                "a {dtype}{shape:?} tensor needs {need} bytes of data, found `data_bytes` = {}",
                inp.data_bytes
            ),
        ));
    }
    let bytes = unsafe {
        ffi::slice(
            inp.data.cast::<u8>(),
            inp.data_bytes,
            &format!("input `{name}`: `data`"),
        )
    }?;
    let t = HostTensor::new(&name, shape, decode(dtype, bytes))
        .map_err(|e| Failure::new(SeqcStatus::Input, e.to_string()))?;
    Ok((name, t))
}

/// Runs `model` on the `n_inputs` tensors of `inputs` (every input of the model, once each,
/// in any order) and, on success, sets `*outputs` to a new outputs object to free with
/// `seqc_outputs_free` (null on failure). Dims are bound from the inputs' shapes; `dims`
/// (`n_dims` entries; null when 0) gives any that no shape determines. May be called on one
/// model from several threads at once.
///
/// Fails with `SEQC_STATUS_INPUT` (an input missing, unknown, given twice, of the wrong dtype
/// or shape, or whose `data_bytes` does not match its shape), `SEQC_STATUS_KERNEL` (a kernel
/// failed on the data, e.g. an index out of range) or `SEQC_STATUS_RUNTIME`.
///
/// # Safety
/// `model` is null or a live model; `inputs` is null or points at `n_inputs` `SeqcInput`s,
/// each naming a NUL-terminated string, `rank` `int64_t`s and `data_bytes` readable bytes;
/// `dims` likewise for `n_dims` `SeqcDim`s; `outputs` is null or points at writable memory
/// for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_run(
    model: *const SeqcModel,
    inputs: *const SeqcInput,
    n_inputs: usize,
    dims: *const SeqcDim,
    n_dims: usize,
    outputs: *mut *mut SeqcOutputs,
) -> SeqcStatus {
    guard("seqc_model_run", || {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { ffi::out(outputs, "outputs") }?;
        *out = std::ptr::null_mut();
        let m = unsafe { ffi::arg(model, "model") }?;
        let (tensors, values) = unsafe { call_args(inputs, n_inputs, dims, n_dims) }?;
        let result = m.model.run(&tensors, &values)?;
        *out = Box::into_raw(Box::new(SeqcOutputs::new(m.model.manifest(), result)?));
        Ok(())
    })
}

/// Runs `model` like `seqc_model_run`, writing the outputs into `outputs`, an outputs
/// object from an earlier `seqc_model_run` of this model: its memory is reused (resized to
/// this call's shapes when they differ), so an app calling in a loop pays no allocation or
/// copy per call for its outputs. Views taken from `outputs` before the call are invalid
/// after it; take them again. On failure the object stays valid (every output present) but
/// its contents are unspecified.
///
/// Fails as `seqc_model_run` does, and with `SEQC_STATUS_INVALID_ARGUMENT` when `outputs`
/// holds outputs of another model (an unknown name or another dtype).
///
/// # Safety
/// As `seqc_model_run`, except that `outputs` is null or a live outputs object that no
/// other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_run_into(
    model: *const SeqcModel,
    inputs: *const SeqcInput,
    n_inputs: usize,
    dims: *const SeqcDim,
    n_dims: usize,
    outputs: *mut SeqcOutputs,
) -> SeqcStatus {
    guard("seqc_model_run_into", || {
        // SAFETY (all): the caller's contract above.
        let o = unsafe { ffi::out(outputs, "outputs") }?;
        let m = unsafe { ffi::arg(model, "model") }?;
        let (tensors, values) = unsafe { call_args(inputs, n_inputs, dims, n_dims) }?;
        let mut kept = o.take();
        let ran = m.model.run_into(&tensors, &values, &mut kept);
        // Give the tensors back whatever happened, so the object stays whole.
        let back = o.put(m.model.manifest(), kept);
        ran?;
        back
    })
}

/// The inputs and dims of a call, decoded and checked.
///
/// # Safety
/// The pointers satisfy `seqc_model_run`'s contract.
unsafe fn call_args(
    inputs: *const SeqcInput,
    n_inputs: usize,
    dims: *const SeqcDim,
    n_dims: usize,
) -> Result<(BTreeMap<String, HostTensor>, DimValues), Failure> {
    let mut tensors = BTreeMap::new();
    // SAFETY (all): the caller's contract.
    for (i, inp) in unsafe { ffi::slice(inputs, n_inputs, "inputs") }?
        .iter()
        .enumerate()
    {
        let (name, t) = unsafe { host_tensor(inp, i) }?;
        if tensors.insert(name.clone(), t).is_some() {
            return Err(input_failure(&name, "given twice".into()));
        }
    }
    let mut values = DimValues::new();
    for (i, d) in unsafe { ffi::slice(dims, n_dims, "dims") }?
        .iter()
        .enumerate()
    {
        let name = unsafe { ffi::string(d.name, &format!("dims[{i}].name")) }?;
        if values.insert(name.to_string(), d.value).is_some() {
            return Err(Failure::new(
                SeqcStatus::Input,
                format!("dim `{name}`: given twice"),
            ));
        }
    }
    Ok((tensors, values))
}
