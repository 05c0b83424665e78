//! Lowering: AST → tensor IR. Names are resolved, compile-time values folded, functions and
//! `repeat` inlined, params scoped by `at` prefixes, and every operation type- and
//! shape-checked through `ir::infer` as it is added. Errors are collected, not fatal: a failed
//! expression yields `Value::Poison`, which later uses pass on silently, so one run reports
//! every independent error once.

mod args;
mod builtins;
mod expr;
mod scan;
mod value;

use crate::diag::SpecError;
use crate::ir::{DimExpr, Graph, Literal, NodeId, Op, TensorType};
use crate::syntax::Span;
use crate::syntax::ast::*;
use seqc_runtime::DType;
use std::collections::{BTreeMap, HashMap};
pub use value::Value;

/// Limits that keep a hostile spec from hanging the compiler.
pub const MAX_INLINE_DEPTH: usize = 64;
pub const MAX_REPEAT: i64 = 4096;
pub const MAX_DIM: i64 = 1 << 31;

struct Frame {
    vars: HashMap<String, Value>,
    /// A function's frame: lookups stop here and continue at the globals.
    barrier: bool,
}

/// The graph being built and its constant cache.
struct Ctx {
    graph: Graph,
    generation: u32,
    consts: HashMap<(String, DType), NodeId>,
}

/// Values a spec may read with `config("field", default)`: an HF `config.json`'s fields.
pub type Config = BTreeMap<String, serde_json::Value>;

pub struct Lowerer<'a> {
    ctx: Ctx,
    config: &'a Config,
    next_generation: u32,
    fns: BTreeMap<String, &'a FnDef>,
    frames: Vec<Frame>,
    prefix: Vec<String>,
    /// (function name, call-site span) of the calls being inlined.
    calls: Vec<(String, Span)>,
    params: BTreeMap<String, NodeId>,
    inputs: BTreeMap<String, Span>,
    outputs: BTreeMap<String, Span>,
    dims: Vec<String>,
    in_scan_body: usize,
    errors: Vec<SpecError>,
}

/// Lowers a parsed spec (with the parsed prelude) to a graph, or returns every error.
pub fn lower(
    program: &Program,
    prelude: &Program,
    config: &Config,
) -> Result<Graph, Vec<SpecError>> {
    let mut l = Lowerer {
        config,
        ctx: Ctx {
            graph: Graph::new(Vec::new()),
            generation: 0,
            consts: HashMap::new(),
        },
        next_generation: 1,
        fns: BTreeMap::new(),
        frames: vec![Frame {
            vars: HashMap::new(),
            barrier: true,
        }],
        prefix: Vec::new(),
        calls: Vec::new(),
        params: BTreeMap::new(),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::new(),
        dims: Vec::new(),
        in_scan_body: 0,
        errors: Vec::new(),
    };
    l.register_fns(prelude, true);
    l.register_fns(program, false);
    for item in &program.items {
        l.top_item(item);
    }
    if l.outputs.is_empty() && l.errors.is_empty() {
        let end = program.items.last().map_or(0, |i| i.span.end as usize);
        l.error(
            Span::new(0, end, end),
            "the spec declares no outputs".into(),
            "expected at least one `output name = …;`",
        );
    }
    if l.errors.is_empty() {
        Ok(l.ctx.graph)
    } else {
        Err(l.errors)
    }
}

impl<'a> Lowerer<'a> {
    /// Records an error. An error inside a prelude function is reported at the user's call
    /// site, naming the prelude function.
    pub(crate) fn error(&mut self, span: Span, message: String, label: &str) {
        let (span, message) = if span.file != 0 {
            let site = self.calls.iter().rev().find(|(_, s)| s.file == 0);
            let inner = self
                .calls
                .last()
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            match site {
                Some((_, s)) => (*s, format!("{message} (inside prelude function `{inner}`)")),
                None => (span, message),
            }
        } else {
            (span, message)
        };
        let dup = self
            .errors
            .iter()
            .any(|e| e.span == span && e.message == message);
        if !dup {
            self.errors.push(SpecError {
                message,
                span,
                label: label.to_string(),
                help: None,
            });
        }
    }

    pub(crate) fn error_help(&mut self, span: Span, message: String, label: &str, help: String) {
        self.error(span, message, label);
        if let Some(e) = self.errors.last_mut() {
            e.help.get_or_insert(help);
        }
    }

    fn register_fns(&mut self, p: &'a Program, prelude: bool) {
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for it in &p.items {
            if let ItemKind::Fn(f) = &it.kind {
                if seen.contains_key(f.name.name.as_str()) {
                    self.error(
                        f.name.span,
                        format!("function `{}` is defined twice", f.name.name),
                        "second definition",
                    );
                    continue;
                }
                if !prelude && builtins::is_builtin(&f.name.name) {
                    self.error(
                        f.name.span,
                        format!(
                            "`{}` is a built-in operation and cannot be redefined",
                            f.name.name
                        ),
                        "choose another name",
                    );
                    continue;
                }
                seen.insert(&f.name.name, f.name.span);
                self.fns.insert(f.name.name.clone(), f);
            }
        }
    }

