//! The f32 attention tile step of [`crate::kernel::AttnTile`]: one internal LLVM function per
//! module,
//!
//! `void seqc_attn_f32(i64 rows, i64 cols, i64 depth, i64 width, f32 *q, i64 q_r, i64 q_c,
//! f32 *k, i64 k_r, i64 k_c, f32 *v, i64 v_r, i64 v_c, f32 *out, i64 out_r, f32 *max,
//! i64 max_r, f32 *sum, i64 sum_r, f32 *mask, i64 mask_r, i64 masked, f32 scale)`.
//!
//! FlashAttention's register-level fusion on the CPU: k is packed transposed (depth × KEYS,
//! zero columns past `cols`) once per call, and v too unless it can be read in place (unit
//! column stride, `width` a multiple of the vector width). Then per strip of `MR` query rows
//! (the last strip repeats the last row and stores nothing for the copies): the MR × KEYS
//! scores are accumulated in MR · KEYS / VL vector registers (one broadcast of q and one
//! fused multiply-add per register and step); the epilogue scales and masks them, takes each
//! row's maximum with vector maxima and a shuffle reduction, writes x to a small strip buffer
//! where one loop per row turns it into p = e^{x − m} (the inline exp of `math.rs`, which
//! the loop vectoriser widens), sums p by vectors, updates the row's max and sum, and finally
//! out[MR, width] = α·out + P·V with `PV` vector columns of out in registers per panel.
//! The strip loop is emitted twice: for a tile with every key visible (no mask, no key
//! count: the scores are only scaled) and for the rest, which also skips a strip whose
//! rows the mask hides entirely (e.g. above the diagonal of a causal tile). The copies of
//! the last row store to a sink, so that a strip has no branches.

use super::CodegenError;
use super::build::{IntOps, R, llvm, set_align};
use super::gemm::Gen;
use super::math::Math;
use crate::kernel::AttnTile;
use crate::kernel::gemm::BLOCK_N;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, VectorType};
use inkwell::values::{
    BasicValue, BasicValueEnum, FloatValue, FunctionValue, IntValue, PointerValue, VectorValue,
};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};

/// The function's symbol.
pub const NAME: &str = "seqc_attn_f32";

/// Keys per tile (the width of the score strip).
const KEYS: u64 = AttnTile::KEYS as u64;

/// Vector columns of out per panel of the P·V product.
const PV: u64 = 4;

/// Query rows per strip for a vector width: MR · KEYS / VL score registers (24 of the 32
/// AVX-512 registers; narrower targets, with 16 registers, take one row).
fn strip_rows(vl: u64) -> u64 {
    if vl >= 16 { 6 } else { 1 }
}

/// The attention tile function of `module`, added on first use.
pub fn function<'c>(ctx: &'c Context, module: &Module<'c>, vl: u32) -> R<FunctionValue<'c>> {
    if let Some(f) = module.get_function(NAME) {
        return Ok(f);
    }
    let (i64t, ptr) = (ctx.i64_type(), ctx.ptr_type(AddressSpace::default()));
    let mut params: Vec<BasicMetadataTypeEnum> = vec![i64t.into(); 4];
    for cols in [true, true, true, false, false, false, false] {
        let view: [BasicMetadataTypeEnum; 2] = [ptr.into(), i64t.into()];
        params.extend(view);
        if cols {
            params.push(i64t.into());
        }
    }
    params.push(i64t.into());
    params.push(ctx.f32_type().into());
    let f = module.add_function(
        NAME,
        ctx.void_type().fn_type(&params, false),
        Some(Linkage::Internal),
    );
    emit(&Gen::new(ctx, module, f, vl))?;
    Ok(f)
}

/// Vector helpers on a generator.
struct V<'g, 'a, 'c> {
    g: &'g Gen<'a, 'c>,
    fma: FunctionValue<'c>,
}

