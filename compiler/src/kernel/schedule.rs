//! The schedule pass: after lowering, tags each kernel's inner loops with how a backend runs
//! them (Halide's for-types), leaving what they compute unchanged. The root loop keeps its
//! tag (`Parallel` where lowering made its iterations independent). An innermost loop:
//!
//! - of a constant extent from 2 up to [`MAX_UNROLL`] is `Unroll` (its body repeated, no
//!   loop); of extent 0 or 1, `Serial`;
//! - else, when its body only stores, every store moves by one element per iteration and
//!   every load by one element or not at all, and it holds nothing that branches (no
//!   `select`, no index checked against data, no integer division by a run-time value), is
//!   `Vector`: its iterations run as SIMD lanes.
//!
//! Loops holding an accumulator update (reductions) stay `Serial`: their floating-point
//! order is the interpreter's, and reassociating it for lanes would change the result.
//! Block products, attention tiles and recurrences have schedules of their own (`gemm.rs`,
//! `flash.rs`, `recur.rs`) and are not looked into: a loop holding one is not innermost.

use super::{Expr, Loop, Program, Sched, Stmt, Var};
use crate::ir::{BinaryOp, UnaryOp};

/// The largest constant extent an innermost loop is fully unrolled at.
pub const MAX_UNROLL: i64 = 8;

/// Tags the inner loops of every kernel of `p`.
pub fn schedule(p: &mut Program) {
    for k in &mut p.kernels {
        for s in &mut k.root.body {
            visit(s);
        }
    }
}

fn visit(s: &mut Stmt) {
    match s {
        Stmt::Loop(l) => {
            if innermost(&l.body) {
                l.sched = tag(l);
            } else {
                for s in &mut l.body {
                    visit(s);
                }
            }
        }
        Stmt::If { body, .. } => {
            for s in body {
                visit(s);
            }
        }
        Stmt::Store { .. }
        | Stmt::Assign { .. }
        | Stmt::Gemm(_)
        | Stmt::Recur(_)
        | Stmt::AttnTile(_) => {}
    }
}

/// Whether `body` holds no loop and no scheduled block (a block product or recurrence).
fn innermost(body: &[Stmt]) -> bool {
    body.iter().all(|s| match s {
        Stmt::Store { .. } | Stmt::Assign { .. } => true,
        Stmt::If { body, .. } => innermost(body),
        Stmt::Loop(_) | Stmt::Gemm(_) | Stmt::Recur(_) | Stmt::AttnTile(_) => false,
    })
}

fn tag(l: &Loop) -> Sched {
    if l.sched != Sched::Serial {
        return l.sched;
    }
    match l.extent {
        Expr::Int(n, _) if n < 2 => return Sched::Serial,
        Expr::Int(n, _) if n <= MAX_UNROLL => return Sched::Unroll(n as u32),
        _ => {}
    }
    let lanes = !l.body.is_empty()
        && l.body.iter().all(|s| match s {
            Stmt::Store { index, value, .. } => {
                stride(index, l.var) == Some(1) && plain(value, l.var) && plain(index, l.var)
            }
            _ => false,
        });
    if lanes { Sched::Vector } else { Sched::Serial }
}

/// Whether `e` has no branch, and every load in it moves by 0 or 1 element per step of `v`.
fn plain(e: &Expr, v: Var) -> bool {
    match e {
        Expr::Var(_)
        | Expr::Dim(_)
        | Expr::Int(..)
        | Expr::Float(..)
        | Expr::Bool(_)
        | Expr::Acc(_) => true,
        Expr::Load { index, .. } => matches!(stride(index, v), Some(0 | 1)) && plain(index, v),
        // sin and cos are libm calls (no vector form without a vector math library).
        Expr::Unary { op, x, .. } => !matches!(op, UnaryOp::Sin | UnaryOp::Cos) && plain(x, v),
        Expr::Cast { x, .. } => plain(x, v),
        Expr::Binary { op, a, b, .. } => {
            let divides = matches!(op, BinaryOp::Div | BinaryOp::Rem)
                && !matches!(**b, Expr::Int(d, _) if d != 0);
            // `pow` is a libm call (it may set errno): no lanes.
            !divides && *op != BinaryOp::Pow && plain(a, v) && plain(b, v)
        }
        Expr::Select { .. } | Expr::Checked { .. } => false,
    }
}