    // ---- environment ----

    pub(crate) fn bind(&mut self, name: &str, v: Value) {
        self.frames
            .last_mut()
            .expect("a frame")
            .vars
            .insert(name.to_string(), v);
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Value> {
        for f in self.frames.iter().rev() {
            if let Some(v) = f.vars.get(name) {
                return Some(v.clone());
            }
            if f.barrier {
                break;
            }
        }
        if let Some(v) = self.frames[0].vars.get(name) {
            return Some(v.clone());
        }
        match name {
            "inf" => return Some(Value::Float(f64::INFINITY)),
            "pi" => return Some(Value::Float(std::f64::consts::PI)),
            _ => {}
        }
        if let Some(d) = DType::from_name(name) {
            return Some(Value::DType(d));
        }
        if self.fns.contains_key(name) {
            return Some(Value::Func(name.to_string()));
        }
        None
    }

    /// Names visible here, for "did you mean" suggestions.
    pub(crate) fn visible_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self.frames.iter().rev() {
            out.extend(f.vars.keys().cloned());
            if f.barrier {
                break;
            }
        }
        out.extend(self.frames[0].vars.keys().cloned());
        out.extend(self.fns.keys().cloned());
        out.extend(builtins::BUILTINS.iter().map(|s| s.to_string()));
        out.sort();
        out.dedup();
        out
    }

    pub(crate) fn push_frame(&mut self, barrier: bool) {
        self.frames.push(Frame {
            vars: HashMap::new(),
            barrier,
        });
    }

    pub(crate) fn pop_frame(&mut self) {
        self.frames.pop();
    }

    // ---- graph building ----

    /// Adds a node; a type error is reported at `span` and yields `Poison`.
    pub(crate) fn add(&mut self, op: Op, inputs: Vec<NodeId>, span: Span, what: &str) -> Value {
        match self.ctx.graph.add(op, inputs) {
            Ok(id) => Value::Tensor(id, self.ctx.generation),
            Err(msg) => {
                self.error(span, msg, &format!("in this {what}"));
                Value::Poison
            }
        }
    }

    /// A scalar constant node of `dtype` (cached per graph).
    pub(crate) fn constant(&mut self, lit: Literal, dtype: DType) -> NodeId {
        let lit = match (lit, dtype.is_float()) {
            (Literal::Int(i), true) => Literal::Float(i as f64),
            (l, _) => l,
        };
        let key = (format!("{lit:?}"), dtype);
        if let Some(id) = self.ctx.consts.get(&key) {
            return *id;
        }
        let id = self
            .ctx
            .graph
            .add(Op::Const { value: lit, dtype }, vec![])
            .expect("constant of a checked dtype");
        self.ctx.consts.insert(key, id);
        id
    }

    pub(crate) fn tensor_type(&self, id: NodeId) -> TensorType {
        self.ctx.graph.tensor_ty(id).clone()
    }

    // ---- items ----