impl<'c> V<'_, '_, 'c> {
    fn vload(&self, p: PointerValue<'c>, align: u32) -> R<VectorValue<'c>> {
        let x = self.g.b.build_load(self.g.vt, p, "").map_err(llvm)?;
        set_align(&x, align)?;
        Ok(x.into_vector_value())
    }

    fn fma(
        &self,
        a: VectorValue<'c>,
        b: VectorValue<'c>,
        c: VectorValue<'c>,
    ) -> R<VectorValue<'c>> {
        self.g
            .b
            .build_call(self.fma, &[a.into(), b.into(), c.into()], "")
            .map_err(llvm)?
            .try_as_basic_value()
            .basic()
            .map(|v| v.into_vector_value())
            .ok_or_else(|| CodegenError::Llvm("fma returned nothing".into()))
    }

    fn sel<T: BasicValue<'c>>(
        &self,
        c: impl inkwell::values::IntMathValue<'c>,
        a: T,
        b: T,
    ) -> R<BasicValueEnum<'c>> {
        self.g.b.build_select(c, a, b, "").map_err(llvm)
    }

    /// max(a, b) as a > b ? a : b. A NaN operand may or may not win: a NaN score still
    /// makes its row NaN, through its p and the row's sum.
    fn vmax(&self, a: VectorValue<'c>, b: VectorValue<'c>) -> R<VectorValue<'c>> {
        let gt = self
            .g
            .b
            .build_float_compare(FloatPredicate::OGT, a, b, "")
            .map_err(llvm)?;
        Ok(self.sel(gt, a, b)?.into_vector_value())
    }

    fn smax(&self, a: FloatValue<'c>, b: FloatValue<'c>) -> R<FloatValue<'c>> {
        let gt = self
            .g
            .b
            .build_float_compare(FloatPredicate::OGT, a, b, "")
            .map_err(llvm)?;
        Ok(self.sel(gt, a, b)?.into_float_value())
    }

    /// The lanes of `x` folded with `op` by halving shuffles; lane 0 of the result.
    fn reduce(
        &self,
        mut x: VectorValue<'c>,
        op: impl Fn(VectorValue<'c>, VectorValue<'c>) -> R<VectorValue<'c>>,
    ) -> R<FloatValue<'c>> {
        let (vl, i32t) = (self.g.vl, self.g.ctx.i32_type());
        let mut w = vl / 2;
        while w >= 1 {
            let idx: Vec<_> = (0..vl)
                .map(|j| i32t.const_int(if j + w < vl { j + w } else { j }, false))
                .collect();
            let hi = self
                .g
                .b
                .build_shuffle_vector(x, x, VectorType::const_vector(&idx), "")
                .map_err(llvm)?;
            x = op(x, hi)?;
            w /= 2;
        }
        Ok(self
            .g
            .b
            .build_extract_element(x, self.g.int(0), "")
            .map_err(llvm)?
            .into_float_value())
    }

    /// A loop of `n` steps carrying vectors: `body(step, carried)` gives the next ones.
    fn fold(
        &self,
        n: IntValue<'c>,
        init: &[VectorValue<'c>],
        body: impl FnOnce(IntValue<'c>, &[VectorValue<'c>]) -> R<Vec<VectorValue<'c>>>,
    ) -> R<Vec<VectorValue<'c>>> {
        let g = self.g;
        let pre = g.b.get_insert_block().expect("positioned");
        let (head, bodyb, exit) = (
            g.ctx.append_basic_block(g.f, "fold.head"),
            g.ctx.append_basic_block(g.f, "fold.body"),
            g.ctx.append_basic_block(g.f, "fold.exit"),
        );
        g.b.build_unconditional_branch(head).map_err(llvm)?;
        g.b.position_at_end(head);
        let p = g.b.build_phi(g.i64t, "p").map_err(llvm)?;
        let mut phis = Vec::new();
        for _ in init {
            phis.push(g.b.build_phi(g.vt, "acc").map_err(llvm)?);
        }
        let pv = p.as_basic_value().into_int_value();
        let cur: Vec<VectorValue<'c>> = phis
            .iter()
            .map(|p| p.as_basic_value().into_vector_value())
            .collect();
        g.b.build_conditional_branch(g.lt(pv, n)?, bodyb, exit)
            .map_err(llvm)?;
        g.b.position_at_end(bodyb);
        let next = body(pv, &cur)?;
        let pn = g.add(pv, g.int(1))?;
        let latch = g.b.get_insert_block().expect("positioned");
        g.b.build_unconditional_branch(head).map_err(llvm)?;
        p.add_incoming(&[(&g.int(0), pre), (&pn, latch)]);
        for ((phi, x), i) in phis.iter().zip(&next).zip(init) {
            phi.add_incoming(&[(i, pre), (x, latch)]);
        }
        g.b.position_at_end(exit);
        Ok(cur)
    }
}

