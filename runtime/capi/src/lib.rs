//! `seqc-capi`: the C API of the seqc runtime — `extern "C"` functions over
//! [`seqc_runtime::Model`] with opaque handles, status codes and a thread-local error
//! message. The header `runtime/include/seqc.h` is generated from this crate by cbindgen
//! (`cargo xtask header`); a test fails when the committed header is stale.
//!
//! Contract, for every function:
//! * it returns a [`SeqcStatus`] (or, for the few that cannot fail, a value) and never
//!   unwinds into C: every entry point runs under `catch_unwind`, a panic becomes
//!   `SEQC_STATUS_PANIC`;
//! * on failure [`seqc_last_error`] gives a message naming the argument, tensor or file,
//!   what was expected and what was found; on success it gives the empty string;
//! * null pointers, non-UTF-8 strings, unknown dtype or kind codes and out-of-range indices
//!   are refused with a status, never dereferenced;
//! * out-parameters are set to null / zero first, so they are null after a failure.
//!
//! Device: `seqc_model_load` runs a model on the CPU; `seqc_model_load_on` takes a device
//! string (`"cpu"`, `"cuda"`, `"cuda:N"`) and runs it on that GPU when the library was
//! built with its `cuda` feature (the default; libcuda is opened at load time).
//!
//! Ownership: `seqc_model_load` and `seqc_model_run` hand out objects the caller frees with
//! `seqc_model_free` / `seqc_outputs_free`. Strings and arrays returned by the queries belong
//! to the object they came from and live until it is freed. Input buffers are copied during
//! `seqc_model_run`; the caller keeps them.
//!
//! Threads: a loaded model is immutable; `seqc_model_run` and the queries may be called on
//! the same model from several threads at once (each call has its own arena). A model must
//! not be freed while another thread uses it. An outputs object may move between threads but
//! is not meant to be shared while being freed. The error message is per thread.

// unsafe: a C API reads caller memory through raw pointers and exports unmangled symbols;
// every dereference is behind a null check and states its SAFETY contract.
#![allow(unsafe_code)]

mod ffi;
mod model;
mod outputs;
mod run;
mod status;

pub use model::{
    SeqcModel, SeqcTensorInfo, seqc_model_count, seqc_model_dim_count, seqc_model_dim_name,
    seqc_model_free, seqc_model_load, seqc_model_load_on, seqc_model_tensor,
};
pub use outputs::{
    SeqcOutputs, SeqcTensorView, seqc_outputs_count, seqc_outputs_find, seqc_outputs_free,
    seqc_outputs_get,
};
pub use run::{SeqcDim, SeqcInput, seqc_model_run, seqc_model_run_into};
pub use status::{SeqcDtype, SeqcKind, SeqcStatus, seqc_last_error, seqc_version};
