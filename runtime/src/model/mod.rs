//! A loaded, runnable model: an artifact checked and opened, its weights bound, and a thread
//! pool. [`Model::run`] binds the symbolic dims from the inputs' shapes, checks every input,
//! places the arena for those dims, runs the kernels in order and returns the outputs;
//! [`Model::run_into`] does the same into output tensors the caller keeps across calls (the
//! kernels write them in place: no copy, no fresh pages per call).
//!
//! A `Model` is immutable after loading: it can be called repeatedly and from several
//! threads at once (each call has its own arena). Memory-mapped weight files must not be
//! modified or truncated while the model is alive.
//!
//! ```no_run
//! use seqc_runtime::{HostTensor, Model, Weights};
//! use std::collections::BTreeMap;
//!
//! let weights = Weights::open(&["model.safetensors"])?;
//! let model = Model::load("model.seqc".as_ref(), weights)?;
//! let mut inputs = BTreeMap::new();
//! inputs.insert("x".to_string(), HostTensor::f32(vec![1, 7, 64], vec![0.0; 7 * 64]));
//! let outputs = model.run(&inputs, &Default::default())?;
//! println!("{:?}", outputs["y"].shape);
//! # Ok::<(), seqc_runtime::ModelError>(())
//! ```

#[cfg(feature = "cuda")]
mod cuda;
pub mod device;
mod error;
mod exec;
pub mod features;
mod outputs;
pub mod plan;
mod weights;

pub use device::Device;
pub use error::ModelError;
pub use weights::{Weight, Weights};

use crate::artifact::{ArtifactError, BufferKind, KernelSig, Manifest, TensorSig};
use crate::sym::DimValues;
use crate::{DType, HostTensor, TensorData};
use outputs::{check_outputs, direct_outputs, empty_data, fit};
use std::collections::BTreeMap;
use std::path::Path;

/// The stack of each worker thread: generated kernels keep packed panels of a block product
/// (about 0.7 MiB) on the stack, and every kernel runs on a worker thread.
pub const KERNEL_STACK_BYTES: usize = 8 << 20;

/// Load-time options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Worker threads for parallel loops (default: the machine's available parallelism).
    pub threads: Option<usize>,
    /// Where the kernels run (default: the CPU).
    pub device: Device,
}

/// A compiled model ready to run.
pub struct Model {
    manifest: Manifest,
    weights: Weights,
    device: Device,
    exec: Exec,
}

/// How a model's kernels run.
enum Exec {
    Cpu(CpuExec),
    #[cfg(feature = "cuda")]
    Cuda(cuda::Gpu),
}

/// The CPU path: the shared object's kernels and a thread pool.
struct CpuExec {
    kernels: exec::Kernels,
    pool: rayon::ThreadPool,
    /// Arenas of finished calls, reused (not cleared) by later ones: a fresh allocation of tens of
    /// MiB costs a page fault per 4 KiB on first touch, every call.
    arenas: std::sync::Mutex<Vec<Vec<u64>>>,
}

