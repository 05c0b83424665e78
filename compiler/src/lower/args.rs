//! Argument binding for built-in operations: positional and keyword arguments matched to a
//! signature, and typed getters that report what was expected and what was found.

use super::{Lowerer, Value};
use crate::ir::{DimExpr, Distribution, NodeId};
use crate::syntax::Span;
use crate::syntax::ast::Ident;
use seqc_runtime::DType;

/// Arguments matched to a signature: `None` for an optional one not given.
pub(crate) type Bound = Vec<Option<(Value, Span)>>;

impl<'a> Lowerer<'a> {
    /// Matches `args` to `sig` (names; a trailing `?` marks an optional parameter).
    pub(crate) fn bind_args(
        &mut self,
        name: &str,
        sig: &[&str],
        args: Vec<(Option<Ident>, Value, Span)>,
        span: Span,
    ) -> Option<Bound> {
        let mut out: Bound = vec![None; sig.len()];
        let names: Vec<&str> = sig.iter().map(|s| s.trim_end_matches('?')).collect();
        let mut ok = true;
        let mut npos = 0;
        for (kw, v, s) in args {
            if v == Value::Poison {
                ok = false;
            }
            let slot = match kw {
                None => {
                    npos += 1;
                    if npos > sig.len() {
                        self.error(
                            s,
                            format!(
                                "`{name}` takes at most {} argument(s): {}",
                                sig.len(),
                                names.join(", ")
                            ),
                            "extra argument",
                        );
                        ok = false;
                        continue;
                    }
                    npos - 1
                }
                Some(k) => match names.iter().position(|n| *n == k.name) {
                    Some(i) => i,
                    None => {
                        self.error(
                            k.span,
                            format!(
                                "`{name}` has no argument `{}`; its arguments are {}",
                                k.name,
                                names.join(", ")
                            ),
                            "unknown argument",
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if out[slot].is_some() {
                self.error(
                    s,
                    format!("argument `{}` of `{name}` is given twice", names[slot]),
                    "given again",
                );
                ok = false;
            }
            out[slot] = Some((v, s));
        }
        for (i, s) in sig.iter().enumerate() {
            if !s.ends_with('?') && out[i].is_none() {
                self.error(
                    span,
                    format!("`{name}` is missing its argument `{}`", names[i]),
                    "in this call",
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    pub(crate) fn arg_tensor(&mut self, a: &Option<(Value, Span)>, what: &str) -> Option<NodeId> {
        let (v, s) = a.as_ref()?;
        match v {
            Value::Tensor(id, g) => Some(self.own(*id, *g, *s)),
            Value::Poison => None,
            other => {
                self.error(
                    *s,
                    format!("{what} must be a tensor, found {}", other.kind()),
                    "expected a tensor",
                );
                None
            }
        }
    }

    pub(crate) fn arg_int(
        &mut self,
        a: &Option<(Value, Span)>,
        default: i64,
        what: &str,
    ) -> Option<i64> {
        match a {
            None => Some(default),
            Some((v, s)) => self.const_int(v, *s, what),
        }
    }

    pub(crate) fn arg_bool(
        &mut self,
        a: &Option<(Value, Span)>,
        default: bool,
        what: &str,
    ) -> Option<bool> {
        match a {
            None => Some(default),
            Some((Value::Bool(b), _)) => Some(*b),
            Some((Value::Poison, _)) => None,
            Some((v, s)) => {
                self.error(
                    *s,
                    format!("{what} must be `true` or `false`, found {}", v.kind()),
                    "expected a boolean",
                );
                None
            }
        }
    }

    /// `randn`'s `generator`: `"seqc"` (the default, the project's RNG) or `"torch"`
    /// (PyTorch's CPU `torch.randn` after `torch.manual_seed(seed)`).
    pub(crate) fn arg_generator(&mut self, a: &Option<(Value, Span)>) -> Option<Distribution> {
        match a {
            None => Some(Distribution::Normal),
            Some((Value::Str(g), _)) if g == "seqc" => Some(Distribution::Normal),
            Some((Value::Str(g), _)) if g == "torch" => Some(Distribution::TorchNormal),
            Some((Value::Poison, _)) => None,
            Some((v, s)) => {
                let found = match v {
                    Value::Str(g) => format!("\"{g}\""),
                    v => v.kind().to_string(),
                };
                self.error(
                    *s,
                    format!("`generator` of `randn` must be \"seqc\" or \"torch\", found {found}"),
                    "unknown generator",
                );
                None
            }
        }
    }

    pub(crate) fn arg_dtype(&mut self, a: &Option<(Value, Span)>, default: DType) -> Option<DType> {
        match a {
            None => Some(default),
            Some((Value::DType(d), _)) => Some(*d),
            Some((Value::Poison, _)) => None,
            Some((v, s)) => {
                self.error(
                    *s,
                    format!(
                        "expected a dtype (f32, f16, bf16, i32, i64, bool), found {}",
                        v.kind()
                    ),
                    "not a dtype",
                );
                None
            }
        }
    }

    /// A symbolic-or-constant dimension value (≥ 0).
    pub(crate) fn arg_dim(
        &mut self,
        a: &Option<(Value, Span)>,
        default: DimExpr,
        what: &str,
    ) -> Option<DimExpr> {
        match a {
            None => Some(default),
            Some((v, s)) => self.dim_value(v, *s, what),
        }
    }

    /// A list of dimensions such as `[B, T, 4]`.
    pub(crate) fn arg_shape(
        &mut self,
        a: &Option<(Value, Span)>,
        what: &str,
    ) -> Option<Vec<DimExpr>> {
        let (v, s) = a.as_ref()?;
        match v {
            Value::List(items) => {
                let mut out = Vec::new();
                for it in items {
                    out.push(self.dim_value(it, *s, &format!("each entry of {what}"))?);
                }
                Some(out)
            }
            Value::Poison => None,
            other => {
                self.error(
                    *s,
                    format!(
                        "{what} must be a list like `[B, T, 64]`, found {}",
                        other.kind()
                    ),
                    "expected a list",
                );
                None
            }
        }
    }

    /// A list of constant integers such as a permutation.
    pub(crate) fn arg_ints(&mut self, a: &Option<(Value, Span)>, what: &str) -> Option<Vec<i64>> {
        let (v, s) = a.as_ref()?;
        match v {
            Value::List(items) => {
                let mut out = Vec::new();
                for it in items {
                    out.push(self.const_int(it, *s, &format!("each entry of {what}"))?);
                }
                Some(out)
            }
            Value::Poison => None,
            other => {
                self.error(
                    *s,
                    format!("{what} must be a list of integers, found {}", other.kind()),
                    "expected a list",
                );
                None
            }
        }
    }

    /// Normalises a possibly negative axis against `rank`.
    pub(crate) fn axis(&mut self, axis: i64, rank: usize, span: Span) -> Option<usize> {
        let r = rank as i64;
        if axis < -r || axis >= r {
            self.error(
                span,
                format!(
                    "axis {axis} is out of range for a tensor of rank {rank} (valid: {} to {})",
                    -r,
                    r - 1
                ),
                "bad axis",
            );
            return None;
        }
        Some(if axis < 0 {
            (axis + r) as usize
        } else {
            axis as usize
        })
    }

    pub(crate) fn rank_of(&self, id: NodeId) -> usize {
        self.tensor_type(id).rank()
    }

    pub(crate) fn span_of(a: &Option<(Value, Span)>, call: Span) -> Span {
        a.as_ref().map_or(call, |(_, s)| *s)
    }
}
