//! The kernel IR's text form (`seqc dump --stage kernels`): buffers with their sizes and live
//! ranges, then every kernel's loop nest with its schedule tags.

use super::plan::live_ranges;
use super::{BufKind, Expr, Kernel, Loop, Program, Sched, Stmt, Strided, Ty};
use crate::ir::BinaryOp;
use crate::ir::op::{binary_name, unary_name};
use std::fmt::Write;

/// Prints a program.
pub fn print_program(p: &Program) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "dims [{}]", p.dims.join(", "));
    let lives = live_ranges(p);
    for (i, b) in p.buffers.iter().enumerate() {
        let shape: Vec<String> = b.shape.iter().map(|d| d.to_string()).collect();
        let kind = match &b.kind {
            BufKind::Input(n) => format!("input `{n}`"),
            BufKind::Param(n) => format!("param `{n}`"),
            BufKind::Random {
                seed,
                normal,
                torch,
            } => {
                let dist = match (*torch, *normal) {
                    (true, _) => "torch_normal",
                    (false, true) => "normal",
                    (false, false) => "uniform",
                };
                format!("random {dist} seed {seed}")
            }
            BufKind::Temp => {
                let l = lives.iter().find(|l| l.buf.0 as usize == i).expect("temp");
                format!("arena live k{}..k{}", l.first, l.last)
            }
        };
        let _ = writeln!(
            s,
            "b{i}: {}[{}] {kind} (node {})",
            b.dtype,
            shape.join(", "),
            b.node
        );
    }
    for k in &p.kernels {
        print_kernel(&mut s, p, k);
    }
    for (name, b) in &p.outputs {
        let _ = writeln!(s, "output `{name}` = b{}", b.0);
    }
    s
}

fn print_kernel(s: &mut String, p: &Program, k: &Kernel) {
    let accs: Vec<String> = k
        .accs
        .iter()
        .enumerate()
        .map(|(i, t)| format!("a{i}: {}", t.name()))
        .collect();
    let _ = writeln!(
        s,
        "kernel {} (node {} `{}`) accs [{}] {{",
        k.name,
        k.node,
        k.op,
        accs.join(", ")
    );
    print_loop(s, p, &k.root, 1);
    s.push_str("}\n");
}

fn print_loop(s: &mut String, p: &Program, l: &Loop, depth: usize) {
    let pad = "  ".repeat(depth);
    let tag = match l.sched {
        Sched::Serial => String::new(),
        Sched::Parallel => "parallel ".into(),
        Sched::Vector => "vector ".into(),
        Sched::Unroll(n) => format!("unroll({n}) "),
    };
    let _ = writeln!(
        s,
        "{pad}{tag}for i{} in 0..{} {{",
        l.var.0,
        expr(p, &l.extent)
    );
    print_body(s, p, &l.body, depth + 1);
    let _ = writeln!(s, "{pad}}}");
}