/// How far the i64 index `e` moves per step of `v`, when that is a known constant.
fn stride(e: &Expr, v: Var) -> Option<i64> {
    match e {
        Expr::Var(x) => Some(i64::from(*x == v)),
        Expr::Dim(_) | Expr::Int(..) | Expr::Float(..) | Expr::Bool(_) | Expr::Acc(_) => Some(0),
        Expr::Binary { op, a, b, .. } => {
            let (sa, sb) = (stride(a, v)?, stride(b, v)?);
            match op {
                BinaryOp::Add => sa.checked_add(sb),
                BinaryOp::Sub => sa.checked_sub(sb),
                BinaryOp::Mul => match (&**a, &**b) {
                    _ if sa == 0 && sb == 0 => Some(0),
                    (_, Expr::Int(c, _)) if sb == 0 => sa.checked_mul(*c),
                    (Expr::Int(c, _), _) if sa == 0 => sb.checked_mul(*c),
                    _ => None,
                },
                _ if sa == 0 && sb == 0 => Some(0),
                _ => None,
            }
        }
        Expr::Cast { x, .. } => stride(x, v),
        Expr::Load { index, .. } => (stride(index, v)? == 0).then_some(0),
        Expr::Unary { x, .. } => (stride(x, v)? == 0).then_some(0),
        Expr::Select { cond, a, b } => {
            (stride(cond, v)? == 0 && stride(a, v)? == 0 && stride(b, v)? == 0).then_some(0)
        }
        Expr::Checked { index, len } => {
            (stride(index, v)? == 0 && stride(len, v)? == 0).then_some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{BufId, Ty};

    fn var(n: u32) -> Expr {
        Expr::Var(Var(n))
    }
    fn bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary {
            op,
            ty: Ty::I64,
            a: Box::new(a),
            b: Box::new(b),
        }
    }
    fn int(v: i64) -> Expr {
        Expr::Int(v, Ty::I64)
    }

    #[test]
    fn strides_of_index_expressions() {
        let v = Var(1);
        // (i0 * 32 + i1) moves by 1 in i1, by 32 in i0.
        let e = bin(BinaryOp::Add, bin(BinaryOp::Mul, var(0), int(32)), var(1));
        assert_eq!(stride(&e, v), Some(1));
        assert_eq!(stride(&e, Var(0)), Some(32));
        // i1 * T: a stride known only at run time.
        assert_eq!(stride(&bin(BinaryOp::Mul, var(1), Expr::Dim(0)), v), None);
        // i1 / 2 and i1 % 3 are not affine; i0 / 2 does not move with i1.
        assert_eq!(stride(&bin(BinaryOp::Div, var(1), int(2)), v), None);
        assert_eq!(stride(&bin(BinaryOp::Rem, var(1), int(3)), v), None);
        assert_eq!(stride(&bin(BinaryOp::Div, var(0), int(2)), v), Some(0));
        // 2 * i1 - i1 = i1; a gather b[i1] as an index moves unpredictably.
        let twice = bin(BinaryOp::Mul, int(2), var(1));
        assert_eq!(stride(&bin(BinaryOp::Sub, twice, var(1)), v), Some(1));
        let gather = Expr::Load {
            buf: BufId(0),
            index: Box::new(var(1)),
        };
        assert_eq!(stride(&gather, v), None);
    }

    fn store(index: Expr, value: Expr) -> Stmt {
        Stmt::Store {
            buf: BufId(1),
            index,
            value,
        }
    }

    fn scheduled(extent: Expr, body: Vec<Stmt>) -> Sched {
        let mut s = Stmt::Loop(Loop {
            var: Var(1),
            extent,
            sched: Sched::Serial,
            body,
        });
        visit(&mut s);
        match s {
            Stmt::Loop(l) => l.sched,
            _ => unreachable!("a loop stays a loop"),
        }
    }

    #[test]
    fn tags_follow_the_accesses() {
        let load = |index: Expr| Expr::Load {
            buf: BufId(0),
            index: Box::new(index),
        };
        let row = bin(
            BinaryOp::Add,
            bin(BinaryOp::Mul, var(0), Expr::Dim(0)),
            var(1),
        );
        let t = Expr::Dim(0);
        // y[i0·T + i1] = x[i0·T + i1] + x[i0]: unit-stride and invariant loads.
        let ok = store(
            row.clone(),
            bin(BinaryOp::Add, load(row.clone()), load(var(0))),
        );
        assert_eq!(scheduled(t.clone(), vec![ok.clone()]), Sched::Vector);
        // A constant extent ≤ 8 is unrolled, a longer one vectorised.
        assert_eq!(scheduled(int(4), vec![ok.clone()]), Sched::Unroll(4));
        assert_eq!(scheduled(int(9), vec![ok.clone()]), Sched::Vector);
        assert_eq!(scheduled(int(1), vec![ok]), Sched::Serial);
        // A gather, a strided store, a select and an accumulator update stay serial.
        let gather = store(row.clone(), load(load(var(1))));
        assert_eq!(scheduled(t.clone(), vec![gather]), Sched::Serial);
        let strided = store(bin(BinaryOp::Mul, var(1), int(2)), int(0));
        assert_eq!(scheduled(t.clone(), vec![strided]), Sched::Serial);
        let select = store(
            row.clone(),
            Expr::Select {
                cond: Box::new(Expr::Bool(true)),
                a: Box::new(load(row.clone())),
                b: Box::new(int(0)),
            },
        );
        assert_eq!(scheduled(t.clone(), vec![select]), Sched::Serial);
        let acc = Stmt::Assign {
            acc: crate::kernel::Acc(0),
            value: load(row),
        };
        assert_eq!(scheduled(t, vec![acc]), Sched::Serial);
    }
}
