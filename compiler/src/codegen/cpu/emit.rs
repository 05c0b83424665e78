//! Kernel IR → LLVM IR. Each kernel becomes one function with the fixed C ABI
//! `void k(void **bufs, const int64_t *dims, int64_t begin, int64_t end, int64_t *status)`:
//! `bufs[b]` is buffer `b`'s base pointer, `dims[n]` the program's dim `n`, [begin, end) the
//! range of the outermost loop (what the runtime splits over threads), and `*status` is set
//! to 1 (an index out of range) or 2 (an integer division by zero) instead of undefined
//! behaviour.
//!
//! Registers hold floats as f64, ints as i64 and bools as i1; a value typed f32 (i32) is
//! rounded (wrapped) after every operation, as the interpreter rounds every node; f16 and
//! bf16 likewise (`half.rs`: one correct rounding from the f64, stored as their 16 bits). The
//! elementary functions (exp, log, tanh, erf, sin, cos, pow, …) are emitted inline by
//! `math.rs` (in f32 for an f32 value where that is accurate, in f64 for the others, so an
//! f16/bf16 result is the f64 function rounded once), so that loops using them
//! vectorise and no libm is needed (the GPU has none): a kernel calls no external function.

use super::CodegenError;
use crate::ir::{BinaryOp, UnaryOp};
use crate::kernel::{AttnTile, BufId, Expr, Gemm, Kernel, Loop, Program, Recur, Stmt, Strided, Ty};
use inkwell::attributes::AttributeLoc;
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicTypeEnum, FloatType, IntType};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, BasicValueEnum, FloatValue, FunctionValue,
    InstructionValue, IntValue, PointerValue,
};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};
use seqc_runtime::DType;

/// Status codes a kernel writes to `*status`.
pub const STATUS_INDEX: i64 = 1;
pub const STATUS_DIV_ZERO: i64 = 2;

use super::build::{R, llvm};

/// Adds one function per kernel of `p` to `module`.
/// `vl` is the target's f32 vector width (floats per register), for the block products.
pub fn emit_program<'c>(ctx: &'c Context, module: &Module<'c>, p: &Program, vl: u32) -> R<()> {
    for k in &p.kernels {
        let mut e = KernelEmitter::new(ctx, module, p, k)?;
        e.vl = vl;
        if vl >= 16 {
            // LLVM's x86 targets with AVX-512 prefer 256-bit vectors when vectorising loops
            // (frequency licences on older parts); our loops are throughput-bound, so use
            // the full 512 bits the features give.
            e.f.add_attribute(
                AttributeLoc::Function,
                ctx.create_string_attribute("prefer-vector-width", "512"),
            );
        }
        e.emit()?;
    }
    Ok(())
}

struct KernelEmitter<'a, 'c> {
    ctx: &'c Context,
    module: &'a Module<'c>,
    b: Builder<'c>,
    p: &'a Program,
    k: &'a Kernel,
    f: FunctionValue<'c>,
    bufs: Vec<Option<PointerValue<'c>>>,
    dims: Vec<IntValue<'c>>,
    vars: Vec<Option<IntValue<'c>>>,
    accs: Vec<PointerValue<'c>>,
    status: PointerValue<'c>,
    f64t: FloatType<'c>,
    i64t: IntType<'c>,
    vl: u32,
    /// The alias scope of each buffer the kernel touches.
    scopes: Vec<Option<super::metadata::Scope>>,
}

impl<'a, 'c> KernelEmitter<'a, 'c> {
    fn new(ctx: &'c Context, module: &'a Module<'c>, p: &'a Program, k: &'a Kernel) -> R<Self> {
        let ptr = ctx.ptr_type(AddressSpace::default());
        let i64t = ctx.i64_type();
        let fty = ctx.void_type().fn_type(
            &[ptr.into(), ptr.into(), i64t.into(), i64t.into(), ptr.into()],
            false,
        );
        let f = module.add_function(&k.name, fty, Some(Linkage::External));
        let b = ctx.create_builder();
        let entry = ctx.append_basic_block(f, "entry");
        b.position_at_end(entry);
        let arg = |i: u32| f.get_nth_param(i).expect("declared");
        let (table, dimp) = (arg(0).into_pointer_value(), arg(1).into_pointer_value());
        let status = arg(4).into_pointer_value();
        // Every buffer the kernel touches and every dim, loaded once at entry.
        let mut used = vec![false; p.buffers.len()];
        k.root
            .for_each_access(&mut |buf, _| used[buf.0 as usize] = true);
        let mut bufs = vec![None; p.buffers.len()];
        for (i, u) in used.iter().enumerate() {
            if *u {
                let slot = gep(&b, ptr.into(), table, i64t.const_int(i as u64, false))?;
                let v = b.build_load(ptr, slot, &format!("b{i}")).map_err(llvm)?;
                bufs[i] = Some(v.into_pointer_value());
            }
        }
        let mut dims = Vec::with_capacity(p.dims.len());
        for (i, name) in p.dims.iter().enumerate() {
            let slot = gep(&b, i64t.into(), dimp, i64t.const_int(i as u64, false))?;
            dims.push(
                b.build_load(i64t, slot, name)
                    .map_err(llvm)?
                    .into_int_value(),
            );
        }
        let mut accs = Vec::with_capacity(k.accs.len());
        for (i, t) in k.accs.iter().enumerate() {
            let ty = reg_type(ctx, *t);
            accs.push(b.build_alloca(ty, &format!("a{i}")).map_err(llvm)?);
        }
        Ok(KernelEmitter {
            ctx,
            module,
            b,
            p,
            k,
            f,
            bufs,
            dims,
            vars: Vec::new(),
            accs,
            status,
            f64t: ctx.f64_type(),
            i64t,
            vl: 4,
            scopes: super::metadata::scopes(ctx, &k.name, &used),
        })
    }

