//! Recurrences along a time axis: the linear scan, the matrix scan, the general scan whose
//! step is a body graph, and the depthwise causal convolution. Each carried state is rounded
//! to the dtype when produced, as a backend that materialises every step would.

use super::value::{Data, Tensor, broadcast_offsets, numel, round_f, split_axis};
use super::{Ctx, InterpError, OpError, eval_graph};
use crate::ir::{Graph, NodeId};

/// `shape` without `axis`.
fn without(shape: &[usize], axis: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.remove(axis);
    s
}

fn check_h0(h0: Option<&Tensor>, b: &Tensor, want: &[usize]) -> Result<(), String> {
    match h0 {
        Some(h) if h.shape != want || h.dtype != b.dtype => Err(format!(
            "the initial state must be {}, found {}",
            super::value::describe(b.dtype, want),
            h.describe()
        )),
        _ => Ok(()),
    }
}

/// h_t = a_t ⊙ h_{t−1} + b_t along `axis`, from h0 (zeros when absent).
pub(crate) fn scan(
    a: &Tensor,
    b: &Tensor,
    h0: Option<&Tensor>,
    axis: usize,
    reverse: bool,
) -> Result<Tensor, String> {
    let (bv, av) = (b.floats()?, a.floats()?);
    if a.dtype != b.dtype {
        return Err(format!("decay is {}, input is {}", a.dtype, b.dtype));
    }
    let aoff = broadcast_offsets(&a.shape, &b.shape)?;
    let (outer, len, inner) = split_axis(&b.shape, axis)?;
    check_h0(h0, b, &without(&b.shape, axis))?;
    let h0v = h0.map(|h| h.floats()).transpose()?;
    let mut out = vec![0.0; bv.len()];
    for o in 0..if bv.is_empty() { 0 } else { outer } {
        for i in 0..inner {
            let mut h = h0v.map_or(0.0, |v| v[o * inner + i]);
            for step in 0..len {
                let t = if reverse { len - 1 - step } else { step };
                let k = (o * len + t) * inner + i;
                h = round_f(b.dtype, av[aoff[k]] * h + bv[k]);
                out[k] = h;
            }
        }
    }
    Tensor::new(b.dtype, b.shape.clone(), Data::F(out))
}

/// h_t[n] = Σ_m a_t[n, m] h_{t−1}[m] + b_t[n]; a: [..., T, N, N], b: [..., T, N].
pub(crate) fn scan_matrix(
    a: &Tensor,
    b: &Tensor,
    h0: Option<&Tensor>,
    axis: usize,
) -> Result<Tensor, String> {
    let (bv, av) = (b.floats()?, a.floats()?);
    let r = b.shape.len();
    if r < 2 || axis != r - 2 {
        return Err(format!(
            "the input must be [..., T, N] with time axis {axis}, found {}",
            b.describe()
        ));
    }
    let (outer, len, n) = (
        b.shape[..axis].iter().product::<usize>(),
        b.shape[axis],
        b.shape[r - 1],
    );
    let mut want = b.shape.clone();
    want.push(n);
    if a.shape != want || a.dtype != b.dtype {
        return Err(format!(
            "the transition must be {}, found {}",
            super::value::describe(b.dtype, &want),
            a.describe()
        ));
    }
    check_h0(h0, b, &without(&b.shape, axis))?;
    let h0v = h0.map(|h| h.floats()).transpose()?;
    let mut out = vec![0.0; bv.len()];
    for o in 0..if bv.is_empty() { 0 } else { outer } {
        let mut h: Vec<f64> = h0v.map_or(vec![0.0; n], |v| v[o * n..(o + 1) * n].to_vec());
        for t in 0..len {
            let (bo, ao) = ((o * len + t) * n, (o * len + t) * n * n);
            let next: Vec<f64> = (0..n)
                .map(|i| {
                    let s: f64 = (0..n).map(|m| av[ao + i * n + m] * h[m]).sum();
                    round_f(b.dtype, s + bv[bo + i])
                })
                .collect();
            out[bo..bo + n].copy_from_slice(&next);
            h = next;
        }
    }
    Tensor::new(b.dtype, b.shape.clone(), Data::F(out))
}

