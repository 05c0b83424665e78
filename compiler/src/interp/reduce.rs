//! Reductions over a set of axes: sum, mean and log-sum-exp accumulate in f64; max and min
//! propagate NaN; an empty max or min is an error, an empty log-sum-exp is −∞.

use super::value::{Data, Tensor, offsets, strides};
use crate::ir::ReduceOp;

/// Reduces `x` over the sorted, distinct `axes`.
pub(crate) fn reduce(
    op: ReduceOp,
    x: &Tensor,
    axes: &[usize],
    keepdim: bool,
) -> Result<Tensor, String> {
    let name = crate::ir::op::reduce_name(op);
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= x.shape.len()) {
        return Err(format!(
            "axes {axes:?} are not sorted, distinct axes of {}",
            x.describe()
        ));
    }
    let st = strides(&x.shape);
    let (mut kept, mut kept_st, mut red, mut red_st, mut out_shape) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (i, &d) in x.shape.iter().enumerate() {
        if axes.contains(&i) {
            red.push(d);
            red_st.push(st[i]);
            if keepdim {
                out_shape.push(1);
            }
        } else {
            kept.push(d);
            kept_st.push(st[i]);
            out_shape.push(d);
        }
    }
    let outs = offsets(&kept, &kept_st)?;
    let inner = offsets(&red, &red_st)?;
    let data = match &x.data {
        Data::F(v) => {
            let mut out = Vec::with_capacity(outs.len());
            for &o in &outs {
                let vals = inner.iter().map(|&r| v[o + r]);
                out.push(reduce_f(op, vals, inner.len()).ok_or_else(|| empty(name))?);
            }
            Data::F(out)
        }
        Data::I(v) => {
            let mut out = Vec::with_capacity(outs.len());
            for &o in &outs {
                let vals = inner.iter().map(|&r| v[o + r]);
                out.push(match op {
                    ReduceOp::Sum => vals.fold(0i64, i64::wrapping_add),
                    ReduceOp::Max => vals.max().ok_or_else(|| empty(name))?,
                    ReduceOp::Min => vals.min().ok_or_else(|| empty(name))?,
                    _ => return Err(format!("`{name}` does not accept dtype {}", x.dtype)),
                });
            }
            Data::I(out)
        }
        Data::B(_) => return Err(format!("`{name}` does not accept dtype {}", x.dtype)),
    };
    Tensor::new(x.dtype, out_shape, data)
}

fn empty(name: &str) -> String {
    format!("`{name}` of an empty set of elements (a reduced axis has size 0)")
}

fn reduce_f(op: ReduceOp, vals: impl Iterator<Item = f64> + Clone, n: usize) -> Option<f64> {
    let max = || {
        vals.clone().reduce(|m, v| {
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        })
    };
    Some(match op {
        ReduceOp::Sum => vals.sum(),
        ReduceOp::Mean => vals.sum::<f64>() / n as f64,
        ReduceOp::Max => max()?,
        ReduceOp::Min => vals.reduce(|m, v| {
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.min(v)
            }
        })?,
        ReduceOp::LogSumExp => match max() {
            None => f64::NEG_INFINITY,
            Some(m) if m.is_infinite() || m.is_nan() => m,
            Some(m) => m + vals.map(|v| (v - m).exp()).sum::<f64>().ln(),
        },
    })
}