    fn emit(mut self) -> R<()> {
        let begin = self.f.get_nth_param(2).expect("begin").into_int_value();
        let end = self.f.get_nth_param(3).expect("end").into_int_value();
        let root = self.k.root.clone();
        self.emit_loop(&root, begin, end)?;
        self.b.build_return(None).map_err(llvm)?;
        Ok(())
    }

    fn block(&self, name: &str) -> BasicBlock<'c> {
        self.ctx.append_basic_block(self.f, name)
    }

    fn current(&self) -> BasicBlock<'c> {
        self.b.get_insert_block().expect("positioned")
    }

    /// `for var in start..end { body }` with the test at the top.
    fn emit_loop(&mut self, l: &Loop, start: IntValue<'c>, end: IntValue<'c>) -> R<()> {
        let pre = self.current();
        let (head, body, exit) = (
            self.block(&format!("i{}.head", l.var.0)),
            self.block(&format!("i{}.body", l.var.0)),
            self.block(&format!("i{}.exit", l.var.0)),
        );
        self.b.build_unconditional_branch(head).map_err(llvm)?;
        self.b.position_at_end(head);
        let phi = self
            .b
            .build_phi(self.i64t, &format!("i{}", l.var.0))
            .map_err(llvm)?;
        let i = phi.as_basic_value().into_int_value();
        let go = self
            .b
            .build_int_compare(IntPredicate::SLT, i, end, "go")
            .map_err(llvm)?;
        self.b
            .build_conditional_branch(go, body, exit)
            .map_err(llvm)?;
        self.b.position_at_end(body);
        let v = l.var.0 as usize;
        if self.vars.len() <= v {
            self.vars.resize(v + 1, None);
        }
        self.vars[v] = Some(i);
        for s in &l.body {
            self.emit_stmt(s)?;
        }
        let next = self
            .b
            .build_int_add(i, self.i64t.const_int(1, false), "next")
            .map_err(llvm)?;
        let latch = self.current();
        let back = self.b.build_unconditional_branch(head).map_err(llvm)?;
        super::metadata::tag_loop(self.ctx, back, l.sched)?;
        phi.add_incoming(&[(&start, pre), (&next, latch)]);
        self.b.position_at_end(exit);
        Ok(())
    }

    fn emit_stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Loop(l) => {
                let end = self.expr(&l.extent)?.into_int_value();
                self.emit_loop(l, self.i64t.const_zero(), end)
            }
            Stmt::Store { buf, index, value } => {
                let i = self.expr(index)?.into_int_value();
                let v = self.expr(value)?;
                self.store(*buf, i, v)
            }
            Stmt::Assign { acc, value } => {
                let v = self.expr(value)?;
                self.b
                    .build_store(self.accs[acc.0 as usize], v)
                    .map_err(llvm)?;
                Ok(())
            }
            Stmt::Gemm(g) => self.gemm(g),
            Stmt::Recur(r) => self.recur(r),
            Stmt::AttnTile(t) => self.attn_tile(t),
            Stmt::If { cond, body } => {
                let c = self.expr(cond)?.into_int_value();
                let (then, end) = (self.block("if.then"), self.block("if.end"));
                self.b
                    .build_conditional_branch(c, then, end)
                    .map_err(llvm)?;
                self.b.position_at_end(then);
                for s in body {
                    self.emit_stmt(s)?;
                }
                self.b.build_unconditional_branch(end).map_err(llvm)?;
                self.b.position_at_end(end);
                Ok(())
            }
        }
    }

    /// A call of the module's block-product function (`gemm.rs`).
    fn gemm(&mut self, g: &Gemm) -> R<()> {
        let f = super::gemm::function(self.ctx, self.module, self.vl)?;
        let mut args: Vec<BasicMetadataValueEnum> = Vec::new();
        for e in [&g.m, &g.n, &g.k] {
            args.push(self.expr(e)?.into_int_value().into());
        }
        for s in [&g.a, &g.b, &g.c] {
            self.strided_args(s, true, &mut args)?;
        }
        args.push(self.i64t.const_int(g.accumulate as u64, false).into());
        self.b.build_call(f, &args, "").map_err(llvm)?;
        Ok(())
    }

    /// A call of the module's attention tile step (`attn_tile.rs`).
    fn attn_tile(&mut self, t: &AttnTile) -> R<()> {
        let f = super::attn_tile::function(self.ctx, self.module, self.vl)?;
        let mut args: Vec<BasicMetadataValueEnum> = Vec::new();
        for e in [&t.rows, &t.cols, &t.depth, &t.width] {
            args.push(self.expr(e)?.into_int_value().into());
        }
        // (view, whether its column stride is passed): out, max, sum and the mask have
        // unit column stride (max and sum are read at column 0).
        for (s, cols) in [
            (&t.q, true),
            (&t.k, true),
            (&t.v, true),
            (&t.out, false),
            (&t.max, false),
            (&t.sum, false),
            (&t.mask, false),
        ] {
            self.strided_args(s, cols, &mut args)?;
        }
        let masked = self.expr(&t.masked)?.into_int_value();
        let masked = self
            .b
            .build_int_z_extend(masked, self.i64t, "")
            .map_err(llvm)?;
        args.push(masked.into());
        args.push(self.ctx.f32_type().const_float(t.scale).into());
        self.b.build_call(f, &args, "").map_err(llvm)?;
        Ok(())
    }

    /// A call of the module's linear-attention recurrence (`recur.rs`).
    fn recur(&mut self, r: &Recur) -> R<()> {
        let f = super::recur::function(
            self.ctx,
            self.module,
            self.vl,
            r.decay.is_some(),
            r.strict,
            r.norm.is_some(),
        )?;
        let mut args: Vec<BasicMetadataValueEnum> = Vec::new();
        for e in [&r.steps, &r.rows, &r.width] {
            args.push(self.expr(e)?.into_int_value().into());
        }
        // (view, whether its column stride is passed): v, out and the state have unit
        // column stride; without a decay, q stands in for d (never read).
        let d = r.decay.as_ref().unwrap_or(&r.q);
        for (s, cols) in [
            (&r.q, true),
            (&r.k, true),
            (&r.v, false),
            (&r.out, false),
            (&r.state, false),
            (d, true),
        ] {
            self.strided_args(s, cols, &mut args)?;
        }
        // The normaliser's state (without one, the state stands in: never read).
        let n = r.norm.as_ref().unwrap_or(&r.state);
        let off = self.expr(&n.offset)?.into_int_value();
        let base = gep(
            &self.b,
            self.ctx.f32_type().into(),
            self.buf_ptr(n.buf)?,
            off,
        )?;
        args.push(base.into());
        self.b.build_call(f, &args, "").map_err(llvm)?;
        Ok(())
    }

    /// A strided f32 view as call arguments: its base pointer, its row stride and (with
    /// `cols`) its column stride.
    fn strided_args(
        &mut self,
        s: &Strided,
        cols: bool,
        args: &mut Vec<BasicMetadataValueEnum<'c>>,
    ) -> R<()> {
        let off = self.expr(&s.offset)?.into_int_value();
        let base = gep(
            &self.b,
            self.ctx.f32_type().into(),
            self.buf_ptr(s.buf)?,
            off,
        )?;
        args.push(base.into());
        args.push(self.expr(&s.rows)?.into_int_value().into());
        if cols {
            args.push(self.expr(&s.cols)?.into_int_value().into());
        }
        Ok(())
    }

    fn buf_ptr(&self, buf: BufId) -> R<PointerValue<'c>> {
        self.bufs[buf.0 as usize]
            .ok_or_else(|| CodegenError::Llvm(format!("buffer b{} not loaded", buf.0)))
    }

    fn storage(&self, d: DType) -> BasicTypeEnum<'c> {
        match d {
            DType::F32 => self.ctx.f32_type().into(),
            DType::F16 | DType::BF16 => self.ctx.i16_type().into(),
            DType::I32 => self.ctx.i32_type().into(),
            DType::I64 => self.i64t.into(),
            DType::Bool => self.ctx.i8_type().into(),
        }
    }

    /// Gives a load or store of `buf` the buffer's alias scope.
    fn mark(&self, buf: BufId, inst: InstructionValue<'c>) {
        if let Some(s) = self.scopes[buf.0 as usize] {
            super::metadata::mark(self.ctx, inst, s);
        }
    }

    fn store(&mut self, buf: BufId, i: IntValue<'c>, v: BasicValueEnum<'c>) -> R<()> {
        let d = self.p.buffer(buf).dtype;
        let st = self.storage(d);
        let at = gep(&self.b, st, self.buf_ptr(buf)?, i)?;
        let sv: BasicValueEnum = match d {
            DType::I32 => self
                .b
                .build_int_truncate(v.into_int_value(), self.ctx.i32_type(), "")
                .map_err(llvm)?
                .into(),
            DType::Bool => self
                .b
                .build_int_z_extend(v.into_int_value(), self.ctx.i8_type(), "")
                .map_err(llvm)?
                .into(),
            DType::I64 => v,
            DType::F16 | DType::BF16 => self.half().encode(v.into_float_value(), Ty::of(d))?.into(),
            _ => self
                .b
                .build_float_trunc(v.into_float_value(), self.ctx.f32_type(), "")
                .map_err(llvm)?
                .into(),
        };
        let inst = self.b.build_store(at, sv).map_err(llvm)?;
        inst.set_alignment(d.size_bytes() as u32).map_err(llvm)?;
        self.mark(buf, inst);
        Ok(())
    }

    fn load(&mut self, buf: BufId, i: IntValue<'c>) -> R<BasicValueEnum<'c>> {
        let d = self.p.buffer(buf).dtype;
        let st = self.storage(d);
        let at = gep(&self.b, st, self.buf_ptr(buf)?, i)?;
        let v = self.b.build_load(st, at, "").map_err(llvm)?;
        if let Some(inst) = v.as_instruction_value() {
            inst.set_alignment(d.size_bytes() as u32).map_err(llvm)?;
            self.mark(buf, inst);
        }
        Ok(match d {
            DType::I32 => self
                .b
                .build_int_s_extend(v.into_int_value(), self.i64t, "")
                .map_err(llvm)?
                .into(),
            DType::Bool => self
                .b
                .build_int_compare(
                    IntPredicate::NE,
                    v.into_int_value(),
                    self.ctx.i8_type().const_zero(),
                    "",
                )
                .map_err(llvm)?
                .into(),
            DType::I64 => v,
            DType::F16 | DType::BF16 => self.half().decode(v.into_int_value(), Ty::of(d))?.into(),
            _ => self
                .b
                .build_float_ext(v.into_float_value(), self.f64t, "")
                .map_err(llvm)?
                .into(),
        })
    }

    fn expr(&mut self, e: &Expr) -> R<BasicValueEnum<'c>> {
        Ok(match e {
            Expr::Var(v) => self
                .vars
                .get(v.0 as usize)
                .copied()
                .flatten()
                .ok_or_else(|| CodegenError::Llvm(format!("loop variable i{} unbound", v.0)))?
                .into(),
            Expr::Dim(n) => self.dims[*n].into(),
            Expr::Int(v, Ty::Bool) => self
                .ctx
                .bool_type()
                .const_int((*v != 0) as u64, false)
                .into(),
            Expr::Int(v, t) if t.is_float() => self.f64t.const_float(*v as f64).into(),
            Expr::Int(v, t) => self.round(self.i64t.const_int(*v as u64, true).into(), *t)?,
            Expr::Float(v, t) if t.is_int() => self.i64t.const_int(*v as i64 as u64, true).into(),
            Expr::Float(v, t) => self.round(self.f64t.const_float(*v).into(), *t)?,
            Expr::Bool(v) => self.ctx.bool_type().const_int(*v as u64, false).into(),
            Expr::Load { buf, index } => {
                let i = self.expr(index)?.into_int_value();
                self.load(*buf, i)?
            }
            Expr::Acc(a) => {
                let t = reg_type(self.ctx, self.k.accs[a.0 as usize]);
                self.b
                    .build_load(t, self.accs[a.0 as usize], "")
                    .map_err(llvm)?
            }
            Expr::Unary { op, ty, x } => {
                let v = self.expr(x)?;
                let r = self.unary(*op, *ty, v)?;
                self.round(r, *ty)?
            }
            Expr::Binary { op, ty, a, b } => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                let r = self.binary(*op, *ty, x, y)?;
                if op.is_comparison() {
                    r
                } else {
                    self.round(r, *ty)?
                }
            }
            Expr::Select { cond, a, b } => {
                let c = self.expr(cond)?.into_int_value();
                let (then, other, merge) = (
                    self.block("sel.a"),
                    self.block("sel.b"),
                    self.block("sel.end"),
                );
                self.b
                    .build_conditional_branch(c, then, other)
                    .map_err(llvm)?;
                self.b.position_at_end(then);
                let va = self.expr(a)?;
                let end_a = self.current();
                self.b.build_unconditional_branch(merge).map_err(llvm)?;
                self.b.position_at_end(other);
                let vb = self.expr(b)?;
                let end_b = self.current();
                self.b.build_unconditional_branch(merge).map_err(llvm)?;
                self.b.position_at_end(merge);
                let phi = self.b.build_phi(va.get_type(), "sel").map_err(llvm)?;
                phi.add_incoming(&[(&va, end_a), (&vb, end_b)]);
                phi.as_basic_value()
            }
            Expr::Cast { from, to, x } => {
                let v = self.expr(x)?;
                self.cast(*from, *to, v)?
            }
            Expr::Checked { index, len } => {
                let i = self.expr(index)?.into_int_value();
                let n = self.expr(len)?.into_int_value();
                let ok_lo = self
                    .b
                    .build_int_compare(IntPredicate::SGE, i, self.i64t.const_zero(), "")
                    .map_err(llvm)?;
                let ok_hi = self
                    .b
                    .build_int_compare(IntPredicate::SLT, i, n, "")
                    .map_err(llvm)?;
                let ok = self.b.build_and(ok_lo, ok_hi, "inrange").map_err(llvm)?;
                self.flag_unless(ok, STATUS_INDEX)?;
                self.b
                    .build_select(ok, i, self.i64t.const_zero(), "")
                    .map_err(llvm)?
            }
        })
    }

    /// Writes `code` to the status word when `ok` is false.
    fn flag_unless(&mut self, ok: IntValue<'c>, code: i64) -> R<()> {
        let (bad, cont) = (self.block("bad"), self.block("ok"));
        self.b
            .build_conditional_branch(ok, cont, bad)
            .map_err(llvm)?;
        self.b.position_at_end(bad);
        self.b
            .build_store(self.status, self.i64t.const_int(code as u64, true))
            .map_err(llvm)?;
        self.b.build_unconditional_branch(cont).map_err(llvm)?;
        self.b.position_at_end(cont);
        Ok(())
    }

    fn half(&self) -> super::half::Half<'_, 'c> {
        super::half::Half {
            ctx: self.ctx,
            module: self.module,
            b: &self.b,
        }
    }

    /// Rounds a register value to `ty` (f32 through float, f16 and bf16 by `half.rs`, i32
    /// by wrapping).
    fn round(&mut self, v: BasicValueEnum<'c>, ty: Ty) -> R<BasicValueEnum<'c>> {
        Ok(match ty {
            Ty::F16 | Ty::BF16 => self.half().round(v.into_float_value(), ty)?.into(),
            Ty::F32 => {
                let f = self
                    .b
                    .build_float_trunc(v.into_float_value(), self.ctx.f32_type(), "")
                    .map_err(llvm)?;
                self.b
                    .build_float_ext(f, self.f64t, "")
                    .map_err(llvm)?
                    .into()
            }
            Ty::I32 => {
                let t = self
                    .b
                    .build_int_truncate(v.into_int_value(), self.ctx.i32_type(), "")
                    .map_err(llvm)?;
                self.b
                    .build_int_s_extend(t, self.i64t, "")
                    .map_err(llvm)?
                    .into()
            }
            _ => v,
        })
    }

    fn call(&mut self, name: &str, args: &[FloatValue<'c>]) -> R<FloatValue<'c>> {
        let f = if let Some(i) = Intrinsic::find(name) {
            i.get_declaration(self.module, &[self.f64t.into()])
                .ok_or_else(|| CodegenError::Llvm(format!("no declaration of {name}")))?
        } else {
            match self.module.get_function(name) {
                Some(f) => f,
                None => {
                    let params: Vec<_> = args.iter().map(|_| self.f64t.into()).collect();
                    let ty = self.f64t.fn_type(&params, false);
                    self.module.add_function(name, ty, Some(Linkage::External))
                }
            }
        };
        let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
        let c = self.b.build_call(f, &args, "").map_err(llvm)?;
        c.try_as_basic_value()
            .basic()
            .map(|v| v.into_float_value())
            .ok_or_else(|| CodegenError::Llvm(format!("{name} returned nothing")))
    }

    fn fconst(&self, v: f64) -> FloatValue<'c> {
        self.f64t.const_float(v)
    }

    fn fsel(&self, c: IntValue<'c>, a: FloatValue<'c>, b: FloatValue<'c>) -> R<FloatValue<'c>> {
        Ok(self
            .b
            .build_select(c, a, b, "")
            .map_err(llvm)?
            .into_float_value())
    }

    fn fcmp(&self, p: FloatPredicate, a: FloatValue<'c>, b: FloatValue<'c>) -> R<IntValue<'c>> {
        self.b.build_float_compare(p, a, b, "").map_err(llvm)
    }

    fn unary(&mut self, op: UnaryOp, ty: Ty, v: BasicValueEnum<'c>) -> R<BasicValueEnum<'c>> {
        if ty == Ty::Bool {
            return match op {
                UnaryOp::Not => Ok(self
                    .b
                    .build_not(v.into_int_value(), "")
                    .map_err(llvm)?
                    .into()),
                _ => Err(CodegenError::Unsupported(format!("`{op:?}` of bool"))),
            };
        }
        if ty.is_int() {
            let x = v.into_int_value();
            let zero = self.i64t.const_zero();
            let neg = self.b.build_int_sub(zero, x, "").map_err(llvm)?;
            let lt0 = self
                .b
                .build_int_compare(IntPredicate::SLT, x, zero, "")
                .map_err(llvm)?;
            return Ok(match op {
                UnaryOp::Neg => neg.into(),
                UnaryOp::Abs => self.b.build_select(lt0, neg, x, "").map_err(llvm)?,
                UnaryOp::Relu => self.b.build_select(lt0, zero, x, "").map_err(llvm)?,
                _ => return Err(CodegenError::Unsupported(format!("`{op:?}` of an integer"))),
            });
        }
        let x = v.into_float_value();
        if let Some(r) = self.math(op, ty, x)? {
            return Ok(r.into());
        }
        let one = self.fconst(1.0);
        let b = &self.b;
        let r = match op {
            UnaryOp::Neg => b.build_float_neg(x, "").map_err(llvm)?,
            UnaryOp::Abs => self.call("llvm.fabs", &[x])?,
            UnaryOp::Sqrt => self.call("llvm.sqrt", &[x])?,
            UnaryOp::Rsqrt => {
                let s = self.call("llvm.sqrt", &[x])?;
                self.b.build_float_div(one, s, "").map_err(llvm)?
            }
            UnaryOp::Recip => b.build_float_div(one, x, "").map_err(llvm)?,
            UnaryOp::Relu => {
                let keep = self.fcmp(FloatPredicate::UGT, x, self.fconst(0.0))?;
                self.fsel(keep, x, self.fconst(0.0))?
            }
            UnaryOp::Floor => self.call("llvm.floor", &[x])?,
            UnaryOp::Not => return Err(CodegenError::Unsupported("`not` of a float".into())),
            _ => {
                return Err(CodegenError::Unsupported(format!(
                    "`{}` of a float",
                    crate::ir::op::unary_name(op)
                )));
            }
        };
        Ok(r.into())
    }

    /// The inline elementary functions of `math.rs` (exp, log, tanh, erf, …): computed in
    /// f32 for an f32 value, in f64 otherwise; `None` for the other operators.
    fn math(&mut self, op: UnaryOp, ty: Ty, x: FloatValue<'c>) -> R<Option<FloatValue<'c>>> {
        let single = ty == Ty::F32;
        let m = super::math::Math::new(self.ctx, self.module, &self.b, single);
        let xin = if single {
            self.b.build_float_trunc(x, m.ty(), "").map_err(llvm)?
        } else {
            x
        };
        let Some(r) = m.unary(op, xin)? else {
            return Ok(None);
        };
        Ok(Some(if single {
            self.b.build_float_ext(r, self.f64t, "").map_err(llvm)?
        } else {
            r
        }))
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        ty: Ty,
        a: BasicValueEnum<'c>,
        b: BasicValueEnum<'c>,
    ) -> R<BasicValueEnum<'c>> {
        if ty.is_float() {
            return self.fbinary(op, a.into_float_value(), b.into_float_value());
        }
        let (x, y) = (a.into_int_value(), b.into_int_value());
        let bd = &self.b;
        if let Some(p) = int_predicate(op, ty == Ty::Bool) {
            return Ok(bd.build_int_compare(p, x, y, "").map_err(llvm)?.into());
        }
        Ok(match (op, ty) {
            (BinaryOp::And | BinaryOp::Min, Ty::Bool) => bd.build_and(x, y, "").map_err(llvm)?,
            (BinaryOp::Or | BinaryOp::Max, Ty::Bool) => bd.build_or(x, y, "").map_err(llvm)?,
            (BinaryOp::Add, _) => bd.build_int_add(x, y, "").map_err(llvm)?,
            (BinaryOp::Sub, _) => bd.build_int_sub(x, y, "").map_err(llvm)?,
            (BinaryOp::Mul, _) => bd.build_int_mul(x, y, "").map_err(llvm)?,
            (BinaryOp::Max | BinaryOp::Min, _) => {
                let p = if op == BinaryOp::Max {
                    IntPredicate::SGT
                } else {
                    IntPredicate::SLT
                };
                let c = bd.build_int_compare(p, x, y, "").map_err(llvm)?;
                bd.build_select(c, x, y, "").map_err(llvm)?.into_int_value()
            }
            (BinaryOp::Div | BinaryOp::Rem, _) => self.floor_divrem(op, x, y)?,
            _ => {
                return Err(CodegenError::Unsupported(format!(
                    "`{}` of {}",
                    crate::ir::op::binary_name(op),
                    ty.name()
                )));
            }
        }
        .into())
    }

    /// Python's floor division / modulo; a zero divisor flags the status and divides by 1,
    /// and −1 is taken apart so that i64::MIN / −1 wraps instead of trapping.
    fn floor_divrem(&mut self, op: BinaryOp, x: IntValue<'c>, y: IntValue<'c>) -> R<IntValue<'c>> {
        let t = self.i64t;
        let (zero, one, m1) = (t.const_zero(), t.const_int(1, false), t.const_all_ones());
        if y.get_zero_extended_constant()
            .is_none_or(|c| c == 0 || c == u64::MAX)
        {
            let nz = self
                .b
                .build_int_compare(IntPredicate::NE, y, zero, "")
                .map_err(llvm)?;
            self.flag_unless(nz, STATUS_DIV_ZERO)?;
        }
        let b = &self.b;
        let is0 = b
            .build_int_compare(IntPredicate::EQ, y, zero, "")
            .map_err(llvm)?;
        let ism1 = b
            .build_int_compare(IntPredicate::EQ, y, m1, "")
            .map_err(llvm)?;
        let bad = b.build_or(is0, ism1, "").map_err(llvm)?;
        let d = b
            .build_select(bad, one, y, "")
            .map_err(llvm)?
            .into_int_value();
        let q = b.build_int_signed_div(x, d, "").map_err(llvm)?;
        let r = b.build_int_signed_rem(x, d, "").map_err(llvm)?;
        // Floor: when the remainder is non-zero and its sign differs from the divisor's.
        let rnz = b
            .build_int_compare(IntPredicate::NE, r, zero, "")
            .map_err(llvm)?;
        let sx = b.build_xor(r, d, "").map_err(llvm)?;
        let diff = b
            .build_int_compare(IntPredicate::SLT, sx, zero, "")
            .map_err(llvm)?;
        let fix = b.build_and(rnz, diff, "").map_err(llvm)?;
        let negx = b.build_int_sub(zero, x, "").map_err(llvm)?;
        Ok(if op == BinaryOp::Div {
            let q1 = b.build_int_sub(q, one, "").map_err(llvm)?;
            let q = b
                .build_select(fix, q1, q, "")
                .map_err(llvm)?
                .into_int_value();
            b.build_select(ism1, negx, q, "")
                .map_err(llvm)?
                .into_int_value()
        } else {
            let r1 = b.build_int_add(r, d, "").map_err(llvm)?;
            let r = b
                .build_select(fix, r1, r, "")
                .map_err(llvm)?
                .into_int_value();
            b.build_select(ism1, zero, r, "")
                .map_err(llvm)?
                .into_int_value()
        })
    }

    fn fbinary(
        &mut self,
        op: BinaryOp,
        x: FloatValue<'c>,
        y: FloatValue<'c>,
    ) -> R<BasicValueEnum<'c>> {
        let b = &self.b;
        let pred = match op {
            BinaryOp::Lt => Some(FloatPredicate::OLT),
            BinaryOp::Le => Some(FloatPredicate::OLE),
            BinaryOp::Gt => Some(FloatPredicate::OGT),
            BinaryOp::Ge => Some(FloatPredicate::OGE),
            BinaryOp::Eq => Some(FloatPredicate::OEQ),
            BinaryOp::Ne => Some(FloatPredicate::UNE),
            _ => None,
        };
        if let Some(p) = pred {
            return Ok(self.fcmp(p, x, y)?.into());
        }
        let r = match op {
            BinaryOp::Add => b.build_float_add(x, y, "").map_err(llvm)?,
            BinaryOp::Sub => b.build_float_sub(x, y, "").map_err(llvm)?,
            BinaryOp::Mul => b.build_float_mul(x, y, "").map_err(llvm)?,
            BinaryOp::Div => b.build_float_div(x, y, "").map_err(llvm)?,
            BinaryOp::Rem => {
                let q = b.build_float_div(x, y, "").map_err(llvm)?;
                let f = self.call("llvm.floor", &[q])?;
                let b = &self.b;
                let m = b.build_float_mul(y, f, "").map_err(llvm)?;
                b.build_float_sub(x, m, "").map_err(llvm)?
            }
            BinaryOp::Pow => {
                super::math::Math::new(self.ctx, self.module, &self.b, false).pow(x, y)?
            }
            BinaryOp::Max | BinaryOp::Min => {
                let p = if op == BinaryOp::Max {
                    FloatPredicate::OGT
                } else {
                    FloatPredicate::OLT
                };
                let c = self.fcmp(p, x, y)?;
                let m = self.fsel(c, x, y)?;
                let nan = self.fcmp(FloatPredicate::UNO, x, y)?;
                self.fsel(nan, self.fconst(f64::NAN), m)?
            }
            _ => {
                return Err(CodegenError::Unsupported(format!(
                    "`{}` of a float",
                    crate::ir::op::binary_name(op)
                )));
            }
        };
        Ok(r.into())
    }

    fn cast(&mut self, from: Ty, to: Ty, v: BasicValueEnum<'c>) -> R<BasicValueEnum<'c>> {
        let b = &self.b;
        let r: BasicValueEnum = match (from.is_float(), to) {
            (true, Ty::F32 | Ty::F64 | Ty::F16 | Ty::BF16) => v,
            (true, Ty::I32 | Ty::I64) => {
                let (name, it) = if to == Ty::I32 {
                    ("llvm.fptosi.sat", self.ctx.i32_type())
                } else {
                    ("llvm.fptosi.sat", self.i64t)
                };
                let f = Intrinsic::find(name)
                    .and_then(|i| i.get_declaration(self.module, &[it.into(), self.f64t.into()]))
                    .ok_or_else(|| CodegenError::Llvm("no llvm.fptosi.sat".into()))?;
                let c = b.build_call(f, &[v.into()], "").map_err(llvm)?;
                let r = c
                    .try_as_basic_value()
                    .basic()
                    .ok_or_else(|| CodegenError::Llvm("fptosi.sat returned nothing".into()))?
                    .into_int_value();
                b.build_int_s_extend_or_bit_cast(r, self.i64t, "")
                    .map_err(llvm)?
                    .into()
            }
            (true, Ty::Bool) => self
                .fcmp(FloatPredicate::UNE, v.into_float_value(), self.fconst(0.0))?
                .into(),
            (false, Ty::F32 | Ty::F64 | Ty::F16 | Ty::BF16) => {
                let x = v.into_int_value();
                if from == Ty::Bool {
                    b.build_unsigned_int_to_float(x, self.f64t, "")
                        .map_err(llvm)?
                        .into()
                } else {
                    b.build_signed_int_to_float(x, self.f64t, "")
                        .map_err(llvm)?
                        .into()
                }
            }
            (false, Ty::I32 | Ty::I64) if from == Ty::Bool => b
                .build_int_z_extend(v.into_int_value(), self.i64t, "")
                .map_err(llvm)?
                .into(),
            (false, Ty::I32 | Ty::I64) => v,
            (false, Ty::Bool) if from == Ty::Bool => v,
            (false, Ty::Bool) => b
                .build_int_compare(
                    IntPredicate::NE,
                    v.into_int_value(),
                    self.i64t.const_zero(),
                    "",
                )
                .map_err(llvm)?
                .into(),
        };
        self.round(r, to)
    }
}

fn int_predicate(op: BinaryOp, unsigned: bool) -> Option<IntPredicate> {
    Some(match (op, unsigned) {
        (BinaryOp::Lt, false) => IntPredicate::SLT,
        (BinaryOp::Le, false) => IntPredicate::SLE,
        (BinaryOp::Gt, false) => IntPredicate::SGT,
        (BinaryOp::Ge, false) => IntPredicate::SGE,
        (BinaryOp::Lt, true) => IntPredicate::ULT,
        (BinaryOp::Le, true) => IntPredicate::ULE,
        (BinaryOp::Gt, true) => IntPredicate::UGT,
        (BinaryOp::Ge, true) => IntPredicate::UGE,
        (BinaryOp::Eq, _) => IntPredicate::EQ,
        (BinaryOp::Ne, _) => IntPredicate::NE,
        _ => return None,
    })
}

/// The register type of a kernel type.
fn reg_type(ctx: &Context, t: Ty) -> BasicTypeEnum<'_> {
    match t {
        Ty::F32 | Ty::F64 | Ty::F16 | Ty::BF16 => ctx.f64_type().into(),
        Ty::I32 | Ty::I64 => ctx.i64_type().into(),
        Ty::Bool => ctx.bool_type().into(),
    }
}

/// `&base[i]` for elements of type `elem`.
// unsafe: inkwell's `build_gep` is an unsafe fn (see the SAFETY note inside).
#[allow(unsafe_code)]
pub(super) fn gep<'c>(
    b: &Builder<'c>,
    elem: BasicTypeEnum<'c>,
    base: PointerValue<'c>,
    i: IntValue<'c>,
) -> R<PointerValue<'c>> {
    // SAFETY: building a GEP instruction is memory-safe for the compiler itself; inkwell
    // marks it unsafe because the *generated* code may index out of bounds. Lowering only
    // produces in-range indices (data-dependent ones go through `Expr::Checked`).
    unsafe { b.build_gep(elem, base, &[i], "") }.map_err(llvm)
}