/// out[..., t, c] = Σ_{k<K} w[c, k] · x[..., t − (K−1) + k, c], zeros before t = 0.
pub(crate) fn conv1d_causal(x: &Tensor, w: &Tensor) -> Result<Tensor, String> {
    let (xv, wv) = (x.floats()?, w.floats()?);
    let r = x.shape.len();
    if r < 2 || w.shape.len() != 2 || w.shape[0] != x.shape[r - 1] || w.dtype != x.dtype {
        return Err(format!(
            "takes x: [..., T, C] and w: [C, K], found {} and {}",
            x.describe(),
            w.describe()
        ));
    }
    let (len, c, k) = (x.shape[r - 2], x.shape[r - 1], w.shape[1]);
    let outer: usize = x.shape[..r - 2].iter().product();
    let mut out = vec![0.0; xv.len()];
    for o in 0..if xv.is_empty() { 0 } else { outer } {
        for t in 0..len {
            for ch in 0..c {
                let mut s = 0.0;
                for j in 0..k {
                    // Source time t − (K−1) + j, skipped while negative.
                    if let Some(src) = (t + j).checked_sub(k - 1) {
                        s += wv[ch * k + j] * xv[(o * len + src) * c + ch];
                    }
                }
                out[(o * len + t) * c + ch] = s;
            }
        }
    }
    Tensor::new(x.dtype, x.shape.clone(), Data::F(out))
}

/// The general scan: runs `body` once per step of the `xs` along `axis` and returns every
/// state stacked along `axis`.
pub(crate) fn scan_fn(
    ops: &[&Tensor],
    axis: usize,
    n_state: usize,
    n_xs: usize,
    body: &Graph,
    ctx: &Ctx,
    id: NodeId,
) -> Result<Vec<Tensor>, OpError> {
    let n_body = body.inputs().count();
    if n_state == 0 || n_xs == 0 || ops.len() < n_state + n_xs || n_body != ops.len() {
        return Err(format!(
            "{n_state} states, {n_xs} sequences and {} operands for a body with {n_body} inputs",
            ops.len()
        )
        .into());
    }
    let seqs = &ops[n_state..n_state + n_xs];
    let len = split_axis(&seqs[0].shape, axis)?.1;
    for s in seqs {
        if split_axis(&s.shape, axis)?.1 != len {
            return Err(format!(
                "sequences {} and {} differ in length",
                seqs[0].describe(),
                s.describe()
            )
            .into());
        }
    }
    let mut states: Vec<Tensor> = ops[..n_state].iter().map(|&t| t.clone()).collect();
    let mut history: Vec<Vec<Tensor>> = vec![Vec::with_capacity(len); n_state];
    for t in 0..len {
        let mut inputs = states.clone();
        for s in seqs {
            inputs.push(step_slice(s, axis, t)?);
        }
        inputs.extend(ops[n_state + n_xs..].iter().map(|&c| c.clone()));
        let outs = eval_graph(body, ctx, Some(&inputs)).map_err(|e| {
            OpError::Nested(InterpError::Eval {
                node: id.to_string(),
                op: "scan_fn",
                msg: format!("at step {t}, in the body: {e}"),
            })
        })?;
        if outs.len() != n_state {
            return Err(format!(
                "the body returned {} values for {n_state} states",
                outs.len()
            )
            .into());
        }
        for (k, (new, old)) in outs.iter().zip(&states).enumerate() {
            if new.dtype != old.dtype || new.shape != old.shape {
                return Err(format!(
                    "the body returned {} for state {k}, which is {}",
                    new.describe(),
                    old.describe()
                )
                .into());
            }
        }
        for (h, s) in history.iter_mut().zip(&outs) {
            h.push(s.clone());
        }
        states = outs;
    }
    let mut result = Vec::with_capacity(n_state);
    for (init, hist) in ops[..n_state].iter().zip(history) {
        result.push(stack(init, &hist, axis, len)?);
    }
    Ok(result)
}

/// Element `t` of `x` along `axis`, with that axis removed.
fn step_slice(x: &Tensor, axis: usize, t: usize) -> Result<Tensor, String> {
    let (outer, len, inner) = split_axis(&x.shape, axis)?;
    let mut idx = Vec::with_capacity(outer * inner);
    for o in 0..if inner == 0 { 0 } else { outer } {
        idx.extend((0..inner).map(|i| (o * len + t) * inner + i));
    }
    Tensor::new(x.dtype, without(&x.shape, axis), x.data.pick(&idx)?)
}

/// Stacks `len` tensors shaped like `like` along a new axis `axis`.
fn stack(like: &Tensor, steps: &[Tensor], axis: usize, len: usize) -> Result<Tensor, String> {
    if axis > like.shape.len() {
        return Err(format!(
            "axis {axis} is out of range for state {}",
            like.describe()
        ));
    }
    let mut shape = like.shape.clone();
    shape.insert(axis, len);
    let total = numel(&shape)?;
    let outer: usize = like.shape[..axis].iter().product();
    let inner: usize = like.shape[axis..].iter().product();
    let mut all = super::value::empty_for(like.dtype);
    for s in steps {
        all.append(&s.data)?;
    }
    let mut idx = Vec::with_capacity(total);
    for o in 0..if total == 0 { 0 } else { outer } {
        for t in 0..len {
            idx.extend((0..inner).map(|i| (t * outer + o) * inner + i));
        }
    }
    Tensor::new(like.dtype, shape, all.pick(&idx)?)
}
