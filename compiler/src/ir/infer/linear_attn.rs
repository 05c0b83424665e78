//! Type rule of `linear_attn` (the chunked causal linear-attention operator, `ir/op.rs`):
//! q, k: [..., T, K]; v: [..., T, V]; optional g: [..., T] or [..., T, K]; all of one float
//! dtype, the leading dims equal (no broadcasting); out: [..., T, V].

use super::{R, fmt_shape, need_float};
use crate::ir::op::Op;
use crate::ir::types::{TensorType, Type};

pub(super) fn infer(op: &Op, chunk: usize, inputs: &[&Type]) -> R<TensorType> {
    if chunk == 0 {
        return Err("`linear_attn` chunk must be at least 1, found 0".into());
    }
    if inputs.len() != 3 && inputs.len() != 4 {
        return Err(format!(
            "`{}` takes 3 or 4 operands (q, k, v[, g]), found {}",
            op.name(),
            inputs.len()
        ));
    }
    let names = ["q", "k", "v", "g"];
    let mut ts = Vec::with_capacity(inputs.len());
    for (t, name) in inputs.iter().zip(names) {
        let t = t.tensor().ok_or_else(|| {
            format!("`linear_attn` {name} is a tuple; take an element of it first")
        })?;
        need_float(t, "linear_attn")?;
        ts.push(t);
    }
    let (q, k, v) = (ts[0], ts[1], ts[2]);
    if q.rank() < 2 {
        return Err(format!("`linear_attn` q must be [..., T, K], found {q}"));
    }
    let lead = &q.shape[..q.rank() - 1];
    let bad = |name: &str, want: String, found: &TensorType| -> R<TensorType> {
        Err(format!(
            "`linear_attn` {name} must be {want}, found {found}"
        ))
    };
    for (name, t) in [("k", k), ("v", v)] {
        if t.dtype != q.dtype {
            return bad(name, format!("{} like q", q.dtype), t);
        }
    }
    if k.shape != q.shape {
        return bad("k", format!("{q} like q"), k);
    }
    if v.rank() != q.rank() || v.shape[..v.rank() - 1] != *lead {
        return bad("v", format!("{}[{}, V]", q.dtype, shape_list(lead)), v);
    }
    if let Some(g) = ts.get(3) {
        let per_step = g.shape.as_slice() == lead;
        if g.dtype != q.dtype || !(per_step || g.shape == q.shape) {
            return bad(
                "g",
                format!(
                    "{}{} or {}{}",
                    q.dtype,
                    fmt_shape(lead),
                    q.dtype,
                    fmt_shape(&q.shape)
                ),
                g,
            );
        }
    }
    let mut out = lead.to_vec();
    out.push(v.shape[v.rank() - 1].clone());
    Ok(TensorType::new(q.dtype, out))
}

fn shape_list(s: &[crate::ir::DimExpr]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    parts.join(", ")
}