/// Whether a CUDA driver (libcuda) can be loaded; always false without the `cuda` feature.
pub fn cuda_driver_present() -> bool {
    #[cfg(feature = "cuda")]
    {
        cuda::driver_present()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

fn describe(dtype: DType, shape: &[impl std::fmt::Display]) -> String {
    let s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{dtype}[{}]", s.join(", "))
}

impl Model {
    /// Loads the artifact directory `dir` with `weights`, using default options.
    pub fn load(dir: &Path, weights: Weights) -> Result<Model, ModelError> {
        Self::load_with(dir, weights, &Options::default())
    }

    /// Loads an artifact: checks the format version, the target against this CPU, the
    /// library's hash, and the weights against the parameter list (names, dtypes, ranks and
    /// constant dims; symbolic dims are checked per call). On [`Device::Cuda`]: the runtime's
    /// `cuda` feature, the driver, the device, the artifact's GPU code and a PTX module for the
    /// device (in that order), then the weights, which are copied to the device once.
    pub fn load_with(dir: &Path, weights: Weights, opts: &Options) -> Result<Model, ModelError> {
        let manifest = Manifest::read(dir)?;
        let exec = match opts.device {
            Device::Cpu => Exec::Cpu(CpuExec::load(dir, &manifest, &weights, opts)?),
            Device::Cuda(ordinal) => Self::load_cuda(dir, &manifest, &weights, ordinal)?,
        };
        Ok(Model {
            manifest,
            weights,
            device: opts.device,
            exec,
        })
    }

    #[cfg(feature = "cuda")]
    fn load_cuda(
        dir: &Path,
        m: &Manifest,
        weights: &Weights,
        ordinal: usize,
    ) -> Result<Exec, ModelError> {
        let mut gpu = cuda::Gpu::load(dir, m, ordinal)?;
        check_weights(m, weights)?;
        gpu.upload_params(m, weights)?;
        Ok(Exec::Cuda(gpu))
    }

    #[cfg(not(feature = "cuda"))]
    fn load_cuda(
        dir: &Path,
        _: &Manifest,
        _: &Weights,
        ordinal: usize,
    ) -> Result<Exec, ModelError> {
        Err(ModelError::Device {
            device: Device::Cuda(ordinal).to_string(),
            reason: format!(
                "cannot load artifact `{}`: this runtime was built without its `cuda` feature \
                 (build seqc-runtime with `--features cuda`)",
                dir.display()
            ),
        })
    }

    /// The number of worker threads parallel loops are split over (1 on a GPU, whose
    /// kernels the host only launches).
    pub fn threads(&self) -> usize {
        match &self.exec {
            Exec::Cpu(c) => c.pool.current_num_threads(),
            #[cfg(feature = "cuda")]
            Exec::Cuda(_) => 1,
        }
    }

    /// The device the model was loaded on.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Runs the model. Dims are bound from the inputs' (and weights') shapes; `dims` gives
    /// any that no shape determines, and must agree with the shapes for the others.
    pub fn run(
        &self,
        inputs: &BTreeMap<String, HostTensor>,
        dims: &DimValues,
    ) -> Result<BTreeMap<String, HostTensor>, ModelError> {
        let mut out = BTreeMap::new();
        self.run_into(inputs, dims, &mut out)?;
        Ok(out)
    }

    /// Runs the model like [`Model::run`], writing the outputs into `outputs`. An entry
    /// already there under an output's name (of the output's dtype; any shape) has its storage
    /// reused: it is resized to the output's shape and the kernels write into it directly, so
    /// a caller that keeps the map across calls pays no allocation, copy or first-touch page
    /// faults for the outputs (tens of MiB per call for a long sequence). Missing entries are
    /// inserted. An entry that names no output, or holds another dtype, is refused.
    ///
    /// On error, the entries' contents are unspecified (their shapes may already be the new
    /// ones); nothing else about them changes.
    pub fn run_into(
        &self,
        inputs: &BTreeMap<String, HostTensor>,
        dims: &DimValues,
        outputs: &mut BTreeMap<String, HostTensor>,
    ) -> Result<(), ModelError> {
        let m = &self.manifest;
        check_outputs(m, outputs)?;
        for name in inputs.keys() {
            if !m.inputs.iter().any(|t| &t.name == name) {
                return Err(ModelError::ExtraInput {
                    name: name.clone(),
                    known: m
                        .inputs
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let mut given: Vec<(&TensorSig, DType, &[usize], &'static str)> = Vec::new();
        for sig in &m.inputs {
            let t = inputs
                .get(&sig.name)
                .ok_or_else(|| ModelError::MissingInput {
                    name: sig.name.clone(),
                    expected: describe(sig.dtype, &sig.shape),
                })?;
            given.push((sig, t.dtype(), &t.shape, "input"));
        }
        for sig in &m.params {
            let w = &self.weights.tensors[&sig.name];
            given.push((sig, w.dtype, &w.shape, "weight"));
        }
        let bound = bind_dims(m, &given, dims)?;
        match &self.exec {
            Exec::Cpu(cpu) => self.run_cpu(cpu, inputs, &bound, outputs),
            #[cfg(feature = "cuda")]
            Exec::Cuda(gpu) => gpu.run(m, &self.weights, inputs, &bound, outputs),
        }
    }

    /// The CPU part of [`Model::run_into`], once the dims are bound.
    fn run_cpu(
        &self,
        cpu: &CpuExec,
        inputs: &BTreeMap<String, HostTensor>,
        bound: &DimValues,
        outputs: &mut BTreeMap<String, HostTensor>,
    ) -> Result<(), ModelError> {
        let m = &self.manifest;
        let dim_vals: Vec<i64> = m.dims.iter().map(|d| bound[d]).collect();
        // Buffer pointers: inputs, weights, random fills and the arena.
        let mut ptrs: Vec<*mut u8> = vec![std::ptr::null_mut(); m.buffers.len()];
        let mut randoms: Vec<Vec<f32>> = Vec::new();
        // Outputs the kernels write straight into the caller's tensors.
        let direct = direct_outputs(m, bound)?;
        for (sig, shape) in &direct {
            let t = outputs
                .entry(sig.name.clone())
                .or_insert_with(|| HostTensor {
                    shape: Vec::new(),
                    data: empty_data(sig.dtype),
                });
            ptrs[sig.buffer] = fit(t, shape);
        }
        let (arena_bufs, reqs) = arena_requests(m, bound, |k| ptrs[k].is_null())?;
        for (k, b) in m.buffers.iter().enumerate() {
            match &b.kind {
                BufferKind::Input(name) => {
                    ptrs[k] = weights::tensor_ptr(&inputs[name]).cast_mut();
                }
                BufferKind::Param(name) => {
                    ptrs[k] = self.weights.tensors[name].ptr().cast_mut();
                }
                BufferKind::Random {
                    seed,
                    normal,
                    torch,
                } => {
                    let n = numel(m, k, bound)?;
                    let mut v = crate::rng::fill_dist(*seed, n, *normal, *torch);
                    ptrs[k] = v.as_mut_ptr().cast();
                    randoms.push(v);
                }
                BufferKind::Arena { .. } => {}
            }
        }
        let (offsets, total) = plan::place(&reqs);
        let mut arena = cpu.take_arena((total + plan::ALIGN) / 8 + 1);
        let base = arena.as_mut_ptr().cast::<u8>();
        let skew = base.align_offset(plan::ALIGN);
        for (k, off) in arena_bufs.iter().zip(&offsets) {
            ptrs[*k] = base.wrapping_add(skew + off);
        }
        for (i, k) in m.kernels.iter().enumerate() {
            let extent = k.extent.eval(bound).map_err(|reason| ModelError::Size {
                what: format!("kernel `{}`", k.symbol),
                reason,
            })?;
            let status = cpu
                .kernels
                .run_kernel(i, &ptrs, &dim_vals, extent, k.parallel, &cpu.pool);
            if status != 0 {
                return Err(kernel_error(k, status));
            }
        }
        for sig in &m.outputs {
            if direct.iter().any(|(d, _)| d.name == sig.name) {
                continue;
            }
            let shape = eval_shape(sig, bound)?;
            let n = shape.iter().product::<usize>();
            let t = read_buffer(ptrs[sig.buffer], sig.dtype, n);
            outputs.insert(sig.name.clone(), HostTensor::new(&sig.name, shape, t)?);
        }
        drop(randoms);
        cpu.give_back(arena);
        Ok(())
    }

    /// The bytes of the arena a call at `dims` places (every intermediate and output buffer,
    /// first-fit by liveness; inputs, weights and seeded fills are not in it). Every dim of
    /// the model must be given.
    pub fn arena_bytes(&self, dims: &DimValues) -> Result<usize, ModelError> {
        arena_bytes(&self.manifest, dims)
    }
}

impl CpuExec {
    /// Checks the target and the library, opens it, checks the weights, starts the pool.
    fn load(
        dir: &Path,
        manifest: &Manifest,
        weights: &Weights,
        opts: &Options,
    ) -> Result<CpuExec, ModelError> {
        let path = dir.display().to_string();
        check_target(manifest, &path)?;
        let lib = manifest.checked_library(dir)?;
        let kernels = exec::Kernels::open(&lib, &manifest.kernels, &path)?;
        check_weights(manifest, weights)?;
        let threads = opts.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .stack_size(KERNEL_STACK_BYTES)
            .build()
            .map_err(|e| ModelError::Size {
                what: "thread pool".into(),
                reason: e.to_string(),
            })?;
        Ok(CpuExec {
            kernels,
            pool,
            arenas: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// An arena of `words` u64s: a kept one if one is large enough, else a new one. Its
    /// contents are unspecified: kernels write every arena element before they read it (the
    /// bytes are shared by liveness, so no buffer can count on starting at zero), and a kept
    /// arena is not cleared — clearing a 100 MB arena cost every call a `memset`. Debug builds
    /// (the tests) fill it with a NaN pattern instead, so a kernel that reads an element
    /// before writing it makes the tests fail.
    fn take_arena(&self, words: usize) -> Vec<u64> {
        let kept = self.arenas.lock().ok().and_then(|mut v| {
            let i = v.iter().position(|a| a.len() >= words)?;
            Some(v.swap_remove(i))
        });
        let mut a = match kept {
            Some(mut a) => {
                a.truncate(words);
                a
            }
            None => vec![0u64; words],
        };
        if cfg!(debug_assertions) {
            a.fill(ARENA_POISON);
        }
        a
    }

    /// Keeps an arena for later calls (at most one per worker thread plus one).
    fn give_back(&self, arena: Vec<u64>) {
        if let Ok(mut v) = self.arenas.lock()
            && v.len() <= self.pool.current_num_threads()
        {
            v.push(arena);
        }
    }
}

/// The error of kernel `k` having reported `status` (non-zero), on any device.
fn kernel_error(k: &KernelSig, status: i64) -> ModelError {
    ModelError::Kernel {
        symbol: k.symbol.clone(),
        node: k.node.clone(),
        op: k.op.clone(),
        reason: match status {
            1 => "an index read from data is out of range".into(),
            2 => "integer division by zero".into(),
            s => format!("status {s}"),
        },
    }
}

/// Copies `n` elements of `dtype` out of a buffer.
// unsafe: reads an arena/input buffer through a raw pointer (see the SAFETY note inside).
#[allow(unsafe_code)]
fn read_buffer(p: *const u8, dtype: DType, n: usize) -> TensorData {
    // SAFETY: `p` points at a live buffer of at least `n` elements of `dtype`, aligned for
    // it (inputs and weights by construction, arena offsets by `plan::ALIGN`), that no
    // kernel writes any more.
    unsafe {
        match dtype {
            DType::F32 => TensorData::F32(std::slice::from_raw_parts(p.cast(), n).to_vec()),
            DType::F16 => TensorData::F16(std::slice::from_raw_parts(p.cast(), n).to_vec()),
            DType::BF16 => TensorData::BF16(std::slice::from_raw_parts(p.cast(), n).to_vec()),
            DType::I32 => TensorData::I32(std::slice::from_raw_parts(p.cast(), n).to_vec()),
            DType::I64 => TensorData::I64(std::slice::from_raw_parts(p.cast(), n).to_vec()),
            DType::Bool => TensorData::Bool(
                std::slice::from_raw_parts(p, n)
                    .iter()
                    .map(|b| *b != 0)
                    .collect(),
            ),
        }
    }
}

fn eval_shape(sig: &TensorSig, dims: &DimValues) -> Result<Vec<usize>, ModelError> {
    sig.shape
        .iter()
        .map(|d| {
            let v = d.eval(dims).map_err(|reason| ModelError::Size {
                what: format!("`{}`", sig.name),
                reason,
            })?;
            usize::try_from(v).map_err(|_| ModelError::Size {
                what: format!("`{}`", sig.name),
                reason: format!("dim {d} evaluates to {v}"),
            })
        })
        .collect()
}

/// Binds every dim: from shapes whose axis is exactly a dim, then `given`; checks that every
/// shape then evaluates to the tensor's actual shape and dtype.
fn bind_dims(
    m: &Manifest,
    tensors: &[(&TensorSig, DType, &[usize], &'static str)],
    given: &DimValues,
) -> Result<DimValues, ModelError> {
    let mut bound = DimValues::new();
    for (name, v) in given {
        if !m.dims.contains(name) {
            return Err(ModelError::Dim {
                dim: name.clone(),
                reason: format!(
                    "the model has no such dim (its dims: {})",
                    m.dims.join(", ")
                ),
            });
        }
        if *v < 0 {
            return Err(ModelError::Dim {
                dim: name.clone(),
                reason: format!("given as {v}; dims are non-negative"),
            });
        }
        bound.insert(name.clone(), *v);
    }
    for (sig, dtype, shape, kind) in tensors {
        let mismatch = || ModelError::Mismatch {
            kind,
            name: sig.name.clone(),
            expected: describe(sig.dtype, &sig.shape),
            found: describe(*dtype, shape),
        };
        if *dtype != sig.dtype || shape.len() != sig.shape.len() {
            return Err(mismatch());
        }
        for (d, &n) in sig.shape.iter().zip(shape.iter()) {
            if let Some(name) = d.as_dim() {
                bound.entry(name.to_string()).or_insert(n as i64);
            }
        }
    }
    if let Some(d) = m.dims.iter().find(|d| !bound.contains_key(*d)) {
        return Err(ModelError::Dim {
            dim: d.clone(),
            reason: "no input shape determines it; give its value".into(),
        });
    }
    for (sig, dtype, shape, kind) in tensors {
        let want = eval_shape(sig, &bound)?;
        if want != *shape {
            return Err(ModelError::Mismatch {
                kind,
                name: sig.name.clone(),
                expected: format!(
                    "{} = {}",
                    describe(sig.dtype, &sig.shape),
                    describe(sig.dtype, &want)
                ),
                found: describe(*dtype, shape),
            });
        }
    }
    Ok(bound)
}

/// The bytes of the arena a call of the artifact `m` places at `dims` (see
/// `Model::arena_bytes`; no weights needed).
pub fn arena_bytes(m: &Manifest, dims: &DimValues) -> Result<usize, ModelError> {
    let (_, reqs) = arena_requests(m, dims, |_| true)?;
    Ok(plan::place(&reqs).1)
}

/// What debug builds fill arenas with: two f32 quiet NaNs per word (also a NaN as f64, and
/// an out-of-range value as any index).
const ARENA_POISON: u64 = 0x7FC0_0001_7FC0_0001;

/// The element count of buffer `k` at `bound`, refused when it is not a usable size.
fn numel(m: &Manifest, k: usize, bound: &DimValues) -> Result<usize, ModelError> {
    let n = m.buffers[k]
        .numel
        .eval(bound)
        .map_err(|reason| ModelError::Size {
            what: format!("buffer {k}"),
            reason,
        })?;
    usize::try_from(n)
        .ok()
        .filter(|n| n.checked_mul(8).is_some_and(|b| b < (1usize << 46)))
        .ok_or_else(|| ModelError::Size {
            what: format!("buffer {k}"),
            reason: format!("{n} elements is not a usable size"),
        })
}

/// The arena buffers (indices into the manifest's buffers) that `placed` accepts, and their
/// placement requests.
fn arena_requests(
    m: &Manifest,
    bound: &DimValues,
    placed: impl Fn(usize) -> bool,
) -> Result<(Vec<usize>, Vec<plan::Request>), ModelError> {
    let (mut bufs, mut reqs) = (Vec::new(), Vec::new());
    for (k, b) in m.buffers.iter().enumerate() {
        if let BufferKind::Arena { first, last } = &b.kind
            && placed(k)
        {
            reqs.push(plan::Request {
                bytes: numel(m, k, bound)? * b.dtype.size_bytes(),
                first: *first,
                last: *last,
            });
            bufs.push(k);
        }
    }
    Ok((bufs, reqs))
}

/// The artifact's architecture and CPU features must be this machine's.
fn check_target(m: &Manifest, path: &str) -> Result<(), ModelError> {
    let Some(cpu) = &m.cpu else {
        // `checked_library` reports an artifact without CPU code.
        return Ok(());
    };
    let target = &cpu.target;
    let arch = features::triple_arch(&target.triple);
    if arch != std::env::consts::ARCH {
        return Err(ArtifactError::Target {
            path: path.to_string(),
            expected: target.triple.clone(),
            found: std::env::consts::ARCH.to_string(),
        }
        .into());
    }
    let missing: Vec<&str> = target
        .features
        .iter()
        .filter(|f| features::host_has(f) != Some(true))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(ArtifactError::Target {
            path: path.to_string(),
            expected: format!("a {} CPU with {}", target.cpu, target.features.join(",")),
            found: format!("a CPU lacking {}", missing.join(",")),
        }
        .into());
    }
    Ok(())
}

/// Every parameter present with its dtype, rank and constant dims; no extra tensors.
fn check_weights(m: &Manifest, w: &Weights) -> Result<(), ModelError> {
    for name in w.names() {
        if !m.params.iter().any(|p| p.name == name) {
            return Err(ModelError::ExtraWeight {
                name: name.to_string(),
                known: m
                    .params
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    for p in &m.params {
        let t = w
            .tensors
            .get(&p.name)
            .ok_or_else(|| ModelError::MissingWeight {
                name: p.name.clone(),
                expected: describe(p.dtype, &p.shape),
            })?;
        let consts_ok = p
            .shape
            .iter()
            .zip(&t.shape)
            .all(|(d, &n)| d.eval(&DimValues::new()).map_or(true, |v| v == n as i64));
        if t.dtype != p.dtype || t.shape.len() != p.shape.len() || !consts_ok {
            return Err(ModelError::Mismatch {
                kind: "weight",
                name: p.name.clone(),
                expected: describe(p.dtype, &p.shape),
                found: format!("{} (from {})", describe(t.dtype, &t.shape), t.source),
            });
        }
        if t.bytes() != t.shape.iter().product::<usize>() * t.dtype.size_bytes() {
            return Err(ModelError::Mismatch {
                kind: "weight",
                name: p.name.clone(),
                expected: format!(
                    "{} bytes",
                    t.shape.iter().product::<usize>() * t.dtype.size_bytes()
                ),
                found: format!("{} bytes", t.bytes()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<super::Model>();
    }
}
