//! The f32 linear-attention recurrence of [`crate::kernel::Recur`]: one internal LLVM
//! function per module and variant (with or without decay, strict or not),
//!
//! `void seqc_recur_f32_<decay><strict>[n](i64 steps, i64 rows, i64 width, f32 *q, i64 q_t,
//! i64 q_c, f32 *k, i64 k_t, i64 k_c, f32 *v, i64 v_t, f32 *out, i64 out_t, f32 *s, i64 s_c,
//! f32 *d, i64 d_t, i64 d_c, f32 *n)`
//!
//! (`n`: the normalised variant, `n` the normaliser's state, read only there).
//!
//! The columns run in passes of up to `NV` vectors (`NV · VL` columns). A pass takes the
//! steps two at a time and keeps their v rows and output sums in vector registers: per row c
//! it broadcasts q[t, c], k[t, c] (and d[t, c]) of both steps, then per vector loads the
//! state once, and per step updates it with one fused multiply-add (after the decay's
//! multiply) and adds q·s to that step's sum with another, then stores it once (a last odd
//! step runs alone). The pass's state slice (rows × NV · VL floats) stays in L1/L2 across
//! the steps. Measured at T = 16384, B·H = 8, K = V = 64 on one thread: 23 ms of kernel time
//! per call against 30 ms one step at a time (`perf record` samples in `kernels.so`). A pass
//! narrower than `NV` vectors has its own copy of the loop with fewer vectors; its last vector
//! is masked (masked loads read 0, masked stores skip).
//!
//! The normalised variant also carries, per step of a pair, the normaliser's sum as a vector
//! of equal lanes: per row it broadcasts n[c], updates it per step (n ← d·n + k, den ← q·n +
//! den with one fused multiply-add) and stores it once; the output sums are divided by den
//! before their store. A pass recomputes n from 0 (passes narrower than the task's width
//! repeat it). It always takes the passes, also at width 1.

use super::CodegenError;
use super::build::{IntOps, R, llvm, set_align};
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, FloatType, IntType, VectorType};
use inkwell::values::{FunctionValue, IntValue, PointerValue, VectorValue};
use inkwell::{AddressSpace, IntPredicate};

/// Vectors of columns per pass.
const NV: u64 = 4;

/// The recurrence function of `module` for the variant, added on first use.
pub fn function<'c>(
    ctx: &'c Context,
    module: &Module<'c>,
    vl: u32,
    decay: bool,
    strict: bool,
    norm: bool,
) -> R<FunctionValue<'c>> {
    let name = format!(
        "seqc_recur_f32_{}{}{}",
        decay as u8,
        strict as u8,
        if norm { "n" } else { "" }
    );
    if let Some(f) = module.get_function(&name) {
        return Ok(f);
    }
    let (i, p) = (
        ctx.i64_type().into(),
        ctx.ptr_type(AddressSpace::default()).into(),
    );
    let params: [BasicMetadataTypeEnum; 19] =
        [i, i, i, p, i, i, p, i, i, p, i, p, i, p, i, p, i, i, p];
    let f = module.add_function(
        &name,
        ctx.void_type().fn_type(&params, false),
        Some(Linkage::Internal),
    );
    // The callers pass distinct buffers for the written state and output (`Recur`).
    let noalias = ctx.create_enum_attribute(Attribute::get_named_enum_kind_id("noalias"), 0);
    for k in [3, 6, 9, 11, 13, 15, 18] {
        f.add_attribute(AttributeLoc::Param(k), noalias);
    }
    Gen {
        ctx,
        module,
        b: ctx.create_builder(),
        f,
        i64t: ctx.i64_type(),
        f32t: ctx.f32_type(),
        vt: ctx.f32_type().vec_type(vl),
        vl: vl as u64,
        decay,
        strict,
        norm,
    }
    .emit()?;
    Ok(f)
}

struct Gen<'a, 'c> {
    ctx: &'c Context,
    module: &'a Module<'c>,
    b: Builder<'c>,
    f: FunctionValue<'c>,
    i64t: IntType<'c>,
    f32t: FloatType<'c>,
    vt: VectorType<'c>,
    vl: u64,
    decay: bool,
    strict: bool,
    norm: bool,
}

