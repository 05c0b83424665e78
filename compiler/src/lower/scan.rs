//! Lowering of `scan_fn`: the step function is lowered into a graph of its own (the scan's
//! body), whose inputs are the states, one time step of each sequence, and the captures.

use super::args::Bound;
use super::{Ctx, Lowerer, Value};
use crate::ir::{Graph, NodeId, Op, TensorType};
use crate::syntax::Span;
use std::collections::HashMap;

impl<'a> Lowerer<'a> {
    pub(crate) fn scan_fn(&mut self, a: Bound, span: Span) -> Option<Value> {
        let (fv, fs) = a[0].clone()?;
        let Value::Func(fname) = fv else {
            self.error(
                fs,
                format!("`scan_fn` needs a function name first, found {}", fv.kind()),
                "expected a function",
            );
            return None;
        };
        let f = *self.fns.get(&fname)?;
        let init = self.tensor_list(&a[1], "`init`")?;
        let xs = self.tensor_list(&a[2], "`xs`")?;
        let caps = match &a[3] {
            Some(_) => self.tensor_list(&a[3], "`args`")?,
            None => Vec::new(),
        };
        if init.is_empty() || xs.is_empty() {
            self.error(
                span,
                "`scan_fn` needs at least one state in `init` and one sequence in `xs`".into(),
                "in this call",
            );
            return None;
        }
        let ax = self.arg_int(&a[4], 0, "`axis`")?;
        let axis = self.axis(ax, self.rank_of(xs[0]), Self::span_of(&a[4], span))?;
        // Body input types: states as given, one step of each sequence, captures whole.
        let mut body_tys: Vec<TensorType> = init.iter().map(|i| self.tensor_type(*i)).collect();
        for x in &xs {
            let mut t = self.tensor_type(*x);
            if axis >= t.rank() {
                self.error(
                    Self::span_of(&a[2], span),
                    format!("sequence {t} has no axis {axis}"),
                    "bad axis",
                );
                return None;
            }
            t.shape.remove(axis);
            body_tys.push(t);
        }
        body_tys.extend(caps.iter().map(|c| self.tensor_type(*c)));
        // Lower the step function into a fresh graph.
        let generation = self.next_generation;
        self.next_generation += 1;
        let outer = std::mem::replace(
            &mut self.ctx,
            Ctx {
                graph: Graph::new(self.dims.clone()),
                generation,
                consts: HashMap::new(),
            },
        );
        let mut args = Vec::new();
        for (i, t) in body_tys.into_iter().enumerate() {
            let id = self.ctx.graph.add_leaf(
                Op::Input {
                    name: format!("in{i}"),
                },
                t,
            );
            args.push((None, Value::Tensor(id, generation), span));
        }
        self.in_scan_body += 1;
        let out = self.call_user(f, args, None, span);
        self.in_scan_body -= 1;
        let outs: Option<Vec<NodeId>> = match out {
            Value::Tensor(id, g) if g == generation => Some(vec![id]),
            Value::Tuple(vs) => vs
                .into_iter()
                .map(|v| match v {
                    Value::Tensor(id, g) if g == generation => Some(id),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        let mut body = std::mem::replace(&mut self.ctx, outer).graph;
        let Some(outs) = outs else {
            self.error(span, format!("the step function `{fname}` must return its new state: a tensor or a tuple of tensors"), "in this scan");
            return None;
        };
        for (i, o) in outs.iter().enumerate() {
            body.add_output(&format!("s{i}"), *o);
        }
        let n_state = init.len();
        let mut inputs = init;
        inputs.extend(xs.iter().copied());
        inputs.extend(caps);
        let op = Op::ScanFn {
            axis,
            n_state,
            n_xs: xs.len(),
            body: Box::new(body),
        };
        let Value::Tensor(tuple, g) = self.add(op, inputs, span, "`scan_fn`") else {
            return None;
        };
        let mut parts = Vec::new();
        for index in 0..n_state {
            parts.push(self.add(Op::Extract { index }, vec![tuple], span, "`scan_fn`"));
        }
        let _ = g;
        Some(if n_state == 1 {
            parts.pop()?
        } else {
            Value::Tuple(parts)
        })
    }

    fn tensor_list(&mut self, a: &Option<(Value, Span)>, what: &str) -> Option<Vec<NodeId>> {
        let (v, s) = a.as_ref()?;
        let items = match v {
            Value::List(items) => items.clone(),
            Value::Tensor(..) => vec![v.clone()],
            Value::Poison => return None,
            other => {
                self.error(
                    *s,
                    format!("{what} must be a list of tensors, found {}", other.kind()),
                    "expected `[a, b, …]`",
                );
                return None;
            }
        };
        let mut out = Vec::new();
        for it in items {
            out.push(self.arg_tensor(&Some((it, *s)), &format!("each entry of {what}"))?);
        }
        Some(out)
    }
}
