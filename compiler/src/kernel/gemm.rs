//! Contractions as blocked matrix products: an f32 `einsum` of two operands with one summed
//! letter, whose operands are buffers read through affine index maps, becomes a kernel whose
//! parallel loop runs over output blocks of `BLOCK_M × BLOCK_N` (and the batch letters), each
//! block one [`Stmt::Gemm`] that the backend computes with its register-blocked micro-kernel.
//! Every other einsum keeps the scalar loop nest of `lower.rs`.

use super::access::{add, div, int, min, mul, sub, unflatten};
use super::lower::Lowerer;
use super::{BufId, Expr, Gemm, Loop, Sched, Stmt, Strided, Ty, Var};
use crate::ir::{BinaryOp, NodeId};

/// Rows of C per block: a multiple of every micro-kernel's row count (4, 6, 8, 12, 16).
/// With `BLOCK_N`, sized so that each block repacks its panels of a and b rarely (measured:
/// 96 × 256 gave 0.74× numpy at n = 4096, 192 × 512 0.76–0.78×; docs/performance.md).
pub const BLOCK_M: i64 = 192;
/// Columns of C per block: a multiple of every micro-kernel's column count (16 … 64).
pub const BLOCK_N: i64 = 512;

/// The coefficient of `v` in `e` when `e` is affine in the loop variables `vars` (sums and
/// products with loop-invariant factors); `None` when it is not affine.
pub(super) fn coeff(e: &Expr, v: Var, vars: &[Var]) -> Option<Expr> {
    match e {
        Expr::Var(w) if *w == v => Some(int(1)),
        Expr::Var(w) if vars.contains(w) => Some(int(0)),
        _ if invariant(e, vars) => Some(int(0)),
        Expr::Binary {
            op,
            ty: Ty::I64,
            a,
            b,
            ..
        } => match op {
            BinaryOp::Add => Some(add(coeff(a, v, vars)?, coeff(b, v, vars)?)),
            BinaryOp::Sub => Some(sub(coeff(a, v, vars)?, coeff(b, v, vars)?)),
            BinaryOp::Mul if invariant(a, vars) => Some(mul((**a).clone(), coeff(b, v, vars)?)),
            BinaryOp::Mul if invariant(b, vars) => Some(mul(coeff(a, v, vars)?, (**b).clone())),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `e` uses none of `vars` and reads no buffer (so it can be evaluated anywhere).
fn invariant(e: &Expr, vars: &[Var]) -> bool {
    match e {
        Expr::Var(w) => !vars.contains(w),
        Expr::Dim(_) | Expr::Int(..) => true,
        Expr::Binary {
            ty: Ty::I64, a, b, ..
        } => invariant(a, vars) && invariant(b, vars),
        _ => false,
    }
}

/// `e` with every variable of `vars` replaced by `with`'s expression for it.
pub(super) fn subst(e: &Expr, with: &[(Var, Expr)]) -> Expr {
    match e {
        Expr::Var(w) => with
            .iter()
            .find(|(v, _)| v == w)
            .map(|(_, x)| x.clone())
            .unwrap_or_else(|| e.clone()),
        Expr::Binary { op, ty, a, b } => {
            let (a, b) = (subst(a, with), subst(b, with));
            match op {
                BinaryOp::Add => add(a, b),
                BinaryOp::Sub => sub(a, b),
                BinaryOp::Mul => mul(a, b),
                _ => Expr::Binary {
                    op: *op,
                    ty: *ty,
                    a: Box::new(a),
                    b: Box::new(b),
                },
            }
        }
        _ => e.clone(),
    }
}

/// An operand read as `buf[base + Σ coef(v)·v]`.
struct Affine {
    buf: BufId,
    /// The index with every variable at 0.
    index: Expr,
}

impl Affine {
    fn stride(&self, v: Var, vars: &[Var]) -> Option<Expr> {
        coeff(&self.index, v, vars)
    }
}

impl Lowerer<'_> {
    /// The blocked-product kernel for `einsum(spec)` of node `id`, or `None` when the einsum
    /// is not of that form (then the scalar loop nest is used).
    pub(super) fn gemm(
        &mut self,
        id: NodeId,
        out: BufId,
        terms: &[Vec<char>],
        rhs: &[char],
        letters: &[(char, Expr, Var)],
    ) -> Result<Option<Loop>, super::KernelError> {
        // Inside a `scan_fn` body, state buffers are remapped load by load and store by store
        // (`scan_fn.rs`), which a strided block does not allow: the scalar nest is used.
        if self.scope.is_some() {
            return Ok(None);
        }
        let ins = self.g.node(id).inputs.clone();
        if ins.len() != 2 || self.ty(id) != Ty::F32 || ins.iter().any(|x| self.ty(*x) != Ty::F32) {
            return Ok(None);
        }
        let in_term = |t: usize, c: char| terms[t].contains(&c);
        let summed: Vec<char> = letters
            .iter()
            .map(|l| l.0)
            .filter(|c| !rhs.contains(c))
            .collect();
        // One summed letter, in both operands; no letter summed within one operand; no
        // letter repeated within a term (a diagonal).
        if summed.len() != 1 || !(in_term(0, summed[0]) && in_term(1, summed[0])) {
            return Ok(None);
        }
        if terms
            .iter()
            .any(|t| (1..t.len()).any(|i| t[..i].contains(&t[i])))
            || rhs.iter().enumerate().any(|(i, c)| rhs[..i].contains(c))
        {
            return Ok(None);
        }
        // n: the output's last letter, from one operand only (that operand becomes B);
        // m: the last output letter that only the other operand has.
        let Some(&n) = rhs.last() else {
            return Ok(None);
        };
        let b_side = match (in_term(0, n), in_term(1, n)) {
            (true, false) => 0,
            (false, true) => 1,
            _ => return Ok(None),
        };
        let a_side = 1 - b_side;
        let Some(&m) = rhs
            .iter()
            .rev()
            .find(|c| in_term(a_side, **c) && !in_term(b_side, **c))
        else {
            return Ok(None);
        };
        let find = |c: char| letters.iter().find(|l| l.0 == c).expect("collected");
        let vars: Vec<Var> = letters.iter().map(|l| l.2).collect();
        let operand = |l: &mut Self, side: usize| -> Result<Option<Affine>, _> {
            let idx: Vec<Expr> = terms[side].iter().map(|c| Expr::Var(find(*c).2)).collect();
            Ok(match l.access(ins[side], &idx)? {
                Expr::Load { buf, index } if coeff_all(&index, &vars) => {
                    Some(Affine { buf, index: *index })
                }
                _ => None,
            })
        };
        let (Some(a), Some(b)) = (operand(self, a_side)?, operand(self, b_side)?) else {
            return Ok(None);
        };
        let k = summed[0];
        let (vm, vn, vk) = (find(m).2, find(n).2, find(k).2);
        let st = |x: &Affine, v: Var| x.stride(v, &vars).expect("checked affine");
        // C's strides: row-major over the output letters.
        let ext: Vec<Expr> = rhs.iter().map(|c| find(*c).1.clone()).collect();
        let cstride = |c: char| {
            let i = rhs.iter().position(|x| *x == c).expect("output letter");
            ext[i + 1..].iter().fold(int(1), |s, d| mul(s, d.clone()))
        };
        // The parallel loop: batch letters (the other output letters), then the blocks.
        let batch: Vec<char> = rhs.iter().copied().filter(|c| *c != m && *c != n).collect();
        let (em, en) = (find(m).1.clone(), find(n).1.clone());
        let blocks = |e: &Expr, blk: i64| div(add(e.clone(), int(blk - 1)), int(blk));
        let mut shape: Vec<Expr> = batch.iter().map(|c| find(*c).1.clone()).collect();
        shape.push(blocks(&em, BLOCK_M));
        shape.push(blocks(&en, BLOCK_N));
        let tile = self.var();
        let idx = unflatten(Expr::Var(tile), &shape);
        let (i0, j0) = (
            mul(idx[batch.len()].clone(), int(BLOCK_M)),
            mul(idx[batch.len() + 1].clone(), int(BLOCK_N)),
        );
        // Each variable's value at this block's origin.
        let mut at: Vec<(Var, Expr)> = batch
            .iter()
            .zip(&idx)
            .map(|(c, i)| (find(*c).2, i.clone()))
            .collect();
        at.push((vm, i0.clone()));
        at.push((vn, j0.clone()));
        at.push((vk, int(0)));
        let c_off = at
            .iter()
            .filter(|(v, _)| *v != vk)
            .map(|(v, x)| {
                let c = letters.iter().find(|l| l.2 == *v).expect("letter").0;
                mul(x.clone(), cstride(c))
            })
            .fold(int(0), add);
        let strided = |x: &Affine, r: Var, c: Var| Strided {
            buf: x.buf,
            offset: subst(&x.index, &at),
            rows: st(x, r),
            cols: st(x, c),
        };
        let g = Gemm {
            m: min(int(BLOCK_M), sub(em, i0)),
            n: min(int(BLOCK_N), sub(en, j0)),
            k: find(k).1.clone(),
            a: strided(&a, vm, vk),
            b: strided(&b, vk, vn),
            c: Strided {
                buf: out,
                offset: c_off,
                rows: cstride(m),
                cols: cstride(n),
            },
            accumulate: false,
        };
        let extent = shape.into_iter().fold(int(1), mul);
        Ok(Some(Loop {
            var: tile,
            extent,
            sched: Sched::Parallel,
            body: vec![Stmt::Gemm(Box::new(g))],
        }))
    }
}

/// Whether `e` is affine in every variable of `vars`.
fn coeff_all(e: &Expr, vars: &[Var]) -> bool {
    vars.iter().all(|v| coeff(e, *v, vars).is_some())
}
