//! Built-in operations of the spec language (see docs/language.md): each call is matched to
//! its signature, its arguments checked, and one or a few IR nodes added.

use super::{Lowerer, Value};
use crate::ir::op::unary_from_name;
use crate::ir::{BinaryOp, DimExpr, Distribution, Literal, NodeId, Op, ReduceOp, UnaryOp};
use crate::syntax::Span;
use crate::syntax::ast::Ident;
use seqc_runtime::DType;

pub const BUILTINS: &[&str] = &[
    "exp",
    "log",
    "log1p",
    "sqrt",
    "rsqrt",
    "recip",
    "sigmoid",
    "softplus",
    "silu",
    "gelu",
    "gelu_tanh",
    "relu",
    "elu",
    "tanh",
    "erf",
    "sin",
    "cos",
    "abs",
    "floor",
    "maximum",
    "minimum",
    "pow",
    "where",
    "cast",
    "sum",
    "mean",
    "max",
    "min",
    "logsumexp",
    "einsum",
    "reshape",
    "transpose",
    "swapaxes",
    "broadcast",
    "unsqueeze",
    "squeeze",
    "slice",
    "concat",
    "pad",
    "take",
    "gather",
    "scatter_add",
    "sort",
    "argsort",
    "topk",
    "argtopk",
    "argmax",
    "iota",
    "zeros",
    "ones",
    "full",
    "randn",
    "rand",
    "scan",
    "scan_matrix",
    "scan_fn",
    "conv1d_causal",
    "dim",
    "rank",
    "config",
    "item",
    "len",
    "is_list",
    "assert",
];

pub fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

type Args = Vec<(Option<Ident>, Value, Span)>;

impl<'a> Lowerer<'a> {
    pub(crate) fn builtin(&mut self, name: &str, args: Args, span: Span) -> Value {
        self.builtin_inner(name, args, span)
            .unwrap_or(Value::Poison)
    }

