//! One call on the GPU, after the dims are bound (by the CPU path's code): the arena placed
//! at the CPU plan's offsets in the cached device scratch, the inputs and per-call seeded
//! fills after it, the `bufs` table, dims and zeroed status words uploaded, every kernel
//! launched in order on the model's stream (a launch whose grid has a zero is skipped), one
//! synchronisation, the first non-zero status reported as on the CPU, the outputs copied
//! back into the caller's tensors.

use super::{DevBuf, Gpu, f32_bytes};
use crate::artifact::{BufferKind, Manifest};
use crate::model::outputs::{empty_data, fit};
use crate::model::{
    ARENA_POISON, ModelError, Weights, arena_requests, eval_shape, kernel_error, numel, plan,
    weights::tensor_bytes,
};
use crate::sym::DimValues;
use crate::{DType, HostTensor, TensorData};
use cudarc::driver::{result, sys};
use std::collections::BTreeMap;
use std::ffi::c_void;

/// `n` rounded up to the arena's alignment.
fn aligned(n: usize) -> usize {
    n.div_ceil(plan::ALIGN) * plan::ALIGN
}

impl Gpu {
    /// Runs the kernels at `bound` (see the module doc). `_w` is unused: the weights were
    /// copied to the device at load.
    pub(in crate::model) fn run(
        &self,
        m: &Manifest,
        _w: &Weights,
        inputs: &BTreeMap<String, HostTensor>,
        bound: &DimValues,
        outputs: &mut BTreeMap<String, HostTensor>,
    ) -> Result<(), ModelError> {
        // A call that panicked left nothing behind that the next one does not rewrite.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.ctx
            .bind_to_thread()
            .map_err(self.fail("binding the context"))?;
        // Scratch layout: the arena, then inputs and the seeded fills that depend on dims.
        let (arena_bufs, reqs) = arena_requests(m, bound, |_| true)?;
        let (offsets, arena_bytes) = plan::place(&reqs);
        let mut at: Vec<Option<usize>> = vec![None; m.buffers.len()];
        for (k, off) in arena_bufs.iter().zip(&offsets) {
            at[*k] = Some(*off);
        }
        let mut total = aligned(arena_bytes);
        let mut fills: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut uploads: Vec<(usize, &[u8])> = Vec::new();
        for (k, b) in m.buffers.iter().enumerate() {
            match &b.kind {
                BufferKind::Input(name) => {
                    let bytes = tensor_bytes(&inputs[name]);
                    at[k] = Some(total);
                    uploads.push((total, bytes));
                    total += aligned(bytes.len());
                }
                BufferKind::Random {
                    seed,
                    normal,
                    torch,
                } if self.fixed[k].is_none() => {
                    let n = numel(m, k, bound)?;
                    at[k] = Some(total);
                    total += aligned(n * 4);
                    fills.push((k, crate::rng::fill_dist(*seed, n, *normal, *torch)));
                }
                _ => {}
            }
        }
        if st.scratch.as_ref().is_none_or(|s| s.bytes < total) {
            st.scratch = None;
            let what = format!("allocating {total} bytes of device memory");
            st.scratch = Some(DevBuf::alloc(&self.ctx, total).map_err(self.fail(what))?);
        }
        let base = st.scratch.as_ref().map_or(0, |s| s.ptr);
        let table: Vec<u64> = (0..m.buffers.len())
            .map(|k| match (&self.fixed[k], at[k]) {
                (Some(f), _) => f.ptr,
                (None, Some(off)) => base + off as u64,
                (None, None) => 0,
            })
            .collect();
        for (k, v) in &fills {
            uploads.push((table[*k] as usize - base as usize, f32_bytes(v)));
        }
        let dims: Vec<i64> = m.dims.iter().map(|d| bound[d]).collect();
        let stream = st.stream.cu_stream();
        let queued = self.queue(
            m,
            &st,
            stream,
            base,
            arena_bytes,
            &table,
            &dims,
            &uploads,
            bound,
        );
        // Wait even when queueing failed: the host buffers above must outlive the copies.
        let synced = st
            .stream
            .synchronize()
            .map_err(self.fail("running the kernels"));
        queued?;
        synced?;
        let mut status = vec![0i64; m.kernels.len()];
        if !status.is_empty() {
            // SAFETY: `st.status` holds one i64 per kernel; the stream is idle.
            unsafe { result::memcpy_dtoh_sync(&mut status, st.status.ptr) }
                .map_err(self.fail("reading the kernels' status"))?;
        }
        if let Some((k, s)) = m.kernels.iter().zip(&status).find(|(_, s)| **s != 0) {
            return Err(kernel_error(k, *s));
        }
        for sig in &m.outputs {
            let shape = eval_shape(sig, bound)?;
            let n = shape.iter().product::<usize>();
            let src = table[sig.buffer];
            let fail = self.fail(format!("copying output `{}` back", sig.name));
            if sig.dtype == DType::Bool {
                // A kernel's byte is not a valid `bool` in general: read bytes, compare.
                let mut v = vec![0u8; n];
                if n > 0 {
                    // SAFETY: the buffer holds `n` one-byte elements; the stream is idle.
                    unsafe { result::memcpy_dtoh_sync(&mut v, src) }.map_err(fail)?;
                }
                let data = TensorData::Bool(v.iter().map(|b| *b != 0).collect());
                outputs.insert(sig.name.clone(), HostTensor::new(&sig.name, shape, data)?);
                continue;
            }
            let t = outputs
                .entry(sig.name.clone())
                .or_insert_with(|| HostTensor {
                    shape: Vec::new(),
                    data: empty_data(sig.dtype),
                });
            let dst = fit(t, &shape);
            if n > 0 {
                let bytes = n * sig.dtype.size_bytes();
                // SAFETY: `fit` sized `t` to `n` elements of the output's dtype, `bytes` in
                // all, and `dst` is its first; the device buffer holds as many.
                let dst = unsafe { std::slice::from_raw_parts_mut(dst, bytes) };
                // SAFETY: as above; the stream is idle.
                unsafe { result::memcpy_dtoh_sync(dst, src) }.map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Queues the uploads and every launch on `stream`; returns at the first failure.
    #[allow(clippy::too_many_arguments)] // one call's whole device state, named once
    fn queue(
        &self,
        m: &Manifest,
        st: &super::State,
        stream: sys::CUstream,
        base: u64,
        arena_bytes: usize,
        table: &[u64],
        dims: &[i64],
        uploads: &[(usize, &[u8])],
        bound: &DimValues,
    ) -> Result<(), ModelError> {
        let upload = self.fail("copying the inputs to the device");
        // SAFETY (every copy and memset below): the destinations are device buffers at least
        // as large as the copy (the table, dims and status were sized at load, the scratch
        // for this call); the sources are host slices that outlive the stream's
        // synchronisation in `run`.
        unsafe {
            result::memcpy_htod_async(st.table.ptr, table, stream).map_err(&upload)?;
            if !dims.is_empty() {
                result::memcpy_htod_async(st.dims.ptr, dims, stream).map_err(&upload)?;
            }
            result::memset_d8_async(st.status.ptr, 0, 8 * m.kernels.len(), stream)
                .map_err(&upload)?;
            if cfg!(debug_assertions) && arena_bytes >= 4 {
                // As on the CPU: a kernel reading an arena element before writing it fails
                // the tests.
                sys::cuMemsetD32Async(base, ARENA_POISON as u32, arena_bytes / 4, stream)
                    .result()
                    .map_err(&upload)?;
            }
            for (off, bytes) in uploads {
                if !bytes.is_empty() {
                    result::memcpy_htod_async(base + *off as u64, bytes, stream)
                        .map_err(&upload)?;
                }
            }
        }
        let launches = m.gpu.as_ref().map_or(&[][..], |g| &g.launches);
        for (i, (k, l)) in m.kernels.iter().zip(launches).enumerate() {
            let size = |reason: String| ModelError::Size {
                what: format!("kernel `{}`", k.symbol),
                reason,
            };
            let mut extent = k.extent.eval(bound).map_err(size)?;
            let mut grid = [0u32; 3];
            for (g, e) in grid.iter_mut().zip(&l.grid) {
                let v = e.eval(bound).map_err(size)?;
                *g = u32::try_from(v)
                    .map_err(|_| size(format!("grid dimension {e} evaluates to {v}")))?;
            }
            if grid.contains(&0) {
                continue;
            }
            let (mut bufs, mut dims) = (st.table.ptr, st.dims.ptr);
            let mut status = st.status.ptr + 8 * i as u64;
            let mut args: [*mut c_void; 4] = [
                (&raw mut bufs).cast(),
                (&raw mut dims).cast(),
                (&raw mut extent).cast(),
                (&raw mut status).cast(),
            ];
            // SAFETY: `funcs[i]` is the entry of launch `i`, whose parameters are
            // `(.u64 bufs, .u64 dims, .u64 extent, .u64 status)` (the artifact's ABI); the
            // arguments point at four 8-byte values that live across the call (the driver
            // copies them at launch); every table entry a kernel reads is a live buffer of
            // its size at these dims.
            unsafe {
                result::launch_kernel(
                    self.funcs[i],
                    (grid[0], grid[1], grid[2]),
                    (l.block[0], l.block[1], l.block[2]),
                    l.shared_bytes,
                    stream,
                    &mut args,
                )
            }
            .map_err(self.fail(format!("launching kernel `{}`", k.symbol)))?;
        }
        Ok(())
    }
}
