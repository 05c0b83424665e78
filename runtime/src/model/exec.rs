//! Calling generated kernels: the shared object is opened with libloading, every kernel
//! symbol resolved once, and a parallel kernel's outer range split over the model's thread
//! pool. This is the only place the runtime calls foreign code.

// unsafe: resolving symbols in and calling into the generated shared object is foreign code.
#![allow(unsafe_code)]

use super::ModelError;
use crate::artifact::KernelSig;
use std::path::Path;

/// `void k(void **bufs, const int64_t *dims, int64_t begin, int64_t end, int64_t *status)`.
type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *mut i64);

/// The opened library and its kernels, in execution order.
pub(super) struct Kernels {
    fns: Vec<KernelFn>,
    // Dropped after `fns` is no longer usable: keeps the code mapped.
    _lib: libloading::Library,
}

/// Pointers shared with worker threads for one kernel call.
#[derive(Clone, Copy)]
struct Args {
    bufs: *const *mut u8,
    dims: *const i64,
}

// SAFETY: the pointed-to tables outlive every thread that uses them (the threads run inside
// a scope that ends before `run_kernel` returns), and the kernels write disjoint parts of
// their output for disjoint ranges of a parallel loop.
unsafe impl Send for Args {}
unsafe impl Sync for Args {}

impl Kernels {
    pub(super) fn open(lib: &Path, sigs: &[KernelSig], artifact: &str) -> Result<Self, ModelError> {
        let err = |reason: String| crate::artifact::ArtifactError::Library {
            path: artifact.to_string(),
            file: lib.display().to_string(),
            reason,
        };
        // SAFETY: loading runs the library's initialisers; the library was produced by seqc
        // (the manifest's hash matched) and has no initialisers of its own.
        let l = unsafe { libloading::Library::new(lib) }.map_err(|e| err(e.to_string()))?;
        let mut fns = Vec::with_capacity(sigs.len());
        for k in sigs {
            // SAFETY: every kernel symbol is generated with exactly the `KernelFn` signature.
            let f: KernelFn = unsafe {
                *l.get::<KernelFn>(k.symbol.as_bytes())
                    .map_err(|e| err(format!("kernel `{}`: {e}", k.symbol)))?
            };
            fns.push(f);
        }
        Ok(Kernels { fns, _lib: l })
    }

    /// Runs kernel `i` over [0, extent), split over `pool` when `parallel`. Returns the
    /// first non-zero status any part reported.
    ///
    /// Safety contract (upheld by `Model::run`): `bufs` holds a valid pointer for every
    /// buffer, each at least as large as the manifest's size at `dims`, arena buffers not
    /// overlapping while live; `dims` holds every dim's value.
    pub(super) fn run_kernel(
        &self,
        i: usize,
        bufs: &[*mut u8],
        dims: &[i64],
        extent: i64,
        parallel: bool,
        pool: &rayon::ThreadPool,
    ) -> i64 {
        let f = self.fns[i];
        let args = Args {
            bufs: bufs.as_ptr(),
            dims: dims.as_ptr(),
        };
        let threads = pool.current_num_threads() as i64;
        if !parallel || extent < 2 || threads < 2 {
            // On a pool thread, whose stack is sized for the kernels' stack panels (the
            // caller's thread may have a small one).
            return pool.install(|| {
                let a = args;
                let mut status = 0i64;
                // SAFETY: see the contract above.
                unsafe { f(a.bufs, a.dims, 0, extent, &mut status) };
                status
            });
        }
        let parts = threads.min(extent);
        let mut status = vec![0i64; parts as usize];
        pool.scope(|s| {
            for (p, st) in status.iter_mut().enumerate() {
                let p = p as i64;
                let (begin, end) = (extent * p / parts, extent * (p + 1) / parts);
                s.spawn(move |_| {
                    let a = args;
                    // SAFETY: see the contract above; parts cover disjoint ranges.
                    unsafe { f(a.bufs, a.dims, begin, end, st) };
                });
            }
        });
        status.into_iter().find(|s| *s != 0).unwrap_or(0)
    }
}
