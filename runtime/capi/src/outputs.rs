//! The result of a run, owned by the caller: `seqc_outputs_count`, `seqc_outputs_get` (by
//! index, in the model's output order), `seqc_outputs_find` (by name) and `seqc_outputs_free`.

use crate::ffi;
use crate::model::CStrings;
use crate::status::{Failure, SeqcDtype, SeqcStatus, guard};
use seqc_runtime::artifact::Manifest;
use seqc_runtime::{HostTensor, TensorData};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};

struct Item {
    name: CStrings,
    dtype: SeqcDtype,
    shape: Vec<i64>,
    tensor: HostTensor,
}

/// The outputs of one `seqc_model_run`, in the model's output order. Owned by the caller;
/// free it with `seqc_outputs_free`. Views into it live until then, or until it is passed to
/// `seqc_model_run_into`, which writes the next call's outputs into the same memory.
pub struct SeqcOutputs {
    items: Vec<Item>,
}

impl SeqcOutputs {
    pub(crate) fn new(
        m: &Manifest,
        mut result: BTreeMap<String, HostTensor>,
    ) -> Result<SeqcOutputs, Failure> {
        let items = m
            .outputs
            .iter()
            .map(|sig| {
                let tensor = result.remove(&sig.name).ok_or_else(|| {
                    Failure::new(
                        SeqcStatus::Runtime,
                        format!("output `{}`: the run did not return it", sig.name),
                    )
                })?;
                Ok(Item {
                    name: CStrings::new([&sig.name], "outputs")?,
                    dtype: SeqcDtype::of(tensor.dtype()),
                    shape: tensor.shape.iter().map(|&d| d as i64).collect(),
                    tensor,
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(SeqcOutputs { items })
    }

    /// The tensors, by name, for a run to write into (`Model::run_into`); `self` is empty
    /// until [`SeqcOutputs::put`] gives them back.
    pub(crate) fn take(&mut self) -> BTreeMap<String, HostTensor> {
        self.items
            .drain(..)
            .map(|it| (it.name.str(0).to_string(), it.tensor))
            .collect()
    }

    /// Refills `self` after [`SeqcOutputs::take`], with the run's shapes.
    pub(crate) fn put(
        &mut self,
        m: &Manifest,
        tensors: BTreeMap<String, HostTensor>,
    ) -> Result<(), Failure> {
        *self = SeqcOutputs::new(m, tensors)?;
        Ok(())
    }
}

/// One output tensor. Every pointer belongs to the outputs object.
#[repr(C)]
pub struct SeqcTensorView {
    pub name: *const c_char,
    pub dtype: SeqcDtype,
    pub rank: usize,
    /// `rank` sizes.
    pub shape: *const i64,
    /// The elements, packed row-major (see `SeqcDtype`), aligned for the dtype.
    pub data: *const c_void,
    /// The length of `data` in bytes.
    pub data_bytes: usize,
}

fn view_of(it: &Item) -> SeqcTensorView {
    let (data, elem): (*const c_void, usize) = match &it.tensor.data {
        TensorData::F32(v) => (v.as_ptr().cast(), 4),
        TensorData::F16(v) => (v.as_ptr().cast(), 2),
        TensorData::BF16(v) => (v.as_ptr().cast(), 2),
        TensorData::I32(v) => (v.as_ptr().cast(), 4),
        TensorData::I64(v) => (v.as_ptr().cast(), 8),
        // A Rust `bool` is one byte, 0 or 1.
        TensorData::Bool(v) => (v.as_ptr().cast(), 1),
    };
    SeqcTensorView {
        name: it.name.ptr(0),
        dtype: it.dtype,
        rank: it.shape.len(),
        shape: it.shape.as_ptr(),
        data,
        data_bytes: it.tensor.numel() * elem,
    }
}

fn empty_view() -> SeqcTensorView {
    SeqcTensorView {
        name: std::ptr::null(),
        dtype: SeqcDtype::F32,
        rank: 0,
        shape: std::ptr::null(),
        data: std::ptr::null(),
        data_bytes: 0,
    }
}

/// `*count` = the number of outputs.
///
/// # Safety
/// `outputs` is null or a live outputs object; `count` is null or points at a writable
/// `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_outputs_count(
    outputs: *const SeqcOutputs,
    count: *mut usize,
) -> SeqcStatus {
    guard("seqc_outputs_count", || {
        // SAFETY (both): the caller's contract above.
        let out = unsafe { ffi::out(count, "count") }?;
        *out = 0;
        *out = unsafe { ffi::arg(outputs, "outputs") }?.items.len();
        Ok(())
    })
}

/// `*view` = output `index` (in the model's output order, as `seqc_model_tensor` with
/// `SEQC_KIND_OUTPUT` lists them).
///
/// # Safety
/// `outputs` is null or a live outputs object; `view` is null or points at a writable
/// `SeqcTensorView`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_outputs_get(
    outputs: *const SeqcOutputs,
    index: usize,
    view: *mut SeqcTensorView,
) -> SeqcStatus {
    guard("seqc_outputs_get", || {
        // SAFETY (both): the caller's contract above.
        let out = unsafe { ffi::out(view, "view") }?;
        *out = empty_view();
        let o = unsafe { ffi::arg(outputs, "outputs") }?;
        let n = o.items.len();
        *out = view_of(&o.items[ffi::index(index, n, &format!("there are {n} outputs"))?]);
        Ok(())
    })
}

/// `*view` = the output called `name`; `SEQC_STATUS_NOT_FOUND` if there is none.
///
/// # Safety
/// `outputs` is null or a live outputs object; `name` is null or a NUL-terminated string;
/// `view` is null or points at a writable `SeqcTensorView`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_outputs_find(
    outputs: *const SeqcOutputs,
    name: *const c_char,
    view: *mut SeqcTensorView,
) -> SeqcStatus {
    guard("seqc_outputs_find", || {
        // SAFETY (all three): the caller's contract above.
        let out = unsafe { ffi::out(view, "view") }?;
        *out = empty_view();
        let o = unsafe { ffi::arg(outputs, "outputs") }?;
        let name = unsafe { ffi::string(name, "name") }?;
        let it = o
            .items
            .iter()
            .find(|it| it.name.str(0) == name)
            .ok_or_else(|| {
                let known: Vec<&str> = o.items.iter().map(|it| it.name.str(0)).collect();
                Failure::new(
                    SeqcStatus::NotFound,
                    format!(
                        "`{name}` is not an output of the model (its outputs: {})",
                        known.join(", ")
                    ),
                )
            })?;
        *out = view_of(it);
        Ok(())
    })
}

/// Frees an outputs object from `seqc_model_run`. Null is a no-op.
///
/// # Safety
/// `outputs` is null or an outputs object from `seqc_model_run` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_outputs_free(outputs: *mut SeqcOutputs) {
    if !outputs.is_null() {
        // SAFETY: from Box::into_raw in seqc_model_run, freed once (the caller's contract).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(unsafe { Box::from_raw(outputs) })
        }));
    }
}
