//! Lowering of expressions: names, literals, operators (folded when compile-time), `@`,
//! calls of user functions (inlined, with `at` param prefixes) and `repeat`.

use super::{Lowerer, MAX_INLINE_DEPTH, MAX_REPEAT, Value};
use crate::ir::{BinaryOp, Literal, NodeId, Op, UnaryOp};
use crate::syntax::Span;
use crate::syntax::ast::*;
use seqc_runtime::DType;

/// The largest magnitude a compile-time integer may reach.
const MAX_CONST: i64 = 1 << 53;

impl<'a> Lowerer<'a> {
    pub(crate) fn expr(&mut self, e: &Expr) -> Value {
        match &e.kind {
            ExprKind::Int(v) => Value::int(*v),
            ExprKind::Float(v) => Value::Float(*v),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Name(n) => match self.lookup(n) {
                Some(v) => v,
                None => {
                    let near = suggest(n, &self.visible_names());
                    match near {
                        Some(s) => self.error_help(
                            e.span,
                            format!("unknown name `{n}`"),
                            "not defined",
                            format!("did you mean `{s}`?"),
                        ),
                        None => self.error(e.span, format!("unknown name `{n}`"), "not defined"),
                    }
                    Value::Poison
                }
            },
            ExprKind::Unary(op, x) => {
                let v = self.expr(x);
                self.unary(*op, v, e.span)
            }
            ExprKind::Binary(op, a, b) => {
                let va = self.expr(a);
                let vb = self.expr(b);
                self.binary(*op, va, vb, e.span, a.span, b.span)
            }
            ExprKind::Call { callee, args, at } => self.call(callee, args, at.as_deref(), e.span),
            ExprKind::List(xs) => Value::List(xs.iter().map(|x| self.expr(x)).collect()),
            ExprKind::Tuple(xs) => Value::Tuple(xs.iter().map(|x| self.expr(x)).collect()),
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => match self.expr(cond) {
                Value::Bool(c) => self.block_value(if c { then } else { otherwise }),
                Value::Poison => Value::Poison,
                other => {
                    self.error(
                        cond.span,
                        format!(
                            "an `if` condition must be a compile-time boolean, found {}",
                            other.kind()
                        ),
                        "use `where(cond, a, b)` to select elementwise on tensors",
                    );
                    Value::Poison
                }
            },
            ExprKind::Repeat {
                var,
                start,
                end,
                acc,
                init,
                body,
            } => self.repeat(var, start, end, acc, init, body),
        }
    }