fn emit<'c>(g: &Gen<'_, 'c>) -> R<()> {
    let entry = g.ctx.append_basic_block(g.f, "entry");
    g.b.position_at_end(entry);
    let (rows, cols, depth, width) = (g.iarg(0), g.iarg(1), g.iarg(2), g.iarg(3));
    let (q, q_r, q_c) = (g.parg(4), g.iarg(5), g.iarg(6));
    let (k, k_r, k_c) = (g.parg(7), g.iarg(8), g.iarg(9));
    let (v, v_r, v_c) = (g.parg(10), g.iarg(11), g.iarg(12));
    let (o, o_r) = (g.parg(13), g.iarg(14));
    let (mx_p, mx_r) = (g.parg(15), g.iarg(16));
    let (sm_p, sm_r) = (g.parg(17), g.iarg(18));
    let (mask, mask_r) = (g.parg(19), g.iarg(20));
    let masked = g.iarg(21);
    let scale = g.f.get_nth_param(22).expect("declared").into_float_value();
    let fma = Intrinsic::find("llvm.fma")
        .and_then(|i| i.get_declaration(g.module, &[g.vt.into()]))
        .ok_or_else(|| CodegenError::Llvm("no llvm.fma declaration".into()))?;
    let x = V { g, fma };
    let (vl, mr) = (g.vl, strip_rows(g.vl));
    let nv = KEYS / vl;
    let alloca = |len: u64, name: &str| -> R<PointerValue<'c>> {
        let p =
            g.b.build_array_alloca(g.f32t, g.int(len), name)
                .map_err(llvm)?;
        p.as_instruction()
            .expect("alloca")
            .set_alignment(64)
            .map_err(llvm)?;
        Ok(p)
    };
    let kt = alloca(BLOCK_N as u64 * KEYS, "kt")?;
    let vp = alloca(KEYS * BLOCK_N as u64, "vp")?;
    let pb = alloca(mr * KEYS, "strip")?;
    // Where the copies of the last row in the last strip store (so that the strip has no
    // branches and LLVM schedules its rows together).
    let sink = alloca(BLOCK_N as u64, "sink")?;
    let zero = g.f32t.const_zero();
    let neg_inf = g.f32t.const_float(f64::NEG_INFINITY);
    // kᵀ: kt[d·KEYS + j] = k[j, d] for j < cols, 0 for cols ≤ j < KEYS (a row of kt per d,
    // which the vectoriser turns into gathers; key j ≥ cols reads key cols − 1).
    let last_key = g.sub(cols, g.int(1))?;
    g.each(g.int(0), depth, 1, |g, d| {
        let col = g.mul(d, k_c)?;
        g.each(g.int(0), g.int(KEYS), 1, |g, j| {
            let jc = g.min(j, last_key)?;
            let s = g.load(g.at(k, g.add(g.mul(jc, k_r)?, col)?)?)?;
            let s =
                g.b.build_select(g.lt(j, cols)?, s, zero, "")
                    .map_err(llvm)?;
            g.store(g.at(kt, g.add(g.mul(d, g.int(KEYS))?, j)?)?, s, 4)
        })
    })?;
    // v: in place with unit column stride and whole vectors, else packed at vp[j·wp + e]
    // with zeros past `width`.
    let wv =
        g.b.build_int_signed_div(g.add(width, g.int(vl - 1))?, g.int(vl), "wv")
            .map_err(llvm)?;
    let wp = g.mul(wv, g.int(vl))?;
    let whole =
        g.b.build_and(
            g.b.build_int_compare(IntPredicate::EQ, v_c, g.int(1), "")
                .map_err(llvm)?,
            g.b.build_int_compare(IntPredicate::EQ, wp, width, "")
                .map_err(llvm)?,
            "in_place",
        )
        .map_err(llvm)?;
    g.branch(
        whole,
        |_| Ok(()),
        |g| {
            g.each(g.int(0), cols, 1, |g, j| {
                g.each(g.int(0), wp, 1, |g, e| {
                    let inside = g.lt(e, width)?;
                    let ec = g.min(e, g.sub(width, g.int(1))?)?;
                    let s = g.load(g.at(v, g.add(g.mul(j, v_r)?, g.mul(ec, v_c)?)?)?)?;
                    let s = g.b.build_select(inside, s, zero, "").map_err(llvm)?;
                    g.store(g.at(vp, g.add(g.mul(j, wp)?, e)?)?, s, 4)
                })
            })
        },
    )?;
    let vb =
        g.b.build_select(whole, v, vp, "vb")
            .map_err(llvm)?
            .into_pointer_value();
    let vr =
        g.b.build_select(whole, v_r, wp, "vr")
            .map_err(llvm)?
            .into_int_value();
    // Per vector of the strip: whether its lanes are keys < cols; `masked` as a vector.
    let i32t = g.ctx.i32_type();
    let ivt = i32t.vec_type(vl as u32);
    let isplat = |s: IntValue<'c>| -> R<VectorValue<'c>> {
        let s = g.b.build_int_truncate(s, i32t, "").map_err(llvm)?;
        let one =
            g.b.build_insert_element(ivt.get_undef(), s, g.int(0), "")
                .map_err(llvm)?;
        g.b.build_shuffle_vector(one, ivt.get_undef(), ivt.const_zero(), "")
            .map_err(llvm)
    };
    let cols_v = isplat(cols)?;
    let masked_v =
        g.b.build_int_compare(IntPredicate::NE, isplat(masked)?, ivt.const_zero(), "")
            .map_err(llvm)?;
    let mut keep = Vec::new();
    for vi in 0..nv {
        let iota: Vec<_> = (0..vl)
            .map(|j| i32t.const_int(vi * vl + j, false))
            .collect();
        keep.push(
            g.b.build_int_compare(
                IntPredicate::SLT,
                VectorType::const_vector(&iota),
                cols_v,
                "",
            )
            .map_err(llvm)?,
        );
    }
    let sv = g.splat(scale)?;
    let (zero_v, ninf_v) = (g.splat(zero)?, g.splat(neg_inf)?);
    let math = Math::new(g.ctx, g.module, &g.b, true);
    let fsub = |a: FloatValue<'c>, b: FloatValue<'c>| g.b.build_float_sub(a, b, "").map_err(llvm);
    let is_inf = |a: FloatValue<'c>| {
        g.b.build_float_compare(FloatPredicate::OEQ, a, neg_inf, "")
            .map_err(llvm)
    };
    let vbytes = (vl * 4) as u32;
    let nstrips =
        g.b.build_int_signed_div(g.add(rows, g.int(mr - 1))?, g.int(mr), "strips")
            .map_err(llvm)?;
    // `general`: the mask and the key count are applied (else every key is visible).
    let strips = |general: bool| -> R<()> {
        g.each(g.int(0), nstrips, 1, |g, st| {
            let i0 = g.mul(st, g.int(mr))?;
            let last = g.sub(rows, g.int(1))?;
            let (mut rowi, mut real) = (Vec::new(), Vec::new());
            for i in 0..mr {
                let r = g.add(i0, g.int(i))?;
                rowi.push(g.min(r, last)?);
                real.push(g.lt(r, rows)?);
            }
            let to = |i: usize, p: PointerValue<'c>| -> R<PointerValue<'c>> {
                Ok(g.b
                    .build_select(real[i], p, sink, "")
                    .map_err(llvm)?
                    .into_pointer_value())
            };
            // The strip: skipped when the mask hides all of it (every x = −∞ leaves the
            // rows' max, sum and output as they are).
            let strip = || -> R<()> {
                // s = q·kᵀ for the strip.
                let mut qrow = Vec::new();
                for r in &rowi {
                    qrow.push(g.at(q, g.mul(*r, q_r)?)?);
                }
                let init = vec![g.vt.const_zero(); (mr * nv) as usize];
                let acc = x.fold(depth, &init, |d, cur| {
                    let brow = g.at(kt, g.mul(d, g.int(KEYS))?)?;
                    let mut bv = Vec::new();
                    for vi in 0..nv {
                        bv.push(x.vload(g.at(brow, g.int(vi * vl))?, vbytes)?);
                    }
                    let mut next = Vec::new();
                    for (i, qr) in qrow.iter().enumerate() {
                        let sp = g.splat(g.load(g.at(*qr, g.mul(d, q_c)?)?)?)?;
                        for (vi, b) in bv.iter().enumerate() {
                            next.push(x.fma(sp, *b, cur[i * nv as usize + vi])?);
                        }
                    }
                    Ok(next)
                })?;
                // x = s·scale where visible, else −∞, to the strip buffer; each row's new maximum.
                let (mut m_new, mut alpha) = (Vec::new(), Vec::new());
                for i in 0..mr as usize {
                    let mrow = g.at(mask, g.mul(rowi[i], mask_r)?)?;
                    let mut vmax: Option<VectorValue<'c>> = None;
                    for vi in 0..nv {
                        let s =
                            g.b.build_float_mul(acc[i * nv as usize + vi as usize], sv, "")
                                .map_err(llvm)?;
                        let xv = if general {
                            let mk = x.vload(g.at(mrow, g.int(vi * vl))?, 4)?;
                            let off =
                                g.b.build_float_compare(FloatPredicate::OEQ, mk, zero_v, "")
                                    .map_err(llvm)?;
                            let hid = g.b.build_and(masked_v, off, "").map_err(llvm)?;
                            let hid = g.b.build_not(hid, "").map_err(llvm)?;
                            let vis = g.b.build_and(keep[vi as usize], hid, "").map_err(llvm)?;
                            x.sel(vis, s, ninf_v)?.into_vector_value()
                        } else {
                            s
                        };
                        let at = g.at(pb, g.int(i as u64 * KEYS + vi * vl))?;
                        g.store(at, xv, vbytes)?;
                        vmax = Some(match vmax {
                            None => xv,
                            Some(m) => x.vmax(m, xv)?,
                        });
                    }
                    let mx = x.reduce(vmax.expect("KEYS ≥ VL"), |a, b| x.vmax(a, b))?;
                    let mp = g.at(mx_p, g.mul(rowi[i], mx_r)?)?;
                    let m_old = g.load(mp)?;
                    let mn = x.smax(m_old, mx)?;
                    let e = math.exp(fsub(m_old, mn)?)?;
                    alpha.push(x.sel(is_inf(m_old)?, zero, e)?.into_float_value());
                    m_new.push(mn);
                    g.store(to(i, mp)?, mn, 4)?;
                }
                // p = e^{x − m} in place, one loop per row (vectorised by LLVM); the row sums.
                for (i, mn) in m_new.iter().enumerate() {
                    let row = g.at(pb, g.int(i as u64 * KEYS))?;
                    g.each(g.int(0), g.int(KEYS), 1, |g, c| {
                        let at = g.at(row, c)?;
                        let xv = g.load(at)?;
                        let e = math.exp(fsub(xv, *mn)?)?;
                        let p = x.sel(is_inf(xv)?, zero, e)?;
                        g.store(at, p, 4)
                    })?;
                    let mut sum = x.vload(row, vbytes)?;
                    for vi in 1..nv {
                        let y = x.vload(g.at(row, g.int(vi * vl))?, vbytes)?;
                        sum = g.b.build_float_add(sum, y, "").map_err(llvm)?;
                    }
                    let ls = x.reduce(sum, |a, b| g.b.build_float_add(a, b, "").map_err(llvm))?;
                    let lp = g.at(sm_p, g.mul(rowi[i], sm_r)?)?;
                    let l_old = g.load(lp)?;
                    let l = g.b.build_float_mul(l_old, alpha[i], "").map_err(llvm)?;
                    let l = g.b.build_float_add(l, ls, "").map_err(llvm)?;
                    g.store(to(i, lp)?, l, 4)?;
                }
                // out = α·out + P·V by panels of PV vectors (then one narrower panel).
                let panel = |nvec: u64, c0: IntValue<'c>| -> R<()> {
                    let mut orow = Vec::new();
                    let mut init = Vec::new();
                    for (i, r) in rowi.iter().enumerate() {
                        let at = g.at(o, g.add(g.mul(*r, o_r)?, c0)?)?;
                        let a = g.splat(alpha[i])?;
                        for vi in 0..nvec {
                            let y = x.vload(g.at(at, g.int(vi * vl))?, 4)?;
                            init.push(g.b.build_float_mul(y, a, "").map_err(llvm)?);
                        }
                        orow.push(at);
                    }
                    let acc = x.fold(cols, &init, |p, cur| {
                        let vrow = g.at(vb, g.add(g.mul(p, vr)?, c0)?)?;
                        let mut vv = Vec::new();
                        for vi in 0..nvec {
                            vv.push(x.vload(g.at(vrow, g.int(vi * vl))?, 4)?);
                        }
                        let mut next = Vec::new();
                        for i in 0..mr {
                            let pp = g.at(pb, g.add(g.int(i * KEYS), p)?)?;
                            let sp = g.splat(g.load(pp)?)?;
                            for (vi, y) in vv.iter().enumerate() {
                                next.push(x.fma(sp, *y, cur[(i * nvec) as usize + vi])?);
                            }
                        }
                        Ok(next)
                    })?;
                    for (i, at) in orow.iter().enumerate() {
                        let at = to(i, *at)?;
                        for vi in 0..nvec {
                            let y = acc[i * nvec as usize + vi as usize];
                            g.store(g.at(at, g.int(vi * vl))?, y, 4)?;
                        }
                    }
                    Ok(())
                };
                let full =
                    g.b.build_int_signed_div(wv, g.int(PV), "panels")
                        .map_err(llvm)?;
                g.each(g.int(0), full, 1, |g, pi| {
                    panel(PV, g.mul(pi, g.int(PV * vl))?)
                })?;
                let c0 = g.mul(full, g.int(PV * vl))?;
                let tail = g.sub(wv, g.mul(full, g.int(PV))?)?;
                for t in 1..PV {
                    let is =
                        g.b.build_int_compare(IntPredicate::EQ, tail, g.int(t), "")
                            .map_err(llvm)?;
                    g.branch(is, |_| panel(t, c0), |_| Ok(()))?;
                }
                Ok(())
            };
            if !general {
                return strip();
            }
            let mut seen: Option<VectorValue<'c>> = None;
            for r in &rowi {
                let mrow = g.at(mask, g.mul(*r, mask_r)?)?;
                for (vi, kv) in keep.iter().enumerate() {
                    let mk = x.vload(g.at(mrow, g.int(vi as u64 * vl))?, 4)?;
                    let on =
                        g.b.build_float_compare(FloatPredicate::UNE, mk, zero_v, "")
                            .map_err(llvm)?;
                    let off = g.b.build_not(masked_v, "").map_err(llvm)?;
                    let on = g.b.build_or(on, off, "").map_err(llvm)?;
                    let on = g.b.build_and(on, *kv, "").map_err(llvm)?;
                    seen = Some(match seen {
                        None => on,
                        Some(a) => g.b.build_or(a, on, "").map_err(llvm)?,
                    });
                }
            }
            let bits =
                g.b.build_bit_cast(
                    seen.expect("rows and keys"),
                    g.ctx
                        .custom_width_int_type(
                            std::num::NonZeroU32::new(vl as u32).expect("vl ≥ 4"),
                        )
                        .map_err(llvm)?,
                    "",
                )
                .map_err(llvm)?
                .into_int_value();
            let any =
                g.b.build_int_compare(IntPredicate::NE, bits, bits.get_type().const_zero(), "any")
                    .map_err(llvm)?;
            g.branch(any, |_| strip(), |_| Ok(()))
        })
    };
    // Every key visible: no mask and a whole tile of keys.
    let all =
        g.b.build_and(
            g.b.build_int_compare(IntPredicate::EQ, masked, g.int(0), "")
                .map_err(llvm)?,
            g.b.build_int_compare(IntPredicate::EQ, cols, g.int(KEYS), "")
                .map_err(llvm)?,
            "all",
        )
        .map_err(llvm)?;
    g.branch(all, |_| strips(false), |_| strips(true))?;
    g.b.build_return(None).map_err(llvm)?;
    Ok(())
}
