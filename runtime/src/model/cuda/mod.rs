//! The GPU path (feature `cuda`): an artifact's PTX module loaded on an NVIDIA GPU through
//! the CUDA driver API (cudarc, libcuda opened at run time). Loading checks the driver, the
//! device, the artifact's GPU code and picks its module, resolves every launch's entry once,
//! and copies the parameters and dim-independent seeded fills to the device once; `run.rs`
//! runs a call. The only place, with `exec.rs`, where the runtime calls foreign code.

// unsafe: driver API calls (module loading, device memory, launches) through cudarc's raw
// bindings; each states its SAFETY contract.
#![allow(unsafe_code)]

mod run;

use super::device::{self, Device};
use super::{ModelError, Weights, numel};
use crate::artifact::{BufferKind, Manifest};
use crate::sym::DimValues;
use cudarc::driver::{CudaContext, CudaStream, DriverError, result, sys};
use std::ffi::{CString, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Whether libcuda can be opened (every driver call before this check would panic).
pub(super) fn driver_present() -> bool {
    // SAFETY: only tries to open the driver library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// A driver error as its name and description, e.g. `CUDA_ERROR_INVALID_PTX (a PTX JIT
/// compilation failed)`.
fn describe(e: DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// One device allocation, freed on drop.
struct DevBuf {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

impl DevBuf {
    /// At least `bytes` (and at least one cache line: the driver refuses zero bytes).
    fn alloc(ctx: &Arc<CudaContext>, bytes: usize) -> Result<DevBuf, DriverError> {
        let bytes = bytes.max(super::plan::ALIGN);
        ctx.bind_to_thread()?;
        // SAFETY: the context is current; the memory is only reached through `ptr`.
        let ptr = unsafe { result::malloc_sync(bytes) }?;
        Ok(DevBuf {
            ptr,
            bytes,
            ctx: Arc::clone(ctx),
        })
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // Nothing to report to from a destructor; a failure leaks device memory at worst.
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by `alloc` in this context, freed once; no work using it is
            // in flight (every call synchronises its stream before returning).
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

/// A loaded PTX module, unloaded on drop.
struct Module {
    raw: sys::CUmodule,
    ctx: Arc<CudaContext>,
}

impl Module {
    /// JIT-compiles `ptx` for the context's device; the error carries the JIT's log.
    fn load(ctx: &Arc<CudaContext>, ptx: &str) -> Result<Module, String> {
        let text = CString::new(ptx).map_err(|_| "the PTX text holds a NUL byte".to_string())?;
        ctx.bind_to_thread().map_err(describe)?;
        let mut log = vec![0u8; 16 << 10];
        let mut opts = [
            sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
            sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
        ];
        let mut vals: [*mut c_void; 2] = [
            log.as_mut_ptr().cast(),
            std::ptr::without_provenance_mut(log.len()),
        ];
        let mut raw: sys::CUmodule = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated PTX; the options are the log buffer and its size,
        // which outlive the call.
        let r = unsafe {
            sys::cuModuleLoadDataEx(
                &mut raw,
                text.as_ptr().cast(),
                opts.len() as u32,
                opts.as_mut_ptr(),
                vals.as_mut_ptr(),
            )
        };
        r.result().map_err(|e| {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            match log.trim() {
                "" => describe(e),
                log => format!("{}: {log}", describe(e)),
            }
        })?;
        Ok(Module {
            raw,
            ctx: Arc::clone(ctx),
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: loaded by `Module::load`, unloaded once, after every function of it
            // stopped being used (`Gpu` drops its functions' users first).
            let _ = unsafe { result::module::unload(self.raw) };
        }
    }
}

/// What one call needs on the device, kept across calls (behind the model's lock).
struct State {
    stream: Arc<CudaStream>,
    /// The arena (at the CPU plan's offsets), then the inputs and the per-call seeded fills;
    /// grown when a call needs more.
    scratch: Option<DevBuf>,
    /// Every buffer's device pointer (the `bufs` argument).
    table: DevBuf,
    /// The dims' values (the `dims` argument).
    dims: DevBuf,
    /// One status word per kernel.
    status: DevBuf,
}

/// A model's GPU side.
pub(super) struct Gpu {
    device: Device,
    /// The entry of each launch, in kernel order.
    funcs: Vec<sys::CUfunction>,
    /// Device copies of the parameters and of the seeded fills whose size depends on no
    /// dim, by buffer index.
    fixed: Vec<Option<DevBuf>>,
    /// Calls on one model are serialised: they share the stream and the scratch memory.
    state: Mutex<State>,
    _module: Module,
    ctx: Arc<CudaContext>,
}

// SAFETY: the raw handles (`CUfunction`s of `module`) are plain driver handles, valid in any
// thread once the context is bound (every use binds it), and only used while `module` lives;
// launches and copies happen under the `state` lock.
unsafe impl Send for Gpu {}
// SAFETY: as above; nothing is mutated through `&Gpu` outside the lock.
unsafe impl Sync for Gpu {}

/// The message of a device that cannot be counted or is not there.
fn devices(count: usize) -> String {
    match count {
        0 => "this machine has no CUDA device".into(),
        1 => "this machine has 1 CUDA device, `cuda:0`".into(),
        n => format!(
            "this machine has {n} CUDA devices, `cuda:0` to `cuda:{}`",
            n - 1
        ),
    }
}

impl Gpu {
    /// Opens device `ordinal` and the artifact's module for it; checks in this order: the
    /// driver, the device, the artifact's GPU code, a module for the device's capability.
    pub(super) fn load(dir: &Path, m: &Manifest, ordinal: usize) -> Result<Gpu, ModelError> {
        let path = dir.display().to_string();
        let device = Device::Cuda(ordinal);
        let fail = |reason: String| ModelError::Device {
            device: device.to_string(),
            reason: format!("cannot load artifact `{path}`: {reason}"),
        };
        if !driver_present() {
            return Err(fail(
                "no CUDA driver found (libcuda.so cannot be loaded; is the NVIDIA driver \
                 installed?)"
                    .into(),
            ));
        }
        let count = match result::init() {
            Ok(()) => result::device::get_count()
                .map_err(|e| fail(format!("cannot count the CUDA devices: {}", describe(e))))?,
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => 0,
            Err(e) => return Err(fail(format!("the CUDA driver fails: {}", describe(e)))),
        };
        let count = usize::try_from(count).unwrap_or(0);
        if ordinal >= count {
            return Err(fail(format!("no such device ({})", devices(count))));
        }
        let gpu = device::gpu_code(m, &path)?;
        let driver = |what: &str| {
            let what = what.to_string();
            move |e: DriverError| fail(format!("{what}: {}", describe(e)))
        };
        let ctx = CudaContext::new(ordinal).map_err(driver("cannot open the device"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("cannot read the compute capability"))?;
        let cc = (
            u32::try_from(major).unwrap_or(0),
            u32::try_from(minor).unwrap_or(0),
        );
        let sig = device::module_for(gpu, cc, device, &path)?;
        let ptx = m.checked_ptx(dir, &sig.arch)?;
        let module = Module::load(&ctx, &ptx)
            .map_err(|r| fail(format!("its {} PTX does not load: {r}", sig.arch)))?;
        let mut funcs = Vec::with_capacity(gpu.launches.len());
        for l in &gpu.launches {
            let name = CString::new(l.symbol.as_str()).unwrap_or_default();
            // SAFETY: `module` is loaded and current; the name is NUL-terminated.
            let f = unsafe { result::module::get_function(module.raw, name) }
                .map_err(driver(&format!("kernel `{}` is not in the PTX", l.symbol)))?;
            if l.shared_bytes > 48 << 10 {
                // SAFETY: `f` is a function of the loaded module.
                unsafe {
                    result::function::set_function_attribute(
                        f,
                        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        i32::try_from(l.shared_bytes).unwrap_or(i32::MAX),
                    )
                }
                .map_err(driver(&format!(
                    "kernel `{}` asks {} bytes of shared memory",
                    l.symbol, l.shared_bytes
                )))?;
            }
            funcs.push(f);
        }
        let alloc = |bytes| DevBuf::alloc(&ctx, bytes).map_err(driver("cannot allocate"));
        let state = State {
            stream: ctx.new_stream().map_err(driver("cannot create a stream"))?,
            scratch: None,
            table: alloc(8 * m.buffers.len())?,
            dims: alloc(8 * m.dims.len())?,
            status: alloc(8 * m.kernels.len())?,
        };
        Ok(Gpu {
            device,
            funcs,
            fixed: (0..m.buffers.len()).map(|_| None).collect(),
            state: Mutex::new(state),
            _module: module,
            ctx,
        })
    }

    /// A failure of the driver during a call.
    fn fail(&self, what: impl std::fmt::Display) -> impl Fn(DriverError) -> ModelError {
        let (device, what) = (self.device.to_string(), what.to_string());
        move |e| ModelError::Device {
            device: device.clone(),
            reason: format!("{what}: {}", describe(e)),
        }
    }

    /// Copies the (checked) weights and the seeded fills of constant size to the device.
    pub(super) fn upload_params(&mut self, m: &Manifest, w: &Weights) -> Result<(), ModelError> {
        let none = DimValues::new();
        for (k, b) in m.buffers.iter().enumerate() {
            let fill;
            let bytes: &[u8] = match &b.kind {
                BufferKind::Param(name) => w.tensors[name].as_bytes(),
                BufferKind::Random {
                    seed,
                    normal,
                    torch,
                } if b.numel.eval(&none).is_ok() => {
                    let n = numel(m, k, &none)?;
                    fill = crate::rng::fill_dist(*seed, n, *normal, *torch);
                    f32_bytes(&fill)
                }
                _ => continue,
            };
            let what = format!("copying buffer {k} to the device");
            let buf = DevBuf::alloc(&self.ctx, bytes.len()).map_err(self.fail(&what))?;
            if !bytes.is_empty() {
                // SAFETY: `buf` holds at least `bytes.len()` bytes; the context is current.
                unsafe { result::memcpy_htod_sync(buf.ptr, bytes) }.map_err(self.fail(&what))?;
            }
            self.fixed[k] = Some(buf);
        }
        Ok(())
    }
}

/// The bytes of f32s.
fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: any f32 is 4 initialised bytes; u8 needs no alignment.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}