/// The function's arguments.
struct Args<'c> {
    steps: IntValue<'c>,
    rows: IntValue<'c>,
    q: (PointerValue<'c>, IntValue<'c>, IntValue<'c>),
    k: (PointerValue<'c>, IntValue<'c>, IntValue<'c>),
    v: (PointerValue<'c>, IntValue<'c>),
    out: (PointerValue<'c>, IntValue<'c>),
    s: (PointerValue<'c>, IntValue<'c>),
    d: (PointerValue<'c>, IntValue<'c>, IntValue<'c>),
    n: PointerValue<'c>,
}

impl<'c> IntOps<'c> for Gen<'_, 'c> {
    fn builder(&self) -> &Builder<'c> {
        &self.b
    }
    fn func(&self) -> FunctionValue<'c> {
        self.f
    }
    fn i64t(&self) -> IntType<'c> {
        self.i64t
    }
}

impl<'c> Gen<'_, 'c> {
    /// `&p[i]` for f32 elements.
    fn at(&self, p: PointerValue<'c>, i: IntValue<'c>) -> R<PointerValue<'c>> {
        // The generated code indexes within the views the caller passes: rows × width of
        // the state, steps × rows of q, k and d, steps × width of v and out.
        super::emit::gep(&self.b, self.f32t.into(), p, i)
    }

    fn splat_of(&self, p: PointerValue<'c>) -> R<VectorValue<'c>> {
        let s = self.b.build_load(self.f32t, p, "").map_err(llvm)?;
        set_align(&s, 4)?;
        self.splat(s.into_float_value())
    }

    /// `x` in every lane.
    fn splat(&self, x: inkwell::values::FloatValue<'c>) -> R<VectorValue<'c>> {
        let undef = self.vt.get_undef();
        let one = self
            .b
            .build_insert_element(undef, x, self.int(0), "")
            .map_err(llvm)?;
        let mask = self.ctx.i32_type().vec_type(self.vl as u32).const_zero();
        self.b
            .build_shuffle_vector(one, undef, mask, "splat")
            .map_err(llvm)
    }

    fn intrinsic(
        &self,
        name: &str,
        tys: &[inkwell::types::BasicTypeEnum<'c>],
    ) -> R<FunctionValue<'c>> {
        Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, tys))
            .ok_or_else(|| CodegenError::Llvm(format!("no {name} declaration")))
    }

    fn call(
        &self,
        f: FunctionValue<'c>,
        args: &[inkwell::values::BasicMetadataValueEnum<'c>],
    ) -> R<Option<VectorValue<'c>>> {
        let r = self.b.build_call(f, args, "").map_err(llvm)?;
        Ok(r.try_as_basic_value()
            .basic()
            .map(|v| v.into_vector_value()))
    }

    fn fma(
        &self,
        a: VectorValue<'c>,
        b: VectorValue<'c>,
        c: VectorValue<'c>,
    ) -> R<VectorValue<'c>> {
        let f = self.intrinsic("llvm.fma", &[self.vt.into()])?;
        self.call(f, &[a.into(), b.into(), c.into()])?
            .ok_or_else(|| CodegenError::Llvm("fma returned nothing".into()))
    }

    /// A vector load at `p` (masked when `mask` is given: lanes off read 0).
    fn vload(&self, p: PointerValue<'c>, mask: Option<VectorValue<'c>>) -> R<VectorValue<'c>> {
        match mask {
            None => {
                let x = self.b.build_load(self.vt, p, "").map_err(llvm)?;
                set_align(&x, 4)?;
                Ok(x.into_vector_value())
            }
            Some(m) => {
                let ptr = self.ctx.ptr_type(AddressSpace::default());
                let f = self.intrinsic("llvm.masked.load", &[self.vt.into(), ptr.into()])?;
                let align = self.ctx.i32_type().const_int(4, false);
                self.call(
                    f,
                    &[
                        p.into(),
                        align.into(),
                        m.into(),
                        self.vt.const_zero().into(),
                    ],
                )?
                .ok_or_else(|| CodegenError::Llvm("masked load returned nothing".into()))
            }
        }
    }

    /// A vector store at `p` (masked when `mask` is given: lanes off are not written).
    fn vstore(
        &self,
        p: PointerValue<'c>,
        x: VectorValue<'c>,
        mask: Option<VectorValue<'c>>,
    ) -> R<()> {
        match mask {
            None => {
                let s = self.b.build_store(p, x).map_err(llvm)?;
                s.set_alignment(4).map_err(llvm)?;
            }
            Some(m) => {
                let ptr = self.ctx.ptr_type(AddressSpace::default());
                let f = self.intrinsic("llvm.masked.store", &[self.vt.into(), ptr.into()])?;
                let align = self.ctx.i32_type().const_int(4, false);
                self.b
                    .build_call(f, &[x.into(), p.into(), align.into(), m.into()], "")
                    .map_err(llvm)?;
            }
        }
        Ok(())
    }

    /// `for i in (start..end).step_by(step)` carrying the vectors `init` (test at the top);
    /// `body` returns their next values; the result is their values at the exit.
    fn each(
        &self,
        start: IntValue<'c>,
        end: IntValue<'c>,
        step: u64,
        init: &[VectorValue<'c>],
        body: impl FnOnce(&Self, IntValue<'c>, &[VectorValue<'c>]) -> R<Vec<VectorValue<'c>>>,
    ) -> R<Vec<VectorValue<'c>>> {
        let pre = self.b.get_insert_block().expect("positioned");
        let head = self.ctx.append_basic_block(self.f, "head");
        let bodyb = self.ctx.append_basic_block(self.f, "body");
        let exit = self.ctx.append_basic_block(self.f, "exit");
        self.b.build_unconditional_branch(head).map_err(llvm)?;
        self.b.position_at_end(head);
        let phi = self.b.build_phi(self.i64t, "i").map_err(llvm)?;
        let mut phis = Vec::new();
        for _ in init {
            phis.push(self.b.build_phi(self.vt, "acc").map_err(llvm)?);
        }
        let cur: Vec<VectorValue> = phis
            .iter()
            .map(|p| p.as_basic_value().into_vector_value())
            .collect();
        let i = phi.as_basic_value().into_int_value();
        let go = self.lt(i, end)?;
        self.b
            .build_conditional_branch(go, bodyb, exit)
            .map_err(llvm)?;
        self.b.position_at_end(bodyb);
        let next = body(self, i, &cur)?;
        let n = self.add(i, self.int(step))?;
        let latch = self.b.get_insert_block().expect("positioned");
        self.b.build_unconditional_branch(head).map_err(llvm)?;
        phi.add_incoming(&[(&start, pre), (&n, latch)]);
        for ((p, x0), x) in phis.iter().zip(init).zip(&next) {
            p.add_incoming(&[(x0, pre), (x, latch)]);
        }
        self.b.position_at_end(exit);
        Ok(cur)
    }

    fn emit(self) -> R<()> {
        let entry = self.ctx.append_basic_block(self.f, "entry");
        self.b.position_at_end(entry);
        let a = Args {
            steps: self.iarg(0),
            rows: self.iarg(1),
            q: (self.parg(3), self.iarg(4), self.iarg(5)),
            k: (self.parg(6), self.iarg(7), self.iarg(8)),
            v: (self.parg(9), self.iarg(10)),
            out: (self.parg(11), self.iarg(12)),
            s: (self.parg(13), self.iarg(14)),
            d: (self.parg(15), self.iarg(16), self.iarg(17)),
            n: self.parg(18),
        };
        let width = self.iarg(2);
        let cols = NV * self.vl;
        // One column with q, k, the state (and a per-channel d) contiguous along the rows:
        // the rows are the vector lanes instead.
        let eq = |x: IntValue<'c>, y: u64| {
            self.b
                .build_int_compare(IntPredicate::EQ, x, self.int(y), "")
                .map_err(llvm)
        };
        let and = |x: IntValue<'c>, y: IntValue<'c>| self.b.build_and(x, y, "").map_err(llvm);
        let mut narrow = and(eq(width, 1)?, eq(a.s.1, 1)?)?;
        narrow = and(narrow, and(eq(a.q.2, 1)?, eq(a.k.2, 1)?)?)?;
        if self.decay {
            let d_ok = self
                .b
                .build_int_compare(IntPredicate::ULE, a.d.2, self.int(1), "")
                .map_err(llvm)?;
            narrow = and(narrow, d_ok)?;
        }
        let wide = |g: &Self, lanes: bool| -> R<()> {
            g.each(g.int(0), width, cols, &[], |g, j0, _| {
                let w = g.min(g.int(cols), g.sub(width, j0)?)?;
                g.passes(&a, j0, w, NV, lanes)?;
                Ok(Vec::new())
            })?;
            Ok(())
        };
        if self.norm {
            // The normaliser with the rows in the lanes where q, k (and d) allow.
            let mut lanes = and(eq(a.q.2, 1)?, eq(a.k.2, 1)?)?;
            if self.decay {
                let d_ok = self
                    .b
                    .build_int_compare(IntPredicate::ULE, a.d.2, self.int(1), "")
                    .map_err(llvm)?;
                lanes = and(lanes, d_ok)?;
            }
            self.branch(lanes, |g| wide(g, true), |g| wide(g, false))?;
        } else {
            self.branch(narrow, |g| g.column(&a), |g| wide(g, false))?;
        }
        self.b.build_return(None).map_err(llvm)?;
        Ok(())
    }

    /// A lane mask: lanes below `n` on.
    fn mask_below(&self, n: IntValue<'c>) -> R<VectorValue<'c>> {
        let vl = self.vl as u32;
        let iota: Vec<IntValue> = (0..self.vl).map(|i| self.int(i)).collect();
        let iota = VectorType::const_vector(&iota);
        let undef = self.i64t.vec_type(vl).get_undef();
        let lim = self
            .b
            .build_insert_element(undef, n, self.int(0), "")
            .map_err(llvm)?;
        let zeros = self.ctx.i32_type().vec_type(vl).const_zero();
        let lim = self
            .b
            .build_shuffle_vector(lim, undef, zeros, "")
            .map_err(llvm)?;
        self.b
            .build_int_compare(IntPredicate::SLT, iota, lim, "mask")
            .map_err(llvm)
    }

    /// The lanes of `x` summed pairwise (halves added until one lane is left).
    fn hsum(&self, x: VectorValue<'c>) -> R<inkwell::values::FloatValue<'c>> {
        let mut x = x;
        let mut n = self.vl as u32;
        while n > 1 {
            n /= 2;
            let i32t = self.ctx.i32_type();
            let lo: Vec<IntValue> = (0..n).map(|i| i32t.const_int(i as u64, false)).collect();
            let hi: Vec<IntValue> = (n..2 * n)
                .map(|i| i32t.const_int(i as u64, false))
                .collect();
            let (lo, hi) = (VectorType::const_vector(&lo), VectorType::const_vector(&hi));
            let a = self.b.build_shuffle_vector(x, x, lo, "").map_err(llvm)?;
            let b = self.b.build_shuffle_vector(x, x, hi, "").map_err(llvm)?;
            x = self.b.build_float_add(a, b, "").map_err(llvm)?;
        }
        Ok(self
            .b
            .build_extract_element(x, self.int(0), "")
            .map_err(llvm)?
            .into_float_value())
    }

    /// The single-column recurrence with the rows in the lanes: per step, full vectors of
    /// rows then one masked tail, the output the lanes' sum.
    fn column(&self, a: &Args<'c>) -> R<()> {
        self.each(self.int(0), a.rows, 1, &[], |g, c, _| {
            let p = g.at(a.s.0, c)?;
            g.b.build_store(p, g.f32t.const_zero()).map_err(llvm)?;
            Ok(Vec::new())
        })?;
        self.each(self.int(0), a.steps, 1, &[], |g, t, _| {
            let vt = g.splat_of(g.at(a.v.0, g.mul(t, a.v.1)?)?)?;
            let sum = g.column_step(a, t, vt, a.s.0)?;
            let st =
                g.b.build_store(g.at(a.out.0, g.mul(t, a.out.1)?)?, sum)
                    .map_err(llvm)?;
            st.set_alignment(4).map_err(llvm)?;
            Ok(Vec::new())
        })?;
        Ok(())
    }

    /// Step `t` of a single column with the rows in the lanes (q, k, the column `state` and
    /// a per-channel d contiguous along the rows), v[t] broadcast in `vt`: updates the state
    /// and returns q[t]·state (strict: before the update).
    fn column_step(
        &self,
        a: &Args<'c>,
        t: IntValue<'c>,
        vt: VectorValue<'c>,
        state: PointerValue<'c>,
    ) -> R<inkwell::values::FloatValue<'c>> {
        let (g, vl) = (self, self.vl);
        let zero = self.vt.const_zero();
        let tail =
            g.b.build_int_signed_rem(a.rows, g.int(vl), "")
                .map_err(llvm)?;
        let full = g.sub(a.rows, tail)?;
        let tmask = g.mask_below(tail)?;
        let has_tail = g.lt(g.int(0), tail)?;
        {
            let (qt, kt, dt) = (
                g.at(a.q.0, g.mul(t, a.q.1)?)?,
                g.at(a.k.0, g.mul(t, a.k.1)?)?,
                g.at(a.d.0, g.mul(t, a.d.1)?)?,
            );
            // Per step (d_c = 0) one factor for all rows.
            let dstep = g.splat_of(dt)?;
            let per_row =
                g.b.build_int_compare(IntPredicate::EQ, a.d.2, g.int(1), "")
                    .map_err(llvm)?;
            let bvt = g.ctx.bool_type().vec_type(vl as u32);
            let rows_on =
                g.b.build_insert_element(bvt.get_undef(), per_row, g.int(0), "")
                    .map_err(llvm)?;
            let zeros = g.ctx.i32_type().vec_type(vl as u32).const_zero();
            let rows_on =
                g.b.build_shuffle_vector(rows_on, bvt.get_undef(), zeros, "")
                    .map_err(llvm)?;
            let rowv = |g: &Self,
                        c: IntValue<'c>,
                        acc: VectorValue<'c>,
                        m: Option<VectorValue<'c>>|
             -> R<VectorValue<'c>> {
                let qv = g.vload(g.at(qt, c)?, m)?;
                let kv = g.vload(g.at(kt, c)?, m)?;
                let p = g.at(state, c)?;
                let old = g.vload(p, m)?;
                let mut o = acc;
                if g.strict {
                    o = g.fma(qv, old, o)?;
                }
                let kept = if g.decay {
                    // Read only when d has a factor per row (a per-step d has one per step).
                    let on = match m {
                        Some(m) => g.b.build_and(m, rows_on, "").map_err(llvm)?,
                        None => rows_on,
                    };
                    let dv = g.vload(g.at(dt, c)?, Some(on))?;
                    let d =
                        g.b.build_select(per_row, dv, dstep, "")
                            .map_err(llvm)?
                            .into_vector_value();
                    g.b.build_float_mul(d, old, "").map_err(llvm)?
                } else {
                    old
                };
                let s = g.fma(kv, vt, kept)?;
                g.vstore(p, s, m)?;
                if !g.strict {
                    o = g.fma(qv, s, o)?;
                }
                Ok(o)
            };
            let acc = g.each(g.int(0), full, vl, &[zero], |g, c, acc| {
                Ok(vec![rowv(g, c, acc[0], None)?])
            })?;
            // The tail's rows (masked), added only when there is a tail.
            let pre = g.b.get_insert_block().expect("positioned");
            let (yes, join) = (
                g.ctx.append_basic_block(g.f, "tail"),
                g.ctx.append_basic_block(g.f, "join"),
            );
            g.b.build_conditional_branch(has_tail, yes, join)
                .map_err(llvm)?;
            g.b.position_at_end(yes);
            let with_tail = rowv(g, full, acc[0], Some(tmask))?;
            let yes_end = g.b.get_insert_block().expect("positioned");
            g.b.build_unconditional_branch(join).map_err(llvm)?;
            g.b.position_at_end(join);
            let phi = g.b.build_phi(g.vt, "").map_err(llvm)?;
            phi.add_incoming(&[(&with_tail, yes_end), (&acc[0], pre)]);
            g.hsum(phi.as_basic_value().into_vector_value())
        }
    }

    /// The pass over columns j0 .. j0 + w (0 < w ≤ n · VL): with n vectors when w > (n − 1)·VL,
    /// else with fewer.
    fn passes(
        &self,
        a: &Args<'c>,
        j0: IntValue<'c>,
        w: IntValue<'c>,
        n: u64,
        lanes: bool,
    ) -> R<()> {
        if n == 1 {
            return self.pass(a, j0, w, 1, lanes);
        }
        let wide = self.lt(self.int((n - 1) * self.vl), w)?;
        self.branch(
            wide,
            |g| g.pass(a, j0, w, n, lanes),
            |g| g.passes(a, j0, w, n - 1, lanes),
        )
    }

    /// One pass of `n` vectors over columns j0 .. j0 + w, the last vector masked to
    /// w − (n − 1)·VL lanes (`lanes`: the normaliser with the rows in the lanes).
    fn pass(&self, a: &Args<'c>, j0: IntValue<'c>, w: IntValue<'c>, n: u64, lanes: bool) -> R<()> {
        let vl = self.vl;
        let on = self.sub(w, self.int((n - 1) * vl))?;
        let last = self.mask_below(on)?;
        let mask = |v: u64| (v + 1 == n).then_some(last);
        let col = |v: u64| self.add(j0, self.int(v * vl));
        let zero = self.vt.const_zero();
        // The state slice starts at 0.
        self.each(self.int(0), a.rows, 1, &[], |g, c, _| {
            let row = g.mul(c, a.s.1)?;
            for v in 0..n {
                let p = g.at(a.s.0, g.add(row, col(v)?)?)?;
                g.vstore(p, zero, mask(v))?;
            }
            if g.norm {
                g.b.build_store(g.at(a.n, c)?, g.f32t.const_zero())
                    .map_err(llvm)?;
            }
            Ok(Vec::new())
        })?;
        // Steps in pairs (one load and store of the state per row for two steps, two
        // independent chains of output sums), then the last step when T is odd.
        let last_pair = self.sub(a.steps, self.int(1))?;
        self.each(self.int(0), last_pair, 2, &[], |g, t, _| {
            g.steps(a, t, 2, n, lanes, &col, &mask)?;
            Ok(Vec::new())
        })?;
        let odd = self
            .b
            .build_int_signed_rem(a.steps, self.int(2), "")
            .map_err(llvm)?;
        let odd = self
            .b
            .build_int_compare(IntPredicate::EQ, odd, self.int(1), "")
            .map_err(llvm)?;
        self.branch(
            odd,
            |g| g.steps(a, last_pair, 1, n, lanes, &col, &mask),
            |_| Ok(()),
        )?;
        Ok(())
    }

    /// Steps t .. t + m of a pass of `n` vectors: one sweep over the rows, each row's state
    /// loaded once, updated step after step and stored once. The normaliser (normalised
    /// variant): with `lanes`, after the sweep, per step as one column with the rows in the
    /// lanes; else in the sweep, per row on broadcasts.
    // (why: the pass shape m × n, the lanes choice and the column and mask maps are each used
    // throughout the sweep; bundling them for this one private caller would only rename them)
    #[allow(clippy::too_many_arguments)]
    fn steps(
        &self,
        a: &Args<'c>,
        t0: IntValue<'c>,
        m: u64,
        n: u64,
        lanes: bool,
        col: &dyn Fn(u64) -> R<IntValue<'c>>,
        mask: &dyn Fn(u64) -> Option<VectorValue<'c>>,
    ) -> R<()> {
        let zero = self.vt.const_zero();
        let mut ts = Vec::new();
        let mut vv = Vec::new();
        for s in 0..m {
            let t = self.add(t0, self.int(s))?;
            let vrow = self.mul(t, a.v.1)?;
            for v in 0..n {
                vv.push(self.vload(self.at(a.v.0, self.add(vrow, col(v)?)?)?, mask(v))?);
            }
            ts.push((
                t,
                self.mul(t, a.q.1)?,
                self.mul(t, a.k.1)?,
                self.mul(t, a.d.1)?,
            ));
        }
        // The output sums, then (normalised) one normaliser sum per step.
        let per_row = self.norm && !lanes;
        let init = vec![zero; (m * n + if per_row { m } else { 0 }) as usize];
        let sums = self.each(self.int(0), a.rows, 1, &init, |g, c, acc| {
            // Per step: the broadcasts of q[t, c], k[t, c] (and d[t, c]).
            let mut bc = Vec::new();
            for (_, qt, kt, dt) in &ts {
                let qc = g.splat_of(g.at(a.q.0, g.add(*qt, g.mul(c, a.q.2)?)?)?)?;
                let kc = g.splat_of(g.at(a.k.0, g.add(*kt, g.mul(c, a.k.2)?)?)?)?;
                let dc = if g.decay {
                    Some(g.splat_of(g.at(a.d.0, g.add(*dt, g.mul(c, a.d.2)?)?)?)?)
                } else {
                    None
                };
                bc.push((qc, kc, dc));
            }
            let row = g.mul(c, a.s.1)?;
            let mut next = acc.to_vec();
            for v in 0..n {
                let p = g.at(a.s.0, g.add(row, col(v)?)?)?;
                let mut cur = g.vload(p, mask(v))?;
                for (s, (qc, kc, dc)) in bc.iter().enumerate() {
                    let at = s * n as usize + v as usize;
                    if g.strict {
                        next[at] = g.fma(*qc, cur, next[at])?;
                    }
                    let kept = match dc {
                        Some(d) => g.b.build_float_mul(*d, cur, "").map_err(llvm)?,
                        None => cur,
                    };
                    cur = g.fma(*kc, vv[at], kept)?;
                    if !g.strict {
                        next[at] = g.fma(*qc, cur, next[at])?;
                    }
                }
                g.vstore(p, cur, mask(v))?;
            }
            if per_row {
                // n ← d·n + k, den ← q·n + den (strict: before the update), per step.
                let p = g.at(a.n, c)?;
                let mut cur = g.splat_of(p)?;
                for (s, (qc, kc, dc)) in bc.iter().enumerate() {
                    let at = (m * n) as usize + s;
                    if g.strict {
                        next[at] = g.fma(*qc, cur, next[at])?;
                    }
                    let kept = match dc {
                        Some(d) => g.b.build_float_mul(*d, cur, "").map_err(llvm)?,
                        None => cur,
                    };
                    cur = g.b.build_float_add(kept, *kc, "").map_err(llvm)?;
                    if !g.strict {
                        next[at] = g.fma(*qc, cur, next[at])?;
                    }
                }
                let lane = g.b.build_extract_element(cur, g.int(0), "").map_err(llvm)?;
                g.b.build_store(p, lane).map_err(llvm)?;
            }
            Ok(next)
        })?;
        let mut dens = sums[(m * n) as usize..].to_vec();
        if self.norm && lanes {
            let one = self.splat(self.f32t.const_float(1.0))?;
            for (t, ..) in &ts {
                let den = self.column_step(a, *t, one, a.n)?;
                dens.push(self.splat(den)?);
            }
        }
        for (s, (t, ..)) in ts.iter().enumerate() {
            let orow = self.mul(*t, a.out.1)?;
            for v in 0..n {
                let p = self.at(a.out.0, self.add(orow, col(v)?)?)?;
                let mut o = sums[s * n as usize + v as usize];
                if self.norm {
                    let den = dens[s];
                    o = self.b.build_float_div(o, den, "").map_err(llvm)?;
                }
                self.vstore(p, o, mask(v))?;
            }
        }
        Ok(())
    }
}