    fn builtin_inner(&mut self, name: &str, args: Args, span: Span) -> Option<Value> {
        let what = format!("call to `{name}`");
        if let Some(u) = unary_from_name(name).filter(|u| !matches!(u, UnaryOp::Neg | UnaryOp::Not))
        {
            let a = self.bind_args(name, &["x"], args, span)?;
            if let Some((v @ (Value::Int(_) | Value::Float(_)), s)) = &a[0] {
                return self.fold_unary(u, v, *s, name);
            }
            let x = self.arg_tensor(&a[0], &format!("the argument of `{name}`"))?;
            return Some(self.add(Op::Unary(u), vec![x], span, &what));
        }
        match name {
            "maximum" | "minimum" | "pow" => {
                let a = self.bind_args(name, &["a", "b"], args, span)?;
                let (va, sa) = a[0].clone()?;
                let (vb, sb) = a[1].clone()?;
                if let (Some(x), Some(y)) = (num(&va), num(&vb)) {
                    return Some(Value::Float(match name {
                        "maximum" => x.max(y),
                        "minimum" => x.min(y),
                        _ => x.powf(y),
                    }));
                }
                let op = match name {
                    "maximum" => BinaryOp::Max,
                    "minimum" => BinaryOp::Min,
                    _ => BinaryOp::Pow,
                };
                let (x, y) = self.tensor_pair(va, vb, span, sa, sb, name)?;
                Some(self.add(Op::Binary(op), vec![x, y], span, &what))
            }
            "where" => {
                let a = self.bind_args(name, &["cond", "a", "b"], args, span)?;
                let c = self.arg_tensor(&a[0], "the condition of `where`")?;
                let (va, sa) = a[1].clone()?;
                let (vb, sb) = a[2].clone()?;
                let (x, y) = self.tensor_pair(va, vb, span, sa, sb, name)?;
                Some(self.add(Op::Select, vec![c, x, y], span, &what))
            }
            "cast" => {
                let a = self.bind_args(name, &["x", "dtype"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `cast`")?;
                let to = self.arg_dtype(&a[1], DType::F32)?;
                Some(self.add(Op::Cast { to }, vec![x], span, &what))
            }
            "sum" | "mean" | "max" | "min" | "logsumexp" => {
                let a = self.bind_args(name, &["x", "axis?", "keepdim?", "axes?"], args, span)?;
                let x = self.arg_tensor(&a[0], &format!("the argument of `{name}`"))?;
                let rank = self.rank_of(x);
                let keepdim = self.arg_bool(&a[2], false, "`keepdim`")?;
                let mut axes = match (&a[1], &a[3]) {
                    (Some(_), Some((_, s))) => {
                        self.error(*s, "give `axis` or `axes`, not both".into(), "here");
                        return None;
                    }
                    (Some((v, s)), None) => {
                        let ax = self.const_int(v, *s, "`axis`")?;
                        vec![self.axis(ax, rank, *s)?]
                    }
                    (None, Some(_)) => {
                        let s = Self::span_of(&a[3], span);
                        let list = self.arg_ints(&a[3], "`axes`")?;
                        let mut out = Vec::new();
                        for ax in list {
                            out.push(self.axis(ax, rank, s)?);
                        }
                        out
                    }
                    (None, None) => (0..rank).collect(),
                };
                axes.sort_unstable();
                if axes.windows(2).any(|w| w[0] == w[1]) {
                    self.error(
                        Self::span_of(&a[3], span),
                        "an axis is listed twice".into(),
                        "repeated axis",
                    );
                    return None;
                }
                let op = match name {
                    "sum" => ReduceOp::Sum,
                    "mean" => ReduceOp::Mean,
                    "max" => ReduceOp::Max,
                    "min" => ReduceOp::Min,
                    _ => ReduceOp::LogSumExp,
                };
                Some(self.add(Op::Reduce { op, axes, keepdim }, vec![x], span, &what))
            }
            "einsum" => {
                let mut it = args.into_iter();
                let spec = match it.next() {
                    Some((None, Value::Str(s), _)) => s,
                    Some((_, v, s)) => {
                        if v != Value::Poison {
                            self.error(
                                s,
                                format!("`einsum` needs its spec string first, found {}", v.kind()),
                                "expected a string like \"btd,de->bte\"",
                            );
                        }
                        return None;
                    }
                    None => {
                        self.error(
                            span,
                            "`einsum` needs a spec string and operands".into(),
                            "in this call",
                        );
                        return None;
                    }
                };
                let mut ops = Vec::new();
                for (kw, v, s) in it {
                    if let Some(k) = kw {
                        self.error(k.span, "`einsum` takes no keyword arguments".into(), "here");
                        return None;
                    }
                    ops.push(self.arg_tensor(&Some((v, s)), "an operand of `einsum`")?);
                }
                let spec: String = spec.chars().filter(|c| !c.is_whitespace()).collect();
                Some(self.add(Op::Einsum { spec }, ops, span, &what))
            }
            "reshape" => {
                let a = self.bind_args(name, &["x", "shape"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `reshape`")?;
                let shape = self.reshape_target(x, &a[1], span)?;
                Some(self.add(Op::Reshape { shape }, vec![x], span, &what))
            }
            "transpose" => {
                let a = self.bind_args(name, &["x", "perm"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `transpose`")?;
                let rank = self.rank_of(x);
                let s = Self::span_of(&a[1], span);
                let mut perm = Vec::new();
                for p in self.arg_ints(&a[1], "the permutation")? {
                    perm.push(self.axis(p, rank, s)?);
                }
                Some(self.add(Op::Transpose { perm }, vec![x], span, &what))
            }
            "swapaxes" => {
                let a = self.bind_args(name, &["x", "a", "b"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `swapaxes`")?;
                let rank = self.rank_of(x);
                let i = self.arg_int(&a[1], 0, "an axis")?;
                let i = self.axis(i, rank, Self::span_of(&a[1], span))?;
                let j = self.arg_int(&a[2], 0, "an axis")?;
                let j = self.axis(j, rank, Self::span_of(&a[2], span))?;
                let mut perm: Vec<usize> = (0..rank).collect();
                perm.swap(i, j);
                Some(self.add(Op::Transpose { perm }, vec![x], span, &what))
            }
            "broadcast" => {
                let a = self.bind_args(name, &["x", "shape"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `broadcast`")?;
                let shape = self.arg_shape(&a[1], "the target shape")?;
                Some(self.add(Op::Broadcast { shape }, vec![x], span, &what))
            }
            "unsqueeze" | "squeeze" => {
                let a = self.bind_args(name, &["x", "axis"], args, span)?;
                let x = self.arg_tensor(&a[0], &format!("the argument of `{name}`"))?;
                let mut shape = self.tensor_type(x).shape;
                let ax = self.arg_int(&a[1], 0, "`axis`")?;
                let s = Self::span_of(&a[1], span);
                if name == "unsqueeze" {
                    let ax = self.axis(ax, shape.len() + 1, s)?;
                    shape.insert(ax, DimExpr::constant(1));
                } else {
                    let ax = self.axis(ax, shape.len(), s)?;
                    if shape[ax] != DimExpr::constant(1) {
                        self.error(
                            s,
                            format!(
                                "`squeeze` needs a dim of size 1 at axis {ax}, found {}",
                                shape[ax]
                            ),
                            "not 1",
                        );
                        return None;
                    }
                    shape.remove(ax);
                }
                Some(self.add(Op::Reshape { shape }, vec![x], span, &what))
            }
            "slice" => {
                let a =
                    self.bind_args(name, &["x", "axis", "start?", "end?", "step?"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `slice`")?;
                let t = self.tensor_type(x);
                let ax = self.arg_int(&a[1], 0, "`axis`")?;
                let axis = self.axis(ax, t.rank(), Self::span_of(&a[1], span))?;
                let n = t.shape[axis].clone();
                let start = self.slice_bound(&a[2], DimExpr::constant(0), &n)?;
                let end = self.slice_bound(&a[3], n.clone(), &n)?;
                let step = self.arg_int(&a[4], 1, "`step`")?;
                Some(self.add(
                    Op::Slice {
                        axis,
                        start,
                        end,
                        step,
                    },
                    vec![x],
                    span,
                    &what,
                ))
            }
            "concat" => {
                let a = self.bind_args(name, &["xs", "axis"], args, span)?;
                let (v, s) = a[0].clone()?;
                let Value::List(items) = v else {
                    self.error(
                        s,
                        format!("`concat` needs a list of tensors, found {}", v.kind()),
                        "expected `[a, b, …]`",
                    );
                    return None;
                };
                let mut ids = Vec::new();
                for it in items {
                    ids.push(self.arg_tensor(&Some((it, s)), "each entry of `concat`")?);
                }
                let Some(&first) = ids.first() else {
                    self.error(s, "`concat` needs at least one tensor".into(), "empty list");
                    return None;
                };
                let ax = self.arg_int(&a[1], 0, "`axis`")?;
                let axis = self.axis(ax, self.rank_of(first), Self::span_of(&a[1], span))?;
                Some(self.add(Op::Concat { axis }, ids, span, &what))
            }
            "pad" => {
                let a = self.bind_args(
                    name,
                    &["x", "axis", "before?", "after?", "value?"],
                    args,
                    span,
                )?;
                let x = self.arg_tensor(&a[0], "the argument of `pad`")?;
                let t = self.tensor_type(x);
                let ax = self.arg_int(&a[1], 0, "`axis`")?;
                let axis = self.axis(ax, t.rank(), Self::span_of(&a[1], span))?;
                let before = self.arg_dim(&a[2], DimExpr::constant(0), "`before`")?;
                let after = self.arg_dim(&a[3], DimExpr::constant(0), "`after`")?;
                let value = match &a[4] {
                    None => {
                        if t.dtype == DType::Bool {
                            Literal::Bool(false)
                        } else if t.dtype.is_float() {
                            Literal::Float(0.0)
                        } else {
                            Literal::Int(0)
                        }
                    }
                    Some((Value::Float(f), _)) if t.dtype.is_float() => Literal::Float(*f),
                    Some((Value::Int(d), s)) => {
                        let c = self.const_int(&Value::Int(d.clone()), *s, "the pad value")?;
                        if t.dtype.is_float() {
                            Literal::Float(c as f64)
                        } else {
                            Literal::Int(c)
                        }
                    }
                    Some((Value::Bool(b), _)) if t.dtype == DType::Bool => Literal::Bool(*b),
                    Some((v, s)) => {
                        self.error(
                            *s,
                            format!(
                                "the pad value must be a number matching {}, found {}",
                                t.dtype,
                                v.kind()
                            ),
                            "bad value",
                        );
                        return None;
                    }
                };
                Some(self.add(
                    Op::Pad {
                        axis,
                        before,
                        after,
                        value,
                    },
                    vec![x],
                    span,
                    &what,
                ))
            }
            "take" | "gather" => {
                let sig: &[&str] = if name == "take" {
                    &["x", "idx", "axis?"]
                } else {
                    &["x", "idx", "axis"]
                };
                let a = self.bind_args(name, sig, args, span)?;
                let x = self.arg_tensor(&a[0], "the tensor")?;
                let idx = self.arg_tensor(&a[1], "the index")?;
                let ax = self.arg_int(&a[2], 0, "`axis`")?;
                let axis = self.axis(ax, self.rank_of(x), Self::span_of(&a[2], span))?;
                let op = if name == "take" {
                    Op::Take { axis }
                } else {
                    Op::Gather { axis }
                };
                Some(self.add(op, vec![x, idx], span, &what))
            }
            "scatter_add" => {
                let a = self.bind_args(name, &["base", "idx", "src", "axis"], args, span)?;
                let base = self.arg_tensor(&a[0], "the base")?;
                let idx = self.arg_tensor(&a[1], "the index")?;
                let src = self.arg_tensor(&a[2], "the source")?;
                let ax = self.arg_int(&a[3], 0, "`axis`")?;
                let axis = self.axis(ax, self.rank_of(base), Self::span_of(&a[3], span))?;
                Some(self.add(Op::ScatterAdd { axis }, vec![base, idx, src], span, &what))
            }
            "sort" | "argsort" => {
                let a = self.bind_args(name, &["x", "axis?", "descending?"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument")?;
                let ax = self.arg_int(&a[1], -1, "`axis`")?;
                let axis = self.axis(ax, self.rank_of(x), Self::span_of(&a[1], span))?;
                let descending = self.arg_bool(&a[2], false, "`descending`")?;
                let op = if name == "sort" {
                    Op::Sort { axis, descending }
                } else {
                    Op::Argsort { axis, descending }
                };
                Some(self.add(op, vec![x], span, &what))
            }
            "topk" | "argtopk" => {
                let a = self.bind_args(name, &["x", "k", "axis?", "largest?"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument")?;
                let k = self.arg_dim(&a[1], DimExpr::constant(0), "`k`")?;
                let ax = self.arg_int(&a[2], -1, "`axis`")?;
                let axis = self.axis(ax, self.rank_of(x), Self::span_of(&a[2], span))?;
                let largest = self.arg_bool(&a[3], true, "`largest`")?;
                let op = Op::TopK {
                    axis,
                    k,
                    largest,
                    indices: name == "argtopk",
                };
                Some(self.add(op, vec![x], span, &what))
            }
            "argmax" => {
                let a = self.bind_args(name, &["x", "axis?"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument")?;
                let ax = self.arg_int(&a[1], -1, "`axis`")?;
                let axis = self.axis(ax, self.rank_of(x), Self::span_of(&a[1], span))?;
                Some(self.add(Op::ArgMax { axis }, vec![x], span, &what))
            }
            "iota" => {
                let a = self.bind_args(name, &["shape", "axis"], args, span)?;
                let shape = self.arg_shape(&a[0], "the shape")?;
                let ax = self.arg_int(&a[1], 0, "`axis`")?;
                let axis = self.axis(ax, shape.len(), Self::span_of(&a[1], span))?;
                Some(self.add(Op::Iota { shape, axis }, vec![], span, &what))
            }
            "zeros" | "ones" | "full" => {
                let sig: &[&str] = if name == "full" {
                    &["shape", "value", "dtype?"]
                } else {
                    &["shape", "dtype?"]
                };
                let a = self.bind_args(name, sig, args, span)?;
                let shape = self.arg_shape(&a[0], "the shape")?;
                let dt_arg = if name == "full" { &a[2] } else { &a[1] };
                let dtype = self.arg_dtype(dt_arg, DType::F32)?;
                let value = match name {
                    "zeros" => Value::int(0),
                    "ones" => Value::int(1),
                    _ => a[1].clone()?.0,
                };
                let c = self.as_tensor(value, dtype, Self::span_of(&a[1], span))?;
                Some(self.add(Op::Broadcast { shape }, vec![c], span, &what))
            }
            "randn" | "rand" => {
                let sig: &[&str] = if name == "randn" {
                    &["shape", "seed?", "generator?"]
                } else {
                    &["shape", "seed?"]
                };
                let a = self.bind_args(name, sig, args, span)?;
                let shape = self.arg_shape(&a[0], "the shape")?;
                let seed = self.arg_int(&a[1], 0, "`seed`")?;
                let dist = if name == "randn" {
                    self.arg_generator(a.get(2).unwrap_or(&None))?
                } else {
                    Distribution::Uniform
                };
                Some(self.add(
                    Op::Random {
                        shape,
                        dist,
                        seed: seed as u64,
                    },
                    vec![],
                    span,
                    &what,
                ))
            }
            "scan" => {
                let a =
                    self.bind_args(name, &["a", "b", "axis", "init?", "reverse?"], args, span)?;
                let b = self.arg_tensor(&a[1], "the input `b` of `scan`")?;
                let dtype = self.tensor_type(b).dtype;
                let (va, sa) = a[0].clone()?;
                let da = self.as_tensor(va, dtype, sa)?;
                let ax = self.arg_int(&a[2], 0, "`axis`")?;
                let axis = self.axis(ax, self.rank_of(b), Self::span_of(&a[2], span))?;
                let reverse = self.arg_bool(&a[4], false, "`reverse`")?;
                let mut ins = vec![da, b];
                if a[3].is_some() {
                    ins.push(self.arg_tensor(&a[3], "`init`")?);
                }
                Some(self.add(Op::Scan { axis, reverse }, ins, span, &what))
            }
            "scan_matrix" => {
                let a = self.bind_args(name, &["a", "b", "init?"], args, span)?;
                let ta = self.arg_tensor(&a[0], "the transition `a`")?;
                let b = self.arg_tensor(&a[1], "the input `b`")?;
                let axis = self.rank_of(b).saturating_sub(2);
                let mut ins = vec![ta, b];
                if a[2].is_some() {
                    ins.push(self.arg_tensor(&a[2], "`init`")?);
                }
                Some(self.add(Op::ScanMatrix { axis }, ins, span, &what))
            }
            "scan_fn" => {
                let a = self.bind_args(name, &["f", "init", "xs", "args?", "axis"], args, span)?;
                self.scan_fn(a, span)
            }
            "conv1d_causal" => {
                let a = self.bind_args(name, &["x", "w"], args, span)?;
                let x = self.arg_tensor(&a[0], "the input")?;
                let w = self.arg_tensor(&a[1], "the weight")?;
                Some(self.add(Op::Conv1dCausal, vec![x, w], span, &what))
            }
            "dim" => {
                let a = self.bind_args(name, &["x", "axis"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `dim`")?;
                let t = self.tensor_type(x);
                let ax = self.arg_int(&a[1], 0, "`axis`")?;
                let axis = self.axis(ax, t.rank(), Self::span_of(&a[1], span))?;
                Some(Value::Int(t.shape[axis].clone()))
            }
            "config" => {
                let a = self.bind_args(name, &["field", "default?"], args, span)?;
                let (fv, fs) = a[0].clone()?;
                let Value::Str(field) = fv else {
                    self.error(
                        fs,
                        format!("`config` needs a field name string, found {}", fv.kind()),
                        "expected a string",
                    );
                    return None;
                };
                // `a.b` reads field `b` of the object `a` (HF nests e.g. rope_parameters).
                let mut parts = field.split('.');
                let first = self.config.get(parts.next().unwrap_or_default());
                let found = parts.try_fold(first, |v, k| match v {
                    Some(serde_json::Value::Object(m)) => Some(m.get(k)),
                    Some(serde_json::Value::Null) | None => Some(None),
                    Some(_) => None,
                });
                let Some(found) = found else {
                    self.error(
                        fs,
                        format!(
                            "config field `{field}` goes through a value that is not an object"
                        ),
                        "bad path",
                    );
                    return None;
                };
                match found {
                    Some(serde_json::Value::Null) | None => match &a[1] {
                        Some((v, _)) => Some(v.clone()),
                        None => {
                            self.error_help(
                                fs,
                                format!("the spec reads config field `{field}`, which the config does not set"),
                                "no value and no default",
                                "pass an HF config.json with --config, or give a default: config(\"field\", value)".into(),
                            );
                            None
                        }
                    },
                    Some(v) => {
                        let got = json_value(v);
                        if got.is_none() {
                            self.error(
                                fs,
                                format!("config field `{field}` is {v}, not a number, boolean, string or a list of them"),
                                "unsupported value",
                            );
                        }
                        got
                    }
                }
            }
            "assert" => {
                let a = self.bind_args(name, &["cond", "message"], args, span)?;
                let (cv, cs) = a[0].clone()?;
                let (mv, _) = a[1].clone()?;
                let msg = match mv {
                    Value::Str(m) => m,
                    other => other.kind().to_string(),
                };
                match cv {
                    Value::Bool(true) => Some(Value::Bool(true)),
                    Value::Bool(false) => {
                        self.error(span, msg, "this assertion does not hold");
                        None
                    }
                    other => {
                        self.error(
                            cs,
                            format!(
                                "`assert` needs a compile-time boolean, found {}",
                                other.kind()
                            ),
                            "not a compile-time boolean",
                        );
                        None
                    }
                }
            }
            "item" => {
                let a = self.bind_args(name, &["list", "index"], args, span)?;
                let (lv, ls) = a[0].clone()?;
                let Value::List(items) = lv else {
                    self.error(
                        ls,
                        format!("`item` needs a list, found {}", lv.kind()),
                        "expected a list",
                    );
                    return None;
                };
                let i = self.arg_int(&a[1], 0, "the index")?;
                let n = items.len() as i64;
                let k = if i < 0 { i + n } else { i };
                if !(0..n).contains(&k) {
                    self.error(
                        Self::span_of(&a[1], span),
                        format!("index {i} is out of range for a list of {n}"),
                        "out of range",
                    );
                    return None;
                }
                Some(items[k as usize].clone())
            }
            "len" => {
                let a = self.bind_args(name, &["list"], args, span)?;
                match a[0].clone()? {
                    (Value::List(items), _) => Some(Value::int(items.len() as i64)),
                    (other, s) => {
                        self.error(
                            s,
                            format!("`len` needs a list, found {}", other.kind()),
                            "expected a list",
                        );
                        None
                    }
                }
            }
            "is_list" => {
                let a = self.bind_args(name, &["x"], args, span)?;
                let (v, _) = a[0].clone()?;
                Some(Value::Bool(matches!(v, Value::List(_))))
            }
            "rank" => {
                let a = self.bind_args(name, &["x"], args, span)?;
                let x = self.arg_tensor(&a[0], "the argument of `rank`")?;
                Some(Value::int(self.rank_of(x) as i64))
            }
            _ => {
                self.error(span, format!("`{name}` is not implemented"), "here");
                None
            }
        }
    }

    /// Folds a unary op on a compile-time number with the interpreter's own scalar semantics.
    fn fold_unary(&mut self, u: UnaryOp, v: &Value, span: Span, name: &str) -> Option<Value> {
        let folded = num(v).and_then(|x| crate::interp::unary_f(u, x));
        if folded.is_none() {
            self.error(
                span,
                format!("`{name}` needs a tensor argument, found {}", v.kind()),
                "not a tensor",
            );
        }
        folded.map(Value::Float)
    }

    /// A slice bound: a dim expression, negative constants counting from the end `n`.
    fn slice_bound(
        &mut self,
        a: &Option<(Value, Span)>,
        default: DimExpr,
        n: &DimExpr,
    ) -> Option<DimExpr> {
        match a {
            None => Some(default),
            Some((Value::Int(d), _)) => Some(match d.as_const() {
                Some(c) if c < 0 => n.add(&DimExpr::constant(c)),
                _ => d.clone(),
            }),
            Some((Value::Poison, _)) => None,
            Some((v, s)) => {
                self.error(
                    *s,
                    format!("a slice bound must be an integer, found {}", v.kind()),
                    "expected an integer",
                );
                None
            }
        }
    }

    /// The target of `reshape`, resolving one `-1` when it is determined.
    fn reshape_target(
        &mut self,
        x: NodeId,
        a: &Option<(Value, Span)>,
        span: Span,
    ) -> Option<Vec<DimExpr>> {
        let s = Self::span_of(a, span);
        let Some((Value::List(items), _)) = a else {
            return self.arg_shape(a, "the target shape");
        };
        let minus_one = items.iter().filter(|v| **v == Value::int(-1)).count();
        if minus_one == 0 {
            return self.arg_shape(a, "the target shape");
        }
        if minus_one > 1 {
            self.error(s, "`reshape` allows at most one -1".into(), "several -1");
            return None;
        }
        let total = self
            .tensor_type(x)
            .shape
            .iter()
            .fold(DimExpr::constant(1), |p, d| p.mul(d));
        let mut known = DimExpr::constant(1);
        for it in items.iter().filter(|v| **v != Value::int(-1)) {
            known = known.mul(&self.dim_value(it, s, "each entry of the target shape")?);
        }
        let missing = match known.as_const() {
            Some(k) if k > 0 => total.floor_div(k).filter(|q| q.mul(&known) == total),
            _ => None,
        };
        let Some(missing) = missing else {
            self.error(
                s,
                format!(
                    "`reshape` cannot infer -1: {total} elements are not a multiple of {known}"
                ),
                "here",
            );
            return None;
        };
        let mut out = Vec::new();
        for it in items {
            out.push(if *it == Value::int(-1) {
                missing.clone()
            } else {
                self.dim_value(it, s, "a dim")?
            });
        }
        Some(out)
    }
}

/// A config value as a compile-time value: numbers, booleans, strings and lists of them.
fn json_value(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::int(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::Array(xs) => {
            Value::List(xs.iter().map(json_value).collect::<Option<_>>()?)
        }
        // A non-finite float, as `frontend::encode_non_finite` writes it.
        serde_json::Value::Object(m) if m.len() == 1 => match m.get("__float__")?.as_str()? {
            "Infinity" => Value::Float(f64::INFINITY),
            "-Infinity" => Value::Float(f64::NEG_INFINITY),
            "NaN" => Value::Float(f64::NAN),
            _ => return None,
        },
        _ => return None,
    })
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(d) => d.as_const().map(|c| c as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}
