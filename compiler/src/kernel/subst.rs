//! Replacing a loop variable by an expression everywhere in a statement: its loads, stores,
//! extents, conditions and the views of its block products, recurrences and attention tiles. Used when loops
//! are merged into one (`Lowerer::nest`), the old variables then read back from the new one.

use super::{Expr, Stmt, Var};

/// Every `Var(v)` in `s` replaced by `by`.
pub(super) fn in_stmt(s: &mut Stmt, v: Var, by: &Expr) {
    for e in s.exprs_mut() {
        in_expr(e, v, by);
    }
    for s in s.body_mut().into_iter().flatten() {
        in_stmt(s, v, by);
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
