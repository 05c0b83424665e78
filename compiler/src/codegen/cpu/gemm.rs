//! The f32 block product of [`crate::kernel::Gemm`]: one internal LLVM function per module,
//!
//! `void seqc_gemm_f32(i64 m, i64 n, i64 k, f32 *a, i64 a_rows, i64 a_cols, f32 *b,
//! i64 b_rows, i64 b_cols, f32 *c, i64 c_rows, i64 c_cols, i64 accumulate)`
//!
//! computing `c[i, j] = Σ_p a[i, p] · b[p, j]` (`c[i, j] +=` that when `accumulate` ≠ 0) for an m × n block (m ≤ `BLOCK_M`, n ≤
//! `BLOCK_N`). The GotoBLAS/BLIS structure: for each slice of `KC` steps of k, the block of b
//! is packed into panels of `NR` columns and the block of a into panels of `MR` rows (zero
//! padded, on the stack), then a register-blocked micro-kernel keeps an `MR × NR` tile of c in
//! `MR · NR / VL` vector registers across the slice, one broadcast of a and one fused
//! multiply-add per register and step. `VL` (floats per vector) follows from the target's
//! features; edge tiles go through a small stack tile, full ones are stored directly. When n fits
//! one column panel, a is not packed (each row panel would be read once): full row panels are
//! read in place.

use super::CodegenError;
use super::build::{IntOps, R, llvm, set_align};
use crate::kernel::gemm::{BLOCK_M, BLOCK_N};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, FloatType, IntType, VectorType};
use inkwell::values::{BasicValue, FunctionValue, IntValue, PointerValue, VectorValue};
use inkwell::{AddressSpace, IntPredicate};

/// The function's symbol.
pub const NAME: &str = "seqc_gemm_f32";

/// Steps of k per packed slice.
const KC: u64 = 256;

/// The micro-kernel's shape for a vector width: rows, and vectors per row.
fn shape(vl: u32) -> (u64, u64) {
    match vl {
        16 => (6, 4),
        8 => (6, 2),
        _ => (4, 2),
    }
}

/// Floats per vector register for an LLVM feature string.
pub fn vector_width(features: &str) -> u32 {
    let has = |f: &str| features.split(',').any(|x| x == format!("+{f}"));
    if has("avx512f") {
        16
    } else if has("avx2") || has("avx") {
        8
    } else {
        4
    }
}

/// The block-product function of `module`, added on first use.
pub fn function<'c>(ctx: &'c Context, module: &Module<'c>, vl: u32) -> R<FunctionValue<'c>> {
    if let Some(f) = module.get_function(NAME) {
        return Ok(f);
    }
    let (i64t, ptr) = (ctx.i64_type(), ctx.ptr_type(AddressSpace::default()));
    let mut params: Vec<BasicMetadataTypeEnum> = vec![i64t.into(); 3];
    for _ in 0..3 {
        let m: [BasicMetadataTypeEnum; 3] = [ptr.into(), i64t.into(), i64t.into()];
        params.extend(m);
    }
    params.push(i64t.into());
    let f = module.add_function(
        NAME,
        ctx.void_type().fn_type(&params, false),
        Some(Linkage::Internal),
    );
    Gen::new(ctx, module, f, vl).emit()?;
    Ok(f)
}

/// The generator of one function (its builder, types and vector shape); `attn_tile.rs`
/// builds its function with the same helpers.
pub(super) struct Gen<'a, 'c> {
    pub(super) ctx: &'c Context,
    pub(super) module: &'a Module<'c>,
    pub(super) b: Builder<'c>,
    pub(super) f: FunctionValue<'c>,
    pub(super) i64t: IntType<'c>,
    pub(super) f32t: FloatType<'c>,
    pub(super) vt: VectorType<'c>,
    pub(super) vl: u64,
    mr: u64,
    nv: u64,
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

impl<'a, 'c> Gen<'a, 'c> {
    pub(super) fn new(
        ctx: &'c Context,
        module: &'a Module<'c>,
        f: FunctionValue<'c>,
        vl: u32,
    ) -> Self {
        let (mr, nv) = shape(vl);
        Gen {
            ctx,
            module,
            b: ctx.create_builder(),
            f,
            i64t: ctx.i64_type(),
            f32t: ctx.f32_type(),
            vt: ctx.f32_type().vec_type(vl),
            vl: vl as u64,
            mr,
            nv,
        }
    }

    /// `&p[i]` for f32 elements.
    pub(super) fn at(&self, p: PointerValue<'c>, i: IntValue<'c>) -> R<PointerValue<'c>> {
        // The generated code indexes within the block the caller passes (m ≤ BLOCK_M,
        // n ≤ BLOCK_N, its buffers' strides) and within the stack panels sized for them.
        super::emit::gep(&self.b, self.f32t.into(), p, i)
    }

