//! Loading a model from C and asking it about itself: `seqc_model_load` / `seqc_model_free`,
//! and queries of its inputs, parameters, outputs (name, dtype, symbolic shape) and dims. Every
//! string a query returns is built once at load time and owned by the model.

use crate::ffi;
use crate::status::{Failure, SeqcDtype, SeqcKind, SeqcStatus, guard};
use seqc_runtime::artifact::TensorSig;
use seqc_runtime::model::Options;
use seqc_runtime::{Model, Weights};
use std::ffi::{CString, c_char};
use std::path::Path;

/// C strings and a pointer array over them (for `const char *const *`).
pub(crate) struct CStrings {
    strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

// SAFETY: `ptrs` point into the heap buffers of `strings`, which are never mutated or
// dropped before the struct; reading them from several threads is sound.
unsafe impl Send for CStrings {}
// SAFETY: as above; nothing is ever written through them.
unsafe impl Sync for CStrings {}

impl CStrings {
    pub(crate) fn new<S: AsRef<str>>(
        items: impl IntoIterator<Item = S>,
        what: &str,
    ) -> Result<CStrings, Failure> {
        let strings = items
            .into_iter()
            .map(|s| {
                CString::new(s.as_ref()).map_err(|_| {
                    Failure::new(
                        SeqcStatus::Artifact,
                        format!("{what}: the name {:?} contains a NUL byte", s.as_ref()),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ptrs = strings.iter().map(|s| s.as_ptr()).collect();
        Ok(CStrings { strings, ptrs })
    }

    pub(crate) fn len(&self) -> usize {
        self.strings.len()
    }

    pub(crate) fn ptr(&self, i: usize) -> *const c_char {
        self.ptrs[i]
    }

    /// String `i` (built from a `&str`, so always UTF-8).
    pub(crate) fn str(&self, i: usize) -> &str {
        self.strings[i].to_str().unwrap_or_default()
    }

    pub(crate) fn array(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// One tensor of the signature, as C sees it.
struct Sig {
    name: CStrings,
    dtype: SeqcDtype,
    /// Each axis's size as text: a number, a dim name, or an expression such as `(2*T)`.
    shape: CStrings,
}

impl Sig {
    fn new(t: &TensorSig) -> Result<Sig, Failure> {
        let what = format!("tensor `{}`", t.name);
        Ok(Sig {
            name: CStrings::new([&t.name], &what)?,
            dtype: SeqcDtype::of(t.dtype),
            shape: CStrings::new(t.shape.iter().map(|d| d.to_string()), &what)?,
        })
    }
}

/// A loaded model: an artifact checked and opened, its weights bound, a thread pool.
/// Immutable: use it from as many threads at once as you like; free it once, with
/// `seqc_model_free`, when no thread uses it any more.
pub struct SeqcModel {
    pub(crate) model: Model,
    sigs: [Vec<Sig>; 3],
    dims: CStrings,
}

impl SeqcModel {
    fn sigs(&self, kind: SeqcKind) -> &[Sig] {
        &self.sigs[kind as usize]
    }
}

/// A tensor of a model's signature. The strings belong to the model.
#[repr(C)]
pub struct SeqcTensorInfo {
    /// Its name (a parameter's full checkpoint name, e.g. `layers.0.attn.q_proj.weight`).
    pub name: *const c_char,
    pub dtype: SeqcDtype,
    /// The number of axes.
    pub rank: usize,
    /// `rank` strings, one per axis: a number (`"64"`), a dim name (`"T"`) or an
    /// expression over dims (`"(2*T)"`). See `seqc_model_dim_name`.
    pub shape: *const *const c_char,
}

/// Loads the compiled artifact in directory `artifact_dir` and binds the weights of the
/// safetensors file `weights_path` (memory-mapped; pass null for a model without
/// parameters). `threads` is the number of worker threads for parallel loops, 0 for the
/// machine's available parallelism. On success `*model` is a new model to free with
/// `seqc_model_free`; on failure it is null.
///
/// Fails with `SEQC_STATUS_IO` (a file cannot be read), `SEQC_STATUS_ARTIFACT` (corrupt
/// manifest, wrong format version, library hash, another machine) or `SEQC_STATUS_WEIGHTS`
/// (a parameter missing, extra, or of the wrong dtype or shape; an invalid weights file).
///
/// # Safety
/// `artifact_dir` and `weights_path` are null or NUL-terminated strings; `model` is null or
/// points at writable memory for a pointer. The weights file must not be modified or
/// truncated while the model is alive.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_load(
    artifact_dir: *const c_char,
    weights_path: *const c_char,
    threads: usize,
    model: *mut *mut SeqcModel,
) -> SeqcStatus {
    guard("seqc_model_load", || {
        // SAFETY (all four): the caller's contract above.
        let out = unsafe { ffi::out(model, "model") }?;
        *out = std::ptr::null_mut();
        let dir = unsafe { ffi::string(artifact_dir, "artifact_dir") }?;
        let weights = if weights_path.is_null() {
            Weights::default()
        } else {
            Weights::open(&[unsafe { ffi::string(weights_path, "weights_path") }?])?
        };
        let opts = Options {
            threads: (threads > 0).then_some(threads),
            ..Options::default()
        };
        let m = Model::load_with(Path::new(dir), weights, &opts)?;
        let man = m.manifest();
        let sigs = |ts: &[TensorSig]| ts.iter().map(Sig::new).collect::<Result<Vec<_>, _>>();
        let sigs = [sigs(&man.inputs)?, sigs(&man.params)?, sigs(&man.outputs)?];
        let dims = CStrings::new(&man.dims, "dims")?;
        *out = Box::into_raw(Box::new(SeqcModel {
            model: m,
            sigs,
            dims,
        }));
        Ok(())
    })
}

/// Frees a model from `seqc_model_load` and everything its queries returned. Null is a
/// no-op. No other thread may be using the model.
///
/// # Safety
/// `model` is null or a model from `seqc_model_load` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_free(model: *mut SeqcModel) {
    if !model.is_null() {
        // SAFETY: from Box::into_raw in seqc_model_load, freed once (the caller's contract).
        // A panic in a destructor cannot be reported here; it is contained.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(unsafe { Box::from_raw(model) })
        }));
    }
}

/// `*count` = the number of the model's tensors of `kind` (a `SeqcKind` code).
///
/// # Safety
/// `model` is null or a live model; `count` is null or points at a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_count(
    model: *const SeqcModel,
    kind: u32,
    count: *mut usize,
) -> SeqcStatus {
    guard("seqc_model_count", || {
        // SAFETY (both): the caller's contract above.
        let out = unsafe { ffi::out(count, "count") }?;
        *out = 0;
        let m = unsafe { ffi::arg(model, "model") }?;
        *out = m.sigs(SeqcKind::decode(kind)?).len();
        Ok(())
    })
}

/// `*info` = the name, dtype and symbolic shape of the model's tensor `index` of `kind` (a
/// `SeqcKind` code), in the artifact's order. Fails with `SEQC_STATUS_OUT_OF_RANGE` when
/// `index` is not below `seqc_model_count`.
///
/// # Safety
/// `model` is null or a live model; `info` is null or points at a writable `SeqcTensorInfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_tensor(
    model: *const SeqcModel,
    kind: u32,
    index: usize,
    info: *mut SeqcTensorInfo,
) -> SeqcStatus {
    guard("seqc_model_tensor", || {
        // SAFETY (both): the caller's contract above.
        let out = unsafe { ffi::out(info, "info") }?;
        *out = SeqcTensorInfo {
            name: std::ptr::null(),
            dtype: SeqcDtype::F32,
            rank: 0,
            shape: std::ptr::null(),
        };
        let m = unsafe { ffi::arg(model, "model") }?;
        let kind = SeqcKind::decode(kind)?;
        let sigs = m.sigs(kind);
        let what = format!("the model has {} {kind:?} tensors", sigs.len());
        let s = &sigs[ffi::index(index, sigs.len(), &what.to_lowercase())?];
        *out = SeqcTensorInfo {
            name: s.name.ptr(0),
            dtype: s.dtype,
            rank: s.shape.len(),
            shape: s.shape.array(),
        };
        Ok(())
    })
}

/// `*count` = the number of the model's symbolic dims (e.g. `B`, `T`).
///
/// # Safety
/// `model` is null or a live model; `count` is null or points at a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_dim_count(
    model: *const SeqcModel,
    count: *mut usize,
) -> SeqcStatus {
    guard("seqc_model_dim_count", || {
        // SAFETY (both): the caller's contract above.
        let out = unsafe { ffi::out(count, "count") }?;
        *out = 0;
        *out = unsafe { ffi::arg(model, "model") }?.dims.len();
        Ok(())
    })
}

/// `*name` = the name of the model's dim `index`. The string belongs to the model.
///
/// # Safety
/// `model` is null or a live model; `name` is null or points at a writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_dim_name(
    model: *const SeqcModel,
    index: usize,
    name: *mut *const c_char,
) -> SeqcStatus {
    guard("seqc_model_dim_name", || {
        // SAFETY (both): the caller's contract above.
        let out = unsafe { ffi::out(name, "name") }?;
        *out = std::ptr::null();
        let m = unsafe { ffi::arg(model, "model") }?;
        let n = m.dims.len();
        *out = m
            .dims
            .ptr(ffi::index(index, n, &format!("the model has {n} dims"))?);
        Ok(())
    })
}