fn print_body(s: &mut String, p: &Program, body: &[Stmt], depth: usize) {
    let pad = "  ".repeat(depth);
    for st in body {
        match st {
            Stmt::Loop(inner) => print_loop(s, p, inner, depth),
            Stmt::If { cond, body } => {
                let _ = writeln!(s, "{pad}if {} {{", expr(p, cond));
                print_body(s, p, body, depth + 1);
                let _ = writeln!(s, "{pad}}}");
            }
            Stmt::Store { buf, index, value } => {
                let _ = writeln!(
                    s,
                    "{pad}b{}[{}] = {}",
                    buf.0,
                    expr(p, index),
                    expr(p, value)
                );
            }
            Stmt::Assign { acc, value } => {
                let _ = writeln!(s, "{pad}a{} = {}", acc.0, expr(p, value));
            }
            Stmt::Gemm(g) => {
                let m = |x: &Strided| strided(p, x);
                let _ = writeln!(
                    s,
                    "{pad}gemm {} {} {} · {} (m {}, n {}, k {})",
                    m(&g.c),
                    if g.accumulate { "+=" } else { "=" },
                    m(&g.a),
                    m(&g.b),
                    expr(p, &g.m),
                    expr(p, &g.n),
                    expr(p, &g.k)
                );
            }
            Stmt::Recur(r) => {
                let m = |x: &Strided| strided(p, x);
                let d = r.decay.as_ref().map_or("1".to_string(), m);
                let norm = r
                    .norm
                    .as_ref()
                    .map_or(String::new(), |n| format!(" / norm {}", m(n)));
                let _ = writeln!(
                    s,
                    "{pad}recur{} {}{norm} state {} q {} k {} v {} decay {} (steps {}, rows {}, width {})",
                    if r.strict { " strict" } else { "" },
                    m(&r.out),
                    m(&r.state),
                    m(&r.q),
                    m(&r.k),
                    m(&r.v),
                    d,
                    expr(p, &r.steps),
                    expr(p, &r.rows),
                    expr(p, &r.width)
                );
            }
            Stmt::AttnTile(t) => {
                let m = |x: &Strided| strided(p, x);
                let _ = writeln!(
                    s,
                    "{pad}attn_tile {} max {} sum {} q {} k {} v {} scale {} mask {} if {} (rows {}, cols {}, depth {}, width {})",
                    m(&t.out),
                    m(&t.max),
                    m(&t.sum),
                    m(&t.q),
                    m(&t.k),
                    m(&t.v),
                    t.scale,
                    m(&t.mask),
                    expr(p, &t.masked),
                    expr(p, &t.rows),
                    expr(p, &t.cols),
                    expr(p, &t.depth),
                    expr(p, &t.width)
                );
            }
        }
    }
}

fn infix(op: BinaryOp) -> Option<&'static str> {
    Some(match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Rem => "%",
        BinaryOp::Lt => "<",
        BinaryOp::Ge => ">=",
        _ => return None,
    })
}

/// One expression; i64 index arithmetic is infix, everything else `op.type(args)`.
pub fn expr(p: &Program, e: &Expr) -> String {
    match e {
        Expr::Var(v) => format!("i{}", v.0),
        Expr::Dim(n) => p.dims.get(*n).cloned().unwrap_or_else(|| format!("dim{n}")),
        Expr::Int(v, Ty::I64) => v.to_string(),
        Expr::Int(v, t) => format!("{v}:{}", t.name()),
        Expr::Float(v, t) => format!("{v:?}:{}", t.name()),
        Expr::Bool(b) => b.to_string(),
        Expr::Load { buf, index } => format!("b{}[{}]", buf.0, expr(p, index)),
        Expr::Acc(a) => format!("a{}", a.0),
        Expr::Unary { op, ty, x } => format!("{}.{}({})", unary_name(*op), ty.name(), expr(p, x)),
        Expr::Binary { op, ty, a, b } => match (ty, infix(*op)) {
            (Ty::I64, Some(sym)) => format!("({} {sym} {})", expr(p, a), expr(p, b)),
            _ => format!(
                "{}.{}({}, {})",
                binary_name(*op),
                ty.name(),
                expr(p, a),
                expr(p, b)
            ),
        },
        Expr::Select { cond, a, b } => {
            format!("select({}, {}, {})", expr(p, cond), expr(p, a), expr(p, b))
        }
        Expr::Cast { from, to, x } => {
            format!("cast.{}.{}({})", from.name(), to.name(), expr(p, x))
        }
        Expr::Checked { index, len } => {
            format!("checked({}, {})", expr(p, index), expr(p, len))
        }
    }
}

/// A strided view as `b<buf>[offset + i·rows + j·cols]`.
fn strided(p: &Program, x: &Strided) -> String {
    format!(
        "b{}[{} + i·{} + j·{}]",
        x.buf.0,
        expr(p, &x.offset),
        expr(p, &x.rows),
        expr(p, &x.cols)
    )
}
