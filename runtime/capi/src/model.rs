//! Loading a model from C and asking it about itself: `seqc_model_load` / `seqc_model_free`,
//! and queries of its inputs, parameters, outputs (name, dtype, symbolic shape) and dims. Every
//! string a query returns is built once at load time and owned by the model.

use crate::ffi;
use crate::status::{Failure, SeqcDtype, SeqcKind, SeqcStatus, guard};
use seqc_runtime::artifact::TensorSig;
use seqc_runtime::model::device::DeviceParseError;
use seqc_runtime::model::{Device, Options};
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
/// machine's available parallelism. The model runs on the CPU (see `seqc_model_load_on`).
/// On success `*model` is a new model to free with `seqc_model_free`; on failure it is null.
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
        // SAFETY: the caller's contract above.
        unsafe { load(artifact_dir, weights_path, threads, None, model) }
    })
}

/// Like `seqc_model_load`, on the device named by `device`: `"cpu"`, `"cuda"` (the first
/// GPU) or `"cuda:N"` (GPU number N). On a GPU the weights are copied to the device once;
/// `threads` is then unused, and the calls of one model run one at a time.
///
/// Fails as `seqc_model_load` does, and with `SEQC_STATUS_INVALID_ARGUMENT` (`device` is not
/// one of those forms), `SEQC_STATUS_DEVICE` (a library built without CUDA, no CUDA driver,
/// no such GPU, or the driver refuses the artifact's PTX) or `SEQC_STATUS_ARTIFACT` (the
/// artifact has no GPU code, or none for this GPU's compute capability).
///
/// # Safety
/// As `seqc_model_load`; `device` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seqc_model_load_on(
    artifact_dir: *const c_char,
    weights_path: *const c_char,
    threads: usize,
    device: *const c_char,
    model: *mut *mut SeqcModel,
) -> SeqcStatus {
    guard("seqc_model_load_on", || {
        // SAFETY: the caller's contract above.
        unsafe { load(artifact_dir, weights_path, threads, Some(device), model) }
    })
}

/// The body of both loads; `device` is `None` for the CPU, else the caller's string.
///
/// # Safety
/// The contracts of `seqc_model_load_on`.
unsafe fn load(
    artifact_dir: *const c_char,
    weights_path: *const c_char,
    threads: usize,
    device: Option<*const c_char>,
    model: *mut *mut SeqcModel,
) -> Result<(), Failure> {
    // SAFETY (all): the caller's contract.
    let out = unsafe { ffi::out(model, "model") }?;
    *out = std::ptr::null_mut();
    let device = match device {
        None => Device::Cpu,
        Some(d) => {
            unsafe { ffi::string(d, "device") }?
                .parse()
                .map_err(|e: DeviceParseError| {
                    Failure::new(SeqcStatus::InvalidArgument, format!("`device`: {e}"))
                })?
        }
    };
    let dir = unsafe { ffi::string(artifact_dir, "artifact_dir") }?;
    let weights = if weights_path.is_null() {
        Weights::default()
    } else {
        Weights::open(&[unsafe { ffi::string(weights_path, "weights_path") }?])?
    };
    let opts = Options {
        threads: (threads > 0).then_some(threads),
        device,
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

#[cfg(test)]
mod tests {
    use super::*;
    use seqc_runtime::artifact::{FileSig, GpuSig, Manifest, PtxModuleSig};
    use std::ffi::CStr;

    /// A GPU-only artifact without kernels (its PTX file need not exist: a load on the CPU
    /// or without a driver stops before reading it).
    fn artifact() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        Manifest {
            format_version: seqc_runtime::artifact::FORMAT_VERSION,
            seqc_version: "test".into(),
            spec_hash: "0".into(),
            cpu: None,
            gpu: Some(GpuSig {
                modules: vec![PtxModuleSig {
                    arch: "sm_80".into(),
                    file: FileSig {
                        file: "m.ptx".into(),
                        hash: "0".into(),
                        bytes: 0,
                    },
                }],
                launches: Vec::new(),
            }),
            dims: Vec::new(),
            inputs: Vec::new(),
            params: Vec::new(),
            outputs: Vec::new(),
            buffers: Vec::new(),
            kernels: Vec::new(),
        }
        .write(tmp.path())
        .unwrap();
        tmp
    }

    /// Loads with `device` (null when `None`); the status, the message, and that the
    /// out-parameter was left null.
    fn load_on(dir: &Path, device: Option<&CStr>) -> (SeqcStatus, String) {
        let dir = CString::new(dir.display().to_string()).unwrap();
        let mut m: *mut SeqcModel = std::ptr::dangling_mut();
        let d = device.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: valid strings or null, and a writable out-pointer.
        let s = unsafe { seqc_model_load_on(dir.as_ptr(), std::ptr::null(), 0, d, &mut m) };
        assert!(m.is_null());
        // SAFETY: never null, NUL-terminated.
        let msg = unsafe { CStr::from_ptr(crate::seqc_last_error()) };
        (s, msg.to_string_lossy().into_owned())
    }

    #[test]
    fn load_on_refuses_a_bad_device_string_and_a_missing_driver() {
        let tmp = artifact();
        let (s, m) = load_on(tmp.path(), None);
        assert_eq!(s, SeqcStatus::NullArgument, "{m}");
        assert!(m.starts_with("seqc_model_load_on: `device`"), "{m}");
        let (s, m) = load_on(tmp.path(), Some(c"gpu:0"));
        assert_eq!(s, SeqcStatus::InvalidArgument, "{m}");
        assert!(m.contains("`gpu:0`") && m.contains("`cuda:N`"), "{m}");
        // On the CPU, the artifact's missing CPU code is reported.
        let (s, m) = load_on(tmp.path(), Some(c"cpu"));
        assert_eq!(s, SeqcStatus::Artifact, "{m}");
        assert!(m.contains("no CPU code"), "{m}");
        if seqc_runtime::model::cuda_driver_present() {
            eprintln!("skipped the no-driver case: this machine has a CUDA driver");
            return;
        }
        let (s, m) = load_on(tmp.path(), Some(c"cuda:2"));
        assert_eq!(s, SeqcStatus::Device, "{m}");
        let why = if cfg!(feature = "cuda") {
            "libcuda.so"
        } else {
            "`cuda` feature"
        };
        let path = format!("`{}`", tmp.path().display());
        assert!(
            m.contains("`cuda:2`") && m.contains(&path) && m.contains(why),
            "{m}"
        );
    }
}
