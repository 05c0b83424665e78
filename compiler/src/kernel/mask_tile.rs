//! An attention mask's value over a whole tile as kernel expressions, by interval
//! arithmetic (the kernel-side counterpart of `Mask::classify`): for query indices in
//! [t0, t1] and key indices in [s0, s1], whether the mask is surely true everywhere and
//! whether it is surely false everywhere. Both false means unknown (the caller scans the
//! tile). Sound only: a bound is used only while it fits in i32, the type the mask is
//! evaluated in (`attn::mask_expr_with`); multiplications, divisions, remainders, tables and
//! operand reads are left unknown.

use super::Expr;
use super::access::{add, int, sub};
use super::lower::wbin;
use crate::ir::BinaryOp;
use crate::ir::mask::Mask;

use super::Ty;

/// An integer's bounds (inclusive) and whether they fit in i32; `None` when unknown.
type Bounds = Option<(Expr, Expr, Expr)>;

/// Whether every entry is true, whether every entry is false.
pub(super) struct Truth {
    pub all: Expr,
    pub none: Expr,
}

fn and(a: Expr, b: Expr) -> Expr {
    wbin(BinaryOp::And, Ty::Bool, a, b)
}

fn or(a: Expr, b: Expr) -> Expr {
    wbin(BinaryOp::Or, Ty::Bool, a, b)
}

fn lt(a: Expr, b: Expr) -> Expr {
    wbin(BinaryOp::Lt, Ty::I64, a, b)
}

fn le(a: Expr, b: Expr) -> Expr {
    wbin(BinaryOp::Le, Ty::I64, a, b)
}

fn eq(a: Expr, b: Expr) -> Expr {
    wbin(BinaryOp::Eq, Ty::I64, a, b)
}

fn unknown() -> Truth {
    Truth {
        all: Expr::Bool(false),
        none: Expr::Bool(false),
    }
}

/// `(lo, hi)` with whether both lie in i32.
fn fit(lo: Expr, hi: Expr) -> Bounds {
    let ok = and(
        le(int(i32::MIN as i64), lo.clone()),
        le(hi.clone(), int(i32::MAX as i64)),
    );
    Some((lo, hi, ok))
}

/// The mask's truth over the tile t ∈ [t.0, t.1], s ∈ [s.0, s.1] at batch indices `batch`.
pub(super) fn truth(mask: &Mask, t: &(Expr, Expr), s: &(Expr, Expr), batch: &[Expr]) -> Truth {
    let int_of = |m: &Mask| bounds(m, t, s, batch);
    match mask {
        Mask::Bool(b) => Truth {
            all: Expr::Bool(*b),
            none: Expr::Bool(!*b),
        },
        Mask::Not(x) => {
            let x = truth(x, t, s, batch);
            Truth {
                all: x.none,
                none: x.all,
            }
        }
        Mask::Bin(op @ (BinaryOp::And | BinaryOp::Or), a, b) => {
            let (a, b) = (truth(a, t, s, batch), truth(b, t, s, batch));
            if *op == BinaryOp::And {
                Truth {
                    all: and(a.all, b.all),
                    none: or(a.none, b.none),
                }
            } else {
                Truth {
                    all: or(a.all, b.all),
                    none: and(a.none, b.none),
                }
            }
        }
        Mask::Bin(op, a, b) => {
            let (Some((a0, a1, oa)), Some((b0, b1, ob))) = (int_of(a), int_of(b)) else {
                return unknown();
            };
            let ok = and(oa, ob);
            let (all, none) = match op {
                BinaryOp::Lt => (lt(a1, b0), le(b1, a0)),
                BinaryOp::Le => (le(a1, b0), lt(b1, a0)),
                BinaryOp::Gt => (lt(b1, a0), le(a1, b0)),
                BinaryOp::Ge => (le(b1, a0), lt(a1, b0)),
                BinaryOp::Eq => {
                    let point = and(
                        and(eq(a0.clone(), a1.clone()), eq(b0.clone(), b1.clone())),
                        eq(a0.clone(), b0.clone()),
                    );
                    (point, or(lt(a1, b0), lt(b1, a0)))
                }
                BinaryOp::Ne => {
                    let point = and(
                        and(eq(a0.clone(), a1.clone()), eq(b0.clone(), b1.clone())),
                        eq(a0.clone(), b0.clone()),
                    );
                    (or(lt(a1, b0), lt(b1, a0)), point)
                }
                _ => return unknown(),
            };
            Truth {
                all: and(ok.clone(), all),
                none: and(ok, none),
            }
        }
        _ => unknown(),
    }
}

/// An integer node's bounds over the tile.
fn bounds(mask: &Mask, t: &(Expr, Expr), s: &(Expr, Expr), batch: &[Expr]) -> Bounds {
    match mask {
        Mask::Q => fit(t.0.clone(), t.1.clone()),
        Mask::K => fit(s.0.clone(), s.1.clone()),
        Mask::Batch(j) => {
            let b = batch.get(*j).cloned().unwrap_or(int(0));
            fit(b.clone(), b)
        }
        Mask::Int(c) => fit(int(*c), int(*c)),
        Mask::Bin(op, a, b) => {
            let ((a0, a1, oa), (b0, b1, ob)) = (bounds(a, t, s, batch)?, bounds(b, t, s, batch)?);
            let (lo, hi) = match op {
                BinaryOp::Add => (add(a0, b0), add(a1, b1)),
                BinaryOp::Sub => (sub(a0, b1), sub(a1, b0)),
                BinaryOp::Max | BinaryOp::Min => {
                    (wbin(*op, Ty::I64, a0, b0), wbin(*op, Ty::I64, a1, b1))
                }
                _ => return None,
            };
            let (_, _, ok) = fit(lo.clone(), hi.clone())?;
            Some((lo, hi, and(and(oa, ob), ok)))
        }
        _ => None,
    }
}
