//! The AST's canonical text form (`seqc dump --stage ast`): the program re-printed with one
//! item per line, normalised spacing, every binary sub-expression parenthesised, comments
//! dropped. It parses back to the same AST (modulo spans).

use super::ast::*;
use std::fmt::Write;

pub fn print_program(p: &Program) -> String {
    let mut out = String::new();
    for it in &p.items {
        item(&mut out, it, 0);
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push_str("    ");
    }
}

fn item(out: &mut String, it: &Item, ind: usize) {
    indent(out, ind);
    match &it.kind {
        ItemKind::Dim(names) => {
            let n: Vec<&str> = names.iter().map(|i| i.name.as_str()).collect();
            let _ = writeln!(out, "dim {};", n.join(", "));
        }
        ItemKind::Const(n, e) => {
            let _ = writeln!(out, "const {} = {};", n.name, expr(e));
        }
        ItemKind::Param(n, t) => {
            let _ = writeln!(out, "param {}: {};", n.name, ty(t));
        }
        ItemKind::Input(n, t) => {
            let _ = writeln!(out, "input {}: {};", n.name, ty(t));
        }
        ItemKind::Output(n, t, e) => match t {
            Some(t) => {
                let _ = writeln!(out, "output {}: {} = {};", n.name, ty(t), expr(e));
            }
            None => {
                let _ = writeln!(out, "output {} = {};", n.name, expr(e));
            }
        },
        ItemKind::Let(pat, e) => {
            let _ = writeln!(out, "let {} = {};", pattern(pat), expr(e));
        }
        ItemKind::Fn(f) => {
            let ps: Vec<String> = f
                .params
                .iter()
                .map(|p| match &p.default {
                    Some(d) => format!("{} = {}", p.name.name, expr(d)),
                    None => p.name.name.clone(),
                })
                .collect();
            let _ = write!(out, "fn {}({}) ", f.name.name, ps.join(", "));
            block(out, &f.body, ind);
            out.push('\n');
        }
    }
}

fn block(out: &mut String, b: &Block, ind: usize) {
    out.push_str("{\n");
    for s in &b.stmts {
        item(out, s, ind + 1);
    }
    indent(out, ind + 1);
    out.push_str(&expr_ind(&b.result, ind + 1));
    out.push('\n');
    indent(out, ind);
    out.push('}');
}

fn pattern(p: &LetPat) -> String {
    match p {
        LetPat::Name(n) => n.name.clone(),
        LetPat::Tuple(ns) => {
            let v: Vec<&str> = ns.iter().map(|n| n.name.as_str()).collect();
            format!("({})", v.join(", "))
        }
    }
}

fn ty(t: &TypeExpr) -> String {
    let d: Vec<String> = t.dims.iter().map(expr).collect();
    format!("{}[{}]", t.dtype.name, d.join(", "))
}

fn expr(e: &Expr) -> String {
    expr_ind(e, 0)
}

fn float(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn sub(e: &Expr, ind: usize) -> String {
    match e.kind {
        ExprKind::Binary(..) | ExprKind::Unary(..) => format!("({})", expr_ind(e, ind)),
        ExprKind::Int(v) if v < 0 => format!("({v})"),
        ExprKind::Float(v) if v < 0.0 => format!("({})", float(v)),
        _ => expr_ind(e, ind),
    }
}

fn expr_ind(e: &Expr, ind: usize) -> String {
    match &e.kind {
        ExprKind::Int(v) => v.to_string(),
        ExprKind::Float(v) => float(*v),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => quote(s),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Unary(op, x) => {
            let o = match op {
                UnOp::Neg => "-",
                UnOp::Not => "!",
            };
            format!("{o}{}", sub(x, ind))
        }
        ExprKind::Binary(op, a, b) => {
            format!("{} {} {}", sub(a, ind), op.symbol(), sub(b, ind))
        }
        ExprKind::Call { callee, args, at } => {
            let a: Vec<String> = args
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{} = {}", n.name, expr_ind(&a.value, ind)),
                    None => expr_ind(&a.value, ind),
                })
                .collect();
            let mut s = format!("{}({})", callee.name, a.join(", "));
            if let Some(p) = at {
                s.push_str(" at ");
                s.push_str(&sub(p, ind));
            }
            s
        }
        ExprKind::List(xs) => {
            let v: Vec<String> = xs.iter().map(|x| expr_ind(x, ind)).collect();
            format!("[{}]", v.join(", "))
        }
        ExprKind::Tuple(xs) => {
            let v: Vec<String> = xs.iter().map(|x| expr_ind(x, ind)).collect();
            if v.len() == 1 {
                format!("({},)", v[0])
            } else {
                format!("({})", v.join(", "))
            }
        }
        ExprKind::If {
            cond,
            then,
            otherwise,
        } => {
            let mut s = format!("if {} ", expr_ind(cond, ind));
            block(&mut s, then, ind);
            s.push_str(" else ");
            block(&mut s, otherwise, ind);
            s
        }
        ExprKind::Repeat {
            var,
            start,
            end,
            acc,
            init,
            body,
        } => {
            let mut s = format!(
                "repeat {} in {}..{} with {} = {} ",
                var.name,
                sub(start, ind),
                sub(end, ind),
                acc.name,
                expr_ind(init, ind)
            );
            block(&mut s, body, ind);
            s
        }
    }
}