    fn unary(&mut self, op: UnOp, v: Value, span: Span) -> Value {
        match (op, v) {
            (_, Value::Poison) => Value::Poison,
            (UnOp::Neg, Value::Int(d)) => Value::Int(d.neg()),
            (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
            (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
            (UnOp::Neg, Value::Tensor(id, g)) => {
                let id = self.own(id, g, span);
                self.add(Op::Unary(UnaryOp::Neg), vec![id], span, "negation")
            }
            (UnOp::Not, Value::Tensor(id, g)) => {
                let id = self.own(id, g, span);
                self.add(Op::Unary(UnaryOp::Not), vec![id], span, "`!`")
            }
            (op, v) => {
                let sym = if op == UnOp::Neg { "-" } else { "!" };
                self.error(
                    span,
                    format!("`{sym}` cannot be applied to {}", v.kind()),
                    "here",
                );
                Value::Poison
            }
        }
    }

    /// Checks that a tensor belongs to the graph being built (not outside a scan body).
    pub(crate) fn own(&mut self, id: NodeId, generation: u32, span: Span) -> NodeId {
        if generation != self.ctx.generation {
            self.error(
                span,
                "this tensor is defined outside the `scan_fn` body that uses it".into(),
                "pass it to the body with `args = [...]`",
            );
        }
        id
    }

    pub(crate) fn binary(
        &mut self,
        op: BinOp,
        a: Value,
        b: Value,
        span: Span,
        sa: Span,
        sb: Span,
    ) -> Value {
        if a == Value::Poison || b == Value::Poison {
            return Value::Poison;
        }
        if op == BinOp::MatMul {
            return self.matmul(a, b, span, sa, sb);
        }
        if let Some(v) = self.fold(op, &a, &b, span) {
            return v;
        }
        let bop = match op {
            BinOp::Or => BinaryOp::Or,
            BinOp::And => BinaryOp::And,
            BinOp::Eq => BinaryOp::Eq,
            BinOp::Ne => BinaryOp::Ne,
            BinOp::Lt => BinaryOp::Lt,
            BinOp::Le => BinaryOp::Le,
            BinOp::Gt => BinaryOp::Gt,
            BinOp::Ge => BinaryOp::Ge,
            BinOp::Add => BinaryOp::Add,
            BinOp::Sub => BinaryOp::Sub,
            BinOp::Mul => BinaryOp::Mul,
            BinOp::Div => BinaryOp::Div,
            BinOp::Rem => BinaryOp::Rem,
            BinOp::Pow => BinaryOp::Pow,
            BinOp::MatMul => unreachable!("handled above"),
        };
        let Some((x, y)) = self.tensor_pair(a, b, span, sa, sb, op.symbol()) else {
            return Value::Poison;
        };
        self.add(
            Op::Binary(bop),
            vec![x, y],
            span,
            &format!("`{}`", op.symbol()),
        )
    }

    /// Turns two operands, at least one a tensor, into tensors of one dtype: a literal takes
    /// the dtype of the tensor it meets.
    pub(crate) fn tensor_pair(
        &mut self,
        a: Value,
        b: Value,
        span: Span,
        sa: Span,
        sb: Span,
        what: &str,
    ) -> Option<(NodeId, NodeId)> {
        let dt = |l: &Self, v: &Value| match v {
            Value::Tensor(id, _) => Some(l.tensor_type(*id).dtype),
            _ => None,
        };
        let hint = dt(self, &a).or(dt(self, &b));
        let Some(hint) = hint else {
            self.error(
                span,
                format!(
                    "`{what}` cannot combine {} and {} at compile time",
                    a.kind(),
                    b.kind()
                ),
                "here",
            );
            return None;
        };
        let x = self.as_tensor(a, hint, sa)?;
        let y = self.as_tensor(b, hint, sb)?;
        Some((x, y))
    }

    /// A tensor, or a scalar literal turned into a constant of dtype `hint`.
    pub(crate) fn as_tensor(&mut self, v: Value, hint: DType, span: Span) -> Option<NodeId> {
        let lit = match v {
            Value::Tensor(id, g) => return Some(self.own(id, g, span)),
            Value::Poison => return None,
            Value::Int(d) => match d.as_const() {
                Some(c) if hint != DType::Bool => Literal::Int(c),
                Some(_) => {
                    self.error(
                        span,
                        "an integer cannot be used as a bool tensor".into(),
                        "here",
                    );
                    return None;
                }
                None => {
                    self.error(
                        span,
                        format!("the symbolic dimension `{d}` cannot be used as a tensor value"),
                        "a shape, not a value",
                    );
                    return None;
                }
            },
            Value::Float(f) => {
                if !hint.is_float() {
                    self.error(
                        span,
                        format!("the number {f} cannot be combined with a tensor of dtype {hint}"),
                        "a float literal",
                    );
                    return None;
                }
                Literal::Float(f)
            }
            Value::Bool(b) => {
                if hint != DType::Bool {
                    self.error(
                        span,
                        format!("a boolean cannot be combined with a tensor of dtype {hint}"),
                        "a bool literal",
                    );
                    return None;
                }
                Literal::Bool(b)
            }
            other => {
                self.error(
                    span,
                    format!("expected a tensor or a number, found {}", other.kind()),
                    "here",
                );
                return None;
            }
        };
        Some(self.constant(lit, hint))
    }

    /// Folds operators on compile-time values; `None` if an operand is a tensor.
    fn fold(&mut self, op: BinOp, a: &Value, b: &Value, span: Span) -> Option<Value> {
        use Value::*;
        let v = match (a, b) {
            (Tensor(..), _) | (_, Tensor(..)) => return None,
            (Int(x), Int(y)) => match op {
                BinOp::Add => Int(x.add(y)),
                BinOp::Sub => Int(x.sub(y)),
                BinOp::Mul => Int(x.mul(y)),
                BinOp::Div | BinOp::Rem => match y.as_const() {
                    Some(d) if d > 0 => Int(if op == BinOp::Div {
                        x.floor_div(d).expect("d > 0")
                    } else {
                        x.modulo(d).expect("d > 0")
                    }),
                    _ => {
                        self.error(
                            span,
                            format!(
                                "compile-time `{}` needs a positive constant divisor, found `{y}`",
                                op.symbol()
                            ),
                            "here",
                        );
                        return Some(Poison);
                    }
                },
                BinOp::Pow => match (x.as_const(), y.as_const()) {
                    (Some(p), Some(q)) if (0..64).contains(&q) => match p.checked_pow(q as u32) {
                        Some(r) => Value::int(r),
                        None => Poison,
                    },
                    _ => Float(to_f64(a)?.powf(to_f64(b)?)),
                },
                _ => match (x.as_const(), y.as_const()) {
                    (Some(p), Some(q)) => Bool(cmp_int(op, p, q)?),
                    _ if x == y && matches!(op, BinOp::Eq) => Bool(true),
                    _ => {
                        self.error(
                            span,
                            format!(
                                "`{x} {} {y}` cannot be decided at compile time",
                                op.symbol()
                            ),
                            "symbolic comparison",
                        );
                        return Some(Poison);
                    }
                },
            },
            (Str(x), Str(y)) => match op {
                BinOp::Eq => Bool(x == y),
                BinOp::Ne => Bool(x != y),
                _ => return Some(self.bad_fold(op, a, b, span)),
            },
            (Bool(x), Bool(y)) => match op {
                BinOp::And => Bool(*x && *y),
                BinOp::Or => Bool(*x || *y),
                BinOp::Eq => Bool(x == y),
                BinOp::Ne => Bool(x != y),
                _ => return Some(self.bad_fold(op, a, b, span)),
            },
            (Int(_) | Float(_), Int(_) | Float(_)) => {
                let (Some(x), Some(y)) = (to_f64(a), to_f64(b)) else {
                    self.error(
                        span,
                        "a symbolic dimension cannot be mixed with a float at compile time".into(),
                        "here",
                    );
                    return Some(Poison);
                };
                match op {
                    BinOp::Add => Float(x + y),
                    BinOp::Sub => Float(x - y),
                    BinOp::Mul => Float(x * y),
                    BinOp::Div => Float(x / y),
                    BinOp::Rem => Float(x - y * (x / y).floor()),
                    BinOp::Pow => Float(x.powf(y)),
                    BinOp::Lt => Bool(x < y),
                    BinOp::Le => Bool(x <= y),
                    BinOp::Gt => Bool(x > y),
                    BinOp::Ge => Bool(x >= y),
                    BinOp::Eq => Bool(x == y),
                    BinOp::Ne => Bool(x != y),
                    _ => return Some(self.bad_fold(op, a, b, span)),
                }
            }
            _ => return Some(self.bad_fold(op, a, b, span)),
        };
        if let Int(d) = &v
            && let Some(c) = d.as_const()
            && c.unsigned_abs() > MAX_CONST as u64
        {
            self.error(
                span,
                format!("compile-time integer {c} overflows (limit ±2^53)"),
                "too large",
            );
            return Some(Poison);
        }
        Some(v)
    }

    fn bad_fold(&mut self, op: BinOp, a: &Value, b: &Value, span: Span) -> Value {
        self.error(
            span,
            format!(
                "`{}` cannot be applied to {} and {}",
                op.symbol(),
                a.kind(),
                b.kind()
            ),
            "here",
        );
        Value::Poison
    }

    /// `a @ b`, lowered to an einsum.
    fn matmul(&mut self, a: Value, b: Value, span: Span, sa: Span, sb: Span) -> Value {
        let (Value::Tensor(x, gx), Value::Tensor(y, gy)) = (&a, &b) else {
            let bad = if matches!(a, Value::Tensor(..)) {
                (&b, sb)
            } else {
                (&a, sa)
            };
            self.error(
                bad.1,
                format!("`@` needs two tensors, found {}", bad.0.kind()),
                "not a tensor",
            );
            return Value::Poison;
        };
        let (x, y) = (self.own(*x, *gx, sa), self.own(*y, *gy, sb));
        let (ra, rb) = (self.tensor_type(x).rank(), self.tensor_type(y).rank());
        let letters: Vec<char> = "abcdefghijklmnopqrstuvw".chars().collect();
        if ra == 0 || rb == 0 || ra > 20 || rb > 20 {
            self.error(
                span,
                format!("`@` needs operands of rank 1 to 20, found ranks {ra} and {rb}"),
                "in this product",
            );
            return Value::Poison;
        }
        let (ta, tb, to): (String, String, String) = if rb <= 2 {
            let batch: String = letters[..ra - 1].iter().collect();
            if rb == 1 {
                (format!("{batch}y"), "y".into(), batch)
            } else {
                (format!("{batch}y"), "yz".into(), format!("{batch}z"))
            }
        } else if ra == rb {
            let batch: String = letters[..ra - 2].iter().collect();
            (
                format!("{batch}xy"),
                format!("{batch}yz"),
                format!("{batch}xz"),
            )
        } else {
            self.error(
                span,
                format!("`@` with a right operand of rank {rb} needs a left operand of the same rank, found rank {ra}"),
                "in this product",
            );
            return Value::Poison;
        };
        self.add(
            Op::Einsum {
                spec: format!("{ta},{tb}->{to}"),
            },
            vec![x, y],
            span,
            "`@`",
        )
    }

    fn call(&mut self, callee: &Ident, args: &[Arg], at: Option<&Expr>, span: Span) -> Value {
        let name = callee.name.as_str();
        let mut vals = Vec::new();
        for a in args {
            let v = self.expr(&a.value);
            vals.push((a.name.clone(), v, a.value.span));
        }
        if let Some(f) = self.fns.get(name).copied() {
            let prefix = match at {
                Some(p) => match self.expr(p) {
                    Value::Str(s) => match self.interpolate(&s, p.span) {
                        Some(s) => Some(s),
                        None => return Value::Poison,
                    },
                    Value::Poison => return Value::Poison,
                    other => {
                        self.error(
                            p.span,
                            format!("`at` needs a string prefix, found {}", other.kind()),
                            "expected a string",
                        );
                        return Value::Poison;
                    }
                },
                None => None,
            };
            return self.call_user(f, vals, prefix, span);
        }
        if at.is_some() {
            self.error(
                span,
                format!("`at` applies to user functions; `{name}` is a built-in"),
                "here",
            );
            return Value::Poison;
        }
        if super::builtins::is_builtin(name) {
            return self.builtin(name, vals, span);
        }
        let near = suggest(name, &self.visible_names());
        let msg = format!("unknown function `{name}`");
        match near {
            Some(s) => self.error_help(
                callee.span,
                msg,
                "not defined",
                format!("did you mean `{s}`?"),
            ),
            None => self.error(callee.span, msg, "not defined"),
        }
        Value::Poison
    }

    /// Inlines a user (or prelude) function.
    pub(crate) fn call_user(
        &mut self,
        f: &'a FnDef,
        args: Vec<(Option<Ident>, Value, Span)>,
        prefix: Option<String>,
        span: Span,
    ) -> Value {
        let name = f.name.name.clone();
        if self.calls.iter().any(|(n, _)| *n == name) {
            let chain: Vec<&str> = self.calls.iter().map(|(n, _)| n.as_str()).collect();
            self.error_help(
                span,
                format!("recursive call to `{name}`"),
                "recursion is not allowed",
                format!("call chain: {} → {name}", chain.join(" → ")),
            );
            return Value::Poison;
        }
        if self.calls.len() >= MAX_INLINE_DEPTH {
            self.error(
                span,
                format!("functions are nested more than {MAX_INLINE_DEPTH} calls deep"),
                "too deep",
            );
            return Value::Poison;
        }
        // Bind arguments to parameters.
        let mut bound: Vec<Option<Value>> = vec![None; f.params.len()];
        let mut ok = true;
        let mut npos = 0;
        for (kw, v, s) in args {
            match kw {
                None => {
                    if npos >= f.params.len() {
                        self.error(
                            s,
                            format!(
                                "`{name}` takes {} argument(s), but more were given",
                                f.params.len()
                            ),
                            "extra argument",
                        );
                        ok = false;
                    } else {
                        bound[npos] = Some(v);
                    }
                    npos += 1;
                }
                Some(k) => match f.params.iter().position(|p| p.name.name == k.name) {
                    Some(i) if bound[i].is_none() => bound[i] = Some(v),
                    Some(_) => {
                        self.error(
                            k.span,
                            format!("argument `{}` of `{name}` is given twice", k.name),
                            "given again",
                        );
                        ok = false;
                    }
                    None => {
                        self.error(
                            k.span,
                            format!("`{name}` has no parameter `{}`", k.name),
                            "unknown parameter",
                        );
                        ok = false;
                    }
                },
            }
        }
        if !ok {
            return Value::Poison;
        }
        self.calls.push((name.clone(), span));
        if let Some(p) = &prefix {
            self.prefix.push(p.clone());
        }
        self.push_frame(true);
        let mut failed = false;
        for (p, b) in f.params.iter().zip(bound) {
            let v = match (b, &p.default) {
                (Some(v), _) => v,
                (None, Some(d)) => self.expr(d),
                (None, None) => {
                    self.error(
                        span,
                        format!("missing argument `{}` of `{name}`", p.name.name),
                        "in this call",
                    );
                    failed = true;
                    Value::Poison
                }
            };
            self.bind(&p.name.name, v);
        }
        let out = if failed {
            Value::Poison
        } else {
            for s in &f.body.stmts {
                self.stmt(s);
            }
            self.expr(&f.body.result)
        };
        self.pop_frame();
        if prefix.is_some() {
            self.prefix.pop();
        }
        self.calls.pop();
        out
    }

    fn repeat(
        &mut self,
        var: &Ident,
        start: &Expr,
        end: &Expr,
        acc: &Ident,
        init: &Expr,
        body: &Block,
    ) -> Value {
        let s = self.expr(start);
        let e = self.expr(end);
        let (Some(s), Some(e)) = (
            self.const_int(&s, start.span, "a `repeat` bound"),
            self.const_int(&e, end.span, "a `repeat` bound"),
        ) else {
            return Value::Poison;
        };
        if e - s > MAX_REPEAT {
            self.error(
                start.span.to(end.span),
                format!("`repeat` runs {} times; the limit is {MAX_REPEAT}", e - s),
                "too many iterations",
            );
            return Value::Poison;
        }
        let mut h = self.expr(init);
        for i in s..e {
            self.push_frame(false);
            self.bind(&var.name, Value::int(i));
            self.bind(&acc.name, h);
            for st in &body.stmts {
                self.stmt(st);
            }
            h = self.expr(&body.result);
            self.pop_frame();
            if h == Value::Poison {
                break;
            }
        }
        h
    }

    /// The value of a block in a scope of its own (its `let`s do not leak).
    fn block_value(&mut self, b: &Block) -> Value {
        self.push_frame(false);
        for st in &b.stmts {
            self.stmt(st);
        }
        let v = self.expr(&b.result);
        self.pop_frame();
        v
    }

    /// A compile-time constant integer.
    pub(crate) fn const_int(&mut self, v: &Value, span: Span, what: &str) -> Option<i64> {
        match v {
            Value::Int(d) => match d.as_const() {
                Some(c) => Some(c),
                None => {
                    self.error(
                        span,
                        format!("{what} must be a constant, found the symbolic `{d}`"),
                        "symbolic",
                    );
                    None
                }
            },
            Value::Poison => None,
            other => {
                self.error(
                    span,
                    format!("{what} must be an integer, found {}", other.kind()),
                    "expected an integer",
                );
                None
            }
        }
    }

    /// Replaces `{name}` in a string with compile-time integers in scope.
    fn interpolate(&mut self, s: &str, span: Span) -> Option<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}') else {
                self.error(span, "unclosed `{` in a string".into(), "here");
                return None;
            };
            let name = &rest[i + 1..i + j];
            match self.lookup(name) {
                Some(Value::Int(d)) if d.is_const() => out.push_str(&d.to_string()),
                Some(Value::Str(t)) => out.push_str(&t),
                _ => {
                    self.error(
                        span,
                        format!("`{{{name}}}` in a string must name a constant integer or string"),
                        "here",
                    );
                    return None;
                }
            }
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(d) => d.as_const().map(|c| c as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn cmp_int(op: BinOp, p: i64, q: i64) -> Option<bool> {
    Some(match op {
        BinOp::Lt => p < q,
        BinOp::Le => p <= q,
        BinOp::Gt => p > q,
        BinOp::Ge => p >= q,
        BinOp::Eq => p == q,
        BinOp::Ne => p != q,
        _ => return None,
    })
}

/// The closest name within edit distance 2, if any.
pub(crate) fn suggest(name: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.min(name.len().max(1)) && c.as_str() != name)
        .min()
        .map(|(_, c)| c.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let c = if a[i - 1] == b[j - 1] { 0 } else { 1 };
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + c);
        }
        prev = cur;
    }
    prev[b.len()]
}