    pub(super) fn load(&self, p: PointerValue<'c>) -> R<inkwell::values::FloatValue<'c>> {
        let v = self.b.build_load(self.f32t, p, "").map_err(llvm)?;
        set_align(&v, 4)?;
        Ok(v.into_float_value())
    }

    pub(super) fn store(&self, p: PointerValue<'c>, v: impl BasicValue<'c>, align: u32) -> R<()> {
        let s = self.b.build_store(p, v).map_err(llvm)?;
        s.set_alignment(align).map_err(llvm)?;
        Ok(())
    }

    /// `for i in (start..end).step_by(step) { body(i) }`, test at the top.
    pub(super) fn each(
        &self,
        start: IntValue<'c>,
        end: IntValue<'c>,
        step: u64,
        body: impl FnOnce(&Self, IntValue<'c>) -> R<()>,
    ) -> R<()> {
        let pre = self.b.get_insert_block().expect("positioned");
        let head = self.ctx.append_basic_block(self.f, "head");
        let bodyb = self.ctx.append_basic_block(self.f, "body");
        let exit = self.ctx.append_basic_block(self.f, "exit");
        self.b.build_unconditional_branch(head).map_err(llvm)?;
        self.b.position_at_end(head);
        let phi = self.b.build_phi(self.i64t, "i").map_err(llvm)?;
        let i = phi.as_basic_value().into_int_value();
        let go = self.lt(i, end)?;
        self.b
            .build_conditional_branch(go, bodyb, exit)
            .map_err(llvm)?;
        self.b.position_at_end(bodyb);
        body(self, i)?;
        let next = self.add(i, self.int(step))?;
        let latch = self.b.get_insert_block().expect("positioned");
        self.b.build_unconditional_branch(head).map_err(llvm)?;
        phi.add_incoming(&[(&start, pre), (&next, latch)]);
        self.b.position_at_end(exit);
        Ok(())
    }

    fn emit(self) -> R<()> {
        let entry = self.ctx.append_basic_block(self.f, "entry");
        self.b.position_at_end(entry);
        let (m, n, k) = (self.iarg(0), self.iarg(1), self.iarg(2));
        let (a, a_r, a_c) = (self.parg(3), self.iarg(4), self.iarg(5));
        let (bm, b_r, b_c) = (self.parg(6), self.iarg(7), self.iarg(8));
        let (c, c_r, c_c) = (self.parg(9), self.iarg(10), self.iarg(11));
        let accumulate = self
            .b
            .build_int_compare(IntPredicate::NE, self.iarg(12), self.int(0), "accumulate")
            .map_err(llvm)?;
        let (mr, nr) = (self.mr, self.nv * self.vl);
        let mpanels = (BLOCK_M as u64).div_ceil(mr);
        let npanels = (BLOCK_N as u64).div_ceil(nr);
        let alloca = |len: u64, name: &str| -> R<PointerValue<'c>> {
            let p = self
                .b
                .build_array_alloca(self.f32t, self.int(len), name)
                .map_err(llvm)?;
            p.as_instruction()
                .expect("alloca")
                .set_alignment(64)
                .map_err(llvm)?;
            Ok(p)
        };
        let ap = alloca(mpanels * mr * KC, "apack")?;
        let bp = alloca(npanels * nr * KC, "bpack")?;
        let tile = alloca(mr * nr, "tile")?;
        let zero = self.f32t.const_zero();
        // k = 0: the product is all zeros (nothing to add when accumulating).
        let k0 = self.lt(k, self.int(1))?;
        let keep = self.b.build_not(accumulate, "").map_err(llvm)?;
        let empty = self.b.build_and(k0, keep, "empty").map_err(llvm)?;
        self.branch(
            empty,
            |g| {
                g.each(g.int(0), m, 1, |g, i| {
                    g.each(g.int(0), n, 1, |g, j| {
                        let o = g.add(g.mul(i, c_r)?, g.mul(j, c_c)?)?;
                        g.store(g.at(c, o)?, zero, 4)
                    })
                })
            },
            |_| Ok(()),
        )?;
        let pn =
            self.b
                .build_int_signed_div(self.add(n, self.int(nr - 1))?, self.int(nr), "npanels");
        let pn = pn.map_err(llvm)?;
        let pm = self
            .b
            .build_int_signed_div(self.add(m, self.int(mr - 1))?, self.int(mr), "mpanels")
            .map_err(llvm)?;
        self.each(self.int(0), k, KC, |g, pc| {
            let kc = g.min(g.int(KC), g.sub(k, pc)?)?;
            let at0 =
                g.b.build_int_compare(IntPredicate::EQ, pc, g.int(0), "")
                    .map_err(llvm)?;
            // The first slice of k overwrites c unless accumulating.
            let first = g.b.build_and(at0, keep, "first").map_err(llvm)?;
            // Pack b: panel jp, step p, column j at bp[(jp·kc + p)·NR + j].
            // (A panel wholly inside the block is copied without a test per element, which
            // the vectoriser can widen.)
            g.each(g.int(0), pn, 1, |g, jp| {
                let full = g.le(g.mul(g.add(jp, g.int(1))?, g.int(nr))?, n)?;
                let pack = |g: &Self, guard: bool| {
                    g.each(g.int(0), kc, 1, |g, p| {
                        let row = g.mul(g.add(pc, p)?, b_r)?;
                        let dst = g.mul(g.add(g.mul(jp, kc)?, p)?, g.int(nr))?;
                        g.each(g.int(0), g.int(nr), 1, |g, j| {
                            let col = g.add(g.mul(jp, g.int(nr))?, j)?;
                            let src = || g.add(row, g.mul(col, b_c)?);
                            let v = if guard {
                                g.guarded_load(g.lt(col, n)?, bm, src)?
                            } else {
                                g.load(g.at(bm, src()?)?)?
                            };
                            g.store(g.at(bp, g.add(dst, j)?)?, v, 4)
                        })
                    })
                };
                g.branch(full, |g| pack(g, false), |g| pack(g, true))
            })?;
            // One column panel (n ≤ NR, e.g. the products of tiled attention): each row
            // panel of a meets one panel of b, so packing a would copy it to read it once;
            // full row panels are read in place, only an edge panel is packed.
            let one = g.le(n, g.int(nr))?;
            g.branch(
                one,
                |g| {
                    g.each(g.int(0), pm, 1, |g, ip| {
                        let full = g.le(g.mul(g.add(ip, g.int(1))?, g.int(mr))?, m)?;
                        g.branch(
                            full,
                            |g| {
                                let at =
                                    g.add(g.mul(g.mul(ip, g.int(mr))?, a_r)?, g.mul(pc, a_c)?)?;
                                let acc = g.micro((g.at(a, at)?, a_r, a_c), bp, g.int(0), kc)?;
                                g.write(&acc, tile, first, (c, c_r, c_c), (m, n), (ip, g.int(0)))
                            },
                            |g| {
                                g.pack_a(ap, (a, a_r, a_c), (m, pc, kc), ip, true)?;
                                let a0 = g.at(ap, g.mul(g.mul(ip, kc)?, g.int(mr))?)?;
                                let acc = g.micro((a0, g.int(1), g.int(mr)), bp, g.int(0), kc)?;
                                g.write(&acc, tile, first, (c, c_r, c_c), (m, n), (ip, g.int(0)))
                            },
                        )
                    })
                },
                |g| {
                    g.each(g.int(0), pm, 1, |g, ip| {
                        let full = g.le(g.mul(g.add(ip, g.int(1))?, g.int(mr))?, m)?;
                        g.branch(
                            full,
                            |g| g.pack_a(ap, (a, a_r, a_c), (m, pc, kc), ip, false),
                            |g| g.pack_a(ap, (a, a_r, a_c), (m, pc, kc), ip, true),
                        )
                    })?;
                    g.each(g.int(0), pn, 1, |g, jp| {
                        g.each(g.int(0), pm, 1, |g, ip| {
                            let a0 = g.at(ap, g.mul(g.mul(ip, kc)?, g.int(mr))?)?;
                            let acc = g.micro((a0, g.int(1), g.int(mr)), bp, jp, kc)?;
                            g.write(&acc, tile, first, (c, c_r, c_c), (m, n), (ip, jp))
                        })
                    })
                },
            )
        })?;
        self.b.build_return(None).map_err(llvm)?;
        Ok(())
    }

    /// Packs row panel `ip` of a's slice `pc..pc + kc` at ap[(ip·kc + p)·MR + i] (rows past
    /// m as zeros when `guard`; without it, a panel wholly inside the block is copied without
    /// a test per element, which the vectoriser can widen).
    fn pack_a(
        &self,
        ap: PointerValue<'c>,
        (a, a_r, a_c): (PointerValue<'c>, IntValue<'c>, IntValue<'c>),
        (m, pc, kc): (IntValue<'c>, IntValue<'c>, IntValue<'c>),
        ip: IntValue<'c>,
        guard: bool,
    ) -> R<()> {
        let mr = self.mr;
        self.each(self.int(0), kc, 1, |g, p| {
            let col = g.mul(g.add(pc, p)?, a_c)?;
            let dst = g.mul(g.add(g.mul(ip, kc)?, p)?, g.int(mr))?;
            g.each(g.int(0), g.int(mr), 1, |g, i| {
                let row = g.add(g.mul(ip, g.int(mr))?, i)?;
                let src = || g.add(g.mul(row, a_r)?, col);
                let v = if guard {
                    g.guarded_load(g.lt(row, m)?, a, src)?
                } else {
                    g.load(g.at(a, src()?)?)?
                };
                g.store(g.at(ap, g.add(dst, i)?)?, v, 4)
            })
        })
    }

    /// `inside ? p[index()] : 0`, loading only when inside.
    fn guarded_load(
        &self,
        inside: IntValue<'c>,
        p: PointerValue<'c>,
        index: impl FnOnce() -> R<IntValue<'c>>,
    ) -> R<inkwell::values::FloatValue<'c>> {
        let pre = self.b.get_insert_block().expect("positioned");
        let (yes, join) = (
            self.ctx.append_basic_block(self.f, "in"),
            self.ctx.append_basic_block(self.f, "join"),
        );
        self.b
            .build_conditional_branch(inside, yes, join)
            .map_err(llvm)?;
        self.b.position_at_end(yes);
        let v = self.load(self.at(p, index()?)?)?;
        let yes_end = self.b.get_insert_block().expect("positioned");
        self.b.build_unconditional_branch(join).map_err(llvm)?;
        self.b.position_at_end(join);
        let phi = self.b.build_phi(self.f32t, "").map_err(llvm)?;
        phi.add_incoming(&[(&v, yes_end), (&self.f32t.const_zero(), pre)]);
        Ok(phi.as_basic_value().into_float_value())
    }

    /// The micro-kernel: the MR × NR tile of column panel `jp` over `kc` steps, as MR·NV
    /// accumulator vectors (row-major). Row i of a at step p is `a0[i·a_row + p·a_step]`:
    /// a packed panel (1, MR) or a read in place (a's strides).
    fn micro(
        &self,
        (a0, a_row, a_step): (PointerValue<'c>, IntValue<'c>, IntValue<'c>),
        bp: PointerValue<'c>,
        jp: IntValue<'c>,
        kc: IntValue<'c>,
    ) -> R<Vec<VectorValue<'c>>> {
        let (mr, nr, vl) = (self.mr, self.nv * self.vl, self.vl);
        let b0 = self.at(bp, self.mul(self.mul(jp, kc)?, self.int(nr))?)?;
        let fma = Intrinsic::find("llvm.fma")
            .and_then(|i| i.get_declaration(self.module, &[self.vt.into()]))
            .ok_or_else(|| CodegenError::Llvm("no llvm.fma declaration".into()))?;
        let pre = self.b.get_insert_block().expect("positioned");
        let (head, body, exit) = (
            self.ctx.append_basic_block(self.f, "uk.head"),
            self.ctx.append_basic_block(self.f, "uk.body"),
            self.ctx.append_basic_block(self.f, "uk.exit"),
        );
        self.b.build_unconditional_branch(head).map_err(llvm)?;
        self.b.position_at_end(head);
        let p = self.b.build_phi(self.i64t, "p").map_err(llvm)?;
        let mut phis = Vec::new();
        for _ in 0..mr * self.nv {
            phis.push(self.b.build_phi(self.vt, "acc").map_err(llvm)?);
        }
        let pv = p.as_basic_value().into_int_value();
        let go = self.lt(pv, kc)?;
        self.b
            .build_conditional_branch(go, body, exit)
            .map_err(llvm)?;
        self.b.position_at_end(body);
        let brow = self.at(b0, self.mul(pv, self.int(nr))?)?;
        let mut bv = Vec::new();
        for v in 0..self.nv {
            let ptr = self.at(brow, self.int(v * vl))?;
            let x = self.b.build_load(self.vt, ptr, "bv").map_err(llvm)?;
            set_align(&x, (vl * 4) as u32)?;
            bv.push(x.into_vector_value());
        }
        let acol = self.at(a0, self.mul(pv, a_step)?)?;
        let mut next = Vec::new();
        for i in 0..mr {
            let s = self.load(self.at(acol, self.mul(self.int(i), a_row)?)?)?;
            let splat = self.splat(s)?;
            for v in 0..self.nv as usize {
                let acc = phis[i as usize * self.nv as usize + v]
                    .as_basic_value()
                    .into_vector_value();
                let r = self
                    .b
                    .build_call(fma, &[splat.into(), bv[v].into(), acc.into()], "")
                    .map_err(llvm)?;
                let r = r
                    .try_as_basic_value()
                    .basic()
                    .ok_or_else(|| CodegenError::Llvm("fma returned nothing".into()))?;
                next.push(r.into_vector_value());
            }
        }
        let pn = self.add(pv, self.int(1))?;
        let latch = self.b.get_insert_block().expect("positioned");
        self.b.build_unconditional_branch(head).map_err(llvm)?;
        p.add_incoming(&[(&self.int(0), pre), (&pn, latch)]);
        let zero = self.vt.const_zero();
        for (phi, x) in phis.iter().zip(&next) {
            phi.add_incoming(&[(&zero, pre), (x, latch)]);
        }
        self.b.position_at_end(exit);
        Ok(phis
            .iter()
            .map(|p| p.as_basic_value().into_vector_value())
            .collect())
    }

    pub(super) fn splat(&self, s: inkwell::values::FloatValue<'c>) -> R<VectorValue<'c>> {
        let undef = self.vt.get_undef();
        let one = self
            .b
            .build_insert_element(undef, s, self.int(0), "")
            .map_err(llvm)?;
        let mask = self.ctx.i32_type().vec_type(self.vl as u32).const_zero();
        self.b
            .build_shuffle_vector(one, undef, mask, "splat")
            .map_err(llvm)
    }

    /// Stores (first slice of k) or adds the tile into c: full tiles with unit column stride
    /// directly as vectors, edge tiles element by element through the stack tile.
    fn write(
        &self,
        acc: &[VectorValue<'c>],
        tile: PointerValue<'c>,
        first: IntValue<'c>,
        (c, c_r, c_c): (PointerValue<'c>, IntValue<'c>, IntValue<'c>),
        (m, n): (IntValue<'c>, IntValue<'c>),
        (ip, jp): (IntValue<'c>, IntValue<'c>),
    ) -> R<()> {
        let (mr, nr, vl) = (self.mr, self.nv * self.vl, self.vl);
        let (i0, j0) = (self.mul(ip, self.int(mr))?, self.mul(jp, self.int(nr))?);
        let full_rows =
            self.b
                .build_int_compare(IntPredicate::SLE, self.add(i0, self.int(mr))?, m, "");
        let full_cols =
            self.b
                .build_int_compare(IntPredicate::SLE, self.add(j0, self.int(nr))?, n, "");
        let unit = self
            .b
            .build_int_compare(IntPredicate::EQ, c_c, self.int(1), "")
            .map_err(llvm)?;
        let full = self
            .b
            .build_and(full_rows.map_err(llvm)?, full_cols.map_err(llvm)?, "")
            .map_err(llvm)?;
        let fast = self.b.build_and(full, unit, "fast").map_err(llvm)?;
        self.branch(
            fast,
            |g| {
                for i in 0..mr {
                    let row = g.mul(g.add(i0, g.int(i))?, c_r)?;
                    for v in 0..g.nv {
                        let at = g.at(c, g.add(row, g.add(j0, g.int(v * vl))?)?)?;
                        let x = acc[(i * g.nv + v) as usize];
                        let old = g.b.build_load(g.vt, at, "").map_err(llvm)?;
                        set_align(&old, 4)?;
                        let sum =
                            g.b.build_float_add(old.into_vector_value(), x, "")
                                .map_err(llvm)?;
                        let val = g.b.build_select(first, x, sum, "").map_err(llvm)?;
                        g.store(at, val, 4)?;
                    }
                }
                Ok(())
            },
            |g| {
                for (t, x) in acc.iter().enumerate() {
                    let at = g.at(tile, g.int(t as u64 * vl))?;
                    g.store(at, *x, 4)?;
                }
                let rows = g.min(g.int(mr), g.sub(m, i0)?)?;
                let cols = g.min(g.int(nr), g.sub(n, j0)?)?;
                g.each(g.int(0), rows, 1, |g, i| {
                    g.each(g.int(0), cols, 1, |g, j| {
                        let x = g.load(g.at(tile, g.add(g.mul(i, g.int(nr))?, j)?)?)?;
                        let o = g.add(g.mul(g.add(i0, i)?, c_r)?, g.mul(g.add(j0, j)?, c_c)?)?;
                        let at = g.at(c, o)?;
                        let old = g.load(at)?;
                        let sum = g.b.build_float_add(old, x, "").map_err(llvm)?;
                        let val = g.b.build_select(first, x, sum, "").map_err(llvm)?;
                        g.store(at, val, 4)
                    })
                })
            },
        )
    }
}