    fn top_item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Dim(names) => {
                for n in names {
                    if self.lookup_global_defined(&n.name) {
                        self.error(
                            n.span,
                            format!("`{}` is already defined", n.name),
                            "defined again here",
                        );
                        continue;
                    }
                    self.dims.push(n.name.clone());
                    self.ctx.graph.dims.push(n.name.clone());
                    self.bind(&n.name, Value::Int(DimExpr::sym(&n.name)));
                }
            }
            ItemKind::Input(name, ty) => {
                if self.inputs.contains_key(&name.name) {
                    self.error(
                        name.span,
                        format!("input `{}` is declared twice", name.name),
                        "second declaration",
                    );
                    return;
                }
                if self.lookup_global_defined(&name.name) {
                    self.error(
                        name.span,
                        format!("`{}` is already defined", name.name),
                        "defined again here",
                    );
                    return;
                }
                self.inputs.insert(name.name.clone(), name.span);
                let v = match self.type_expr(ty) {
                    Some(t) => {
                        let id = self.ctx.graph.add_leaf(
                            Op::Input {
                                name: name.name.clone(),
                            },
                            t,
                        );
                        Value::Tensor(id, self.ctx.generation)
                    }
                    None => Value::Poison,
                };
                self.bind(&name.name, v);
            }
            ItemKind::Output(name, ty, e) => {
                if self.outputs.contains_key(&name.name) {
                    self.error(
                        name.span,
                        format!("output `{}` is declared twice", name.name),
                        "second declaration",
                    );
                    return;
                }
                self.outputs.insert(name.name.clone(), name.span);
                let v = self.expr(e);
                let want = ty.as_ref().and_then(|t| self.type_expr(t));
                match v {
                    Value::Tensor(id, _) => {
                        let got = self.tensor_type(id);
                        if let Some(w) = want
                            && w != got
                        {
                            self.error(
                                e.span,
                                format!("output `{}` is declared {w} but is {got}", name.name),
                                "this expression",
                            );
                            return;
                        }
                        self.ctx.graph.add_output(&name.name, id);
                    }
                    Value::Poison => {}
                    other => self.error(
                        e.span,
                        format!(
                            "output `{}` must be a tensor, found {}",
                            name.name,
                            other.kind()
                        ),
                        "not a tensor",
                    ),
                }
            }
            ItemKind::Fn(_) => {}
            _ => self.stmt(item),
        }
    }

    fn lookup_global_defined(&self, name: &str) -> bool {
        self.frames[0].vars.contains_key(name)
    }

    /// `let`, `const` and `param`, at the top level or in a block.
    pub(crate) fn stmt(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Let(pat, e) => {
                let v = self.expr(e);
                match pat {
                    LetPat::Name(n) => self.bind(&n.name, v),
                    LetPat::Tuple(names) => match v {
                        Value::Tuple(vs) if vs.len() == names.len() => {
                            for (n, v) in names.iter().zip(vs) {
                                self.bind(&n.name, v);
                            }
                        }
                        Value::Poison => {
                            for n in names {
                                self.bind(&n.name, Value::Poison);
                            }
                        }
                        other => {
                            let found = match &other {
                                Value::Tuple(vs) => format!("a tuple of {}", vs.len()),
                                o => o.kind().to_string(),
                            };
                            self.error(
                                e.span,
                                format!("cannot destructure {found} into {} names", names.len()),
                                "this value",
                            );
                            for n in names {
                                self.bind(&n.name, Value::Poison);
                            }
                        }
                    },
                }
            }
            ItemKind::Const(n, e) => {
                let v = self.expr(e);
                let v = match v {
                    _ if v.is_compile_time() => v,
                    other => {
                        self.error(
                            e.span,
                            format!(
                                "constant `{}` must be a compile-time value (number, boolean, string or list of them), found {}",
                                n.name,
                                other.kind()
                            ),
                            "not a compile-time value",
                        );
                        Value::Poison
                    }
                };
                self.bind(&n.name, v);
            }
            ItemKind::Param(n, ty) => {
                let v = self.param(n, ty);
                self.bind(&n.name, v);
            }
            ItemKind::Dim(_) | ItemKind::Input(..) | ItemKind::Output(..) | ItemKind::Fn(_) => {
                self.error(
                    item.span,
                    "only `let`, `const` and `param` are allowed in a block".into(),
                    "not allowed here",
                );
            }
        }
    }

    fn param(&mut self, n: &Ident, ty: &TypeExpr) -> Value {
        if self.in_scan_body > 0 {
            self.error(
                n.span,
                "params cannot be declared inside a `scan_fn` body".into(),
                "declare it outside and pass it with `args = [...]`",
            );
            return Value::Poison;
        }
        let Some(t) = self.type_expr(ty) else {
            return Value::Poison;
        };
        let mut key = self.prefix.join(".");
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(&n.name);
        if let Some(&id) = self.params.get(&key) {
            let prev = self.tensor_type(id);
            if prev != t {
                self.error(
                    ty.span,
                    format!("param `{key}` is declared again as {t}, but it was first declared as {prev}"),
                    "conflicting type",
                );
                return Value::Poison;
            }
            return Value::Tensor(id, self.ctx.generation);
        }
        let id = self.ctx.graph.add_leaf(Op::Param { name: key.clone() }, t);
        self.params.insert(key, id);
        Value::Tensor(id, self.ctx.generation)
    }

    /// Evaluates `dtype[d, …]`.
    pub(crate) fn type_expr(&mut self, t: &TypeExpr) -> Option<TensorType> {
        let dtype = match DType::from_name(&t.dtype.name) {
            Some(d) => Some(d),
            None => {
                self.error_help(
                    t.dtype.span,
                    format!("unknown dtype `{}`", t.dtype.name),
                    "not a dtype",
                    "dtypes are f32, f16, bf16, i32, i64 and bool".into(),
                );
                None
            }
        };
        let mut shape = Vec::new();
        let mut ok = true;
        for d in &t.dims {
            let v = self.expr(d);
            match self.dim_value(&v, d.span, "a dimension") {
                Some(e) => shape.push(e),
                None => ok = false,
            }
        }
        if ok {
            dtype.map(|d| TensorType::new(d, shape))
        } else {
            None
        }
    }

    /// Checks that `v` is a valid dimension: a compile-time integer, not negative, not absurd.
    pub(crate) fn dim_value(&mut self, v: &Value, span: Span, what: &str) -> Option<DimExpr> {
        match v {
            Value::Int(e) => {
                if let Some(c) = e.as_const() {
                    if c < 0 {
                        self.error(span, format!("{what} is negative ({c})"), "must be ≥ 0");
                        return None;
                    }
                    if c > MAX_DIM {
                        self.error(
                            span,
                            format!("{what} is absurdly large ({c}); the limit is {MAX_DIM}"),
                            "too large",
                        );
                        return None;
                    }
                }
                Some(e.clone())
            }
            Value::Poison => None,
            other => {
                self.error(
                    span,
                    format!(
                        "{what} must be a compile-time integer, found {}",
                        other.kind()
                    ),
                    "expected an integer",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
