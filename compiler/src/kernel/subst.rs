//! Replacing a loop variable by an expression everywhere in a statement: its loads, stores,
//! extents, conditions and the views of its block products, recurrences and attention tiles. Used when loops
//! are merged into one (`Lowerer::nest`), the old variables then read back from the new one.

use super::{Expr, Stmt, Strided, Var};

/// Every `Var(v)` in `s` replaced by `by`.
pub(super) fn in_stmt(s: &mut Stmt, v: Var, by: &Expr) {
    match s {
        Stmt::Loop(l) => {
            in_expr(&mut l.extent, v, by);
            for s in &mut l.body {
                in_stmt(s, v, by);
            }
        }
        Stmt::Store { index, value, .. } => {
            in_expr(index, v, by);
            in_expr(value, v, by);
        }
        Stmt::Assign { value, .. } => in_expr(value, v, by),
        Stmt::If { cond, body } => {
            in_expr(cond, v, by);
            for s in body {
                in_stmt(s, v, by);
            }
        }
        Stmt::Gemm(g) => {
            for e in [&mut g.m, &mut g.n, &mut g.k] {
                in_expr(e, v, by);
            }
            for s in [&mut g.a, &mut g.b, &mut g.c] {
                in_view(s, v, by);
            }
        }
        Stmt::Recur(r) => {
            for e in [&mut r.steps, &mut r.rows, &mut r.width] {
                in_expr(e, v, by);
            }
            for s in [&mut r.q, &mut r.k, &mut r.v, &mut r.out, &mut r.state] {
                in_view(s, v, by);
            }
            for d in r.decay.iter_mut().chain(r.norm.iter_mut()) {
                in_view(d, v, by);
            }
        }
        Stmt::AttnTile(t) => {
            for e in [
                &mut t.rows,
                &mut t.cols,
                &mut t.depth,
                &mut t.width,
                &mut t.masked,
            ] {
                in_expr(e, v, by);
            }
            for s in [
                &mut t.q,
                &mut t.k,
                &mut t.v,
                &mut t.out,
                &mut t.max,
                &mut t.sum,
                &mut t.mask,
            ] {
                in_view(s, v, by);
            }
        }
    }
}

fn in_view(s: &mut Strided, v: Var, by: &Expr) {
    for e in [&mut s.offset, &mut s.rows, &mut s.cols] {
        in_expr(e, v, by);
    }
}

/// Every `Var(v)` in `e` replaced by `by`.
pub(super) fn in_expr(e: &mut Expr, v: Var, by: &Expr) {
    match e {
        Expr::Var(w) if *w == v => *e = by.clone(),
        Expr::Var(_)
        | Expr::Dim(_)
        | Expr::Int(..)
        | Expr::Float(..)
        | Expr::Bool(_)
        | Expr::Acc(_) => {}
        Expr::Load { index, .. } => in_expr(index, v, by),
        Expr::Unary { x, .. } | Expr::Cast { x, .. } => in_expr(x, v, by),
        Expr::Binary { a, b, .. } => {
            in_expr(a, v, by);
            in_expr(b, v, by);
        }
        Expr::Select { cond, a, b } => {
            in_expr(cond, v, by);
            in_expr(a, v, by);
            in_expr(b, v, by);
        }
        Expr::Checked { index, len } => {
            in_expr(index, v, by);
            in_expr(len, v, by);
        }
    }
}
