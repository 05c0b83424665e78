//! `linear_attn`: causal linear attention with an optional per-step or per-channel decay,
//! evaluated by the chunked algorithm with the node's chunk size (`ir/op.rs` states the
//! values). For each chunk of C steps starting at c₀, with A_i = Σ_{c₀≤j≤c₀+i} g_j the decay
//! relative to the chunk's start (A_{−1} = 0) and S the [K, V] state of the steps before c₀:
//!   out_i = Σ_c q_ic e^{A_ic} S[c, :] + Σ_{j≤i} Σ_c q_ic k_jc e^{A_ic − A_jc} v_j
//! (strict: A_{i−1} in place of A_i and j < i), then
//!   S ← e^{A_{L−1}} ⊙ S + Σ_j e^{A_{L−1} − A_j} k_jᵀ v_j.
//! Every exponent is a sum of g's over steps in order, so with g ≤ 0 (a decay) none exceeds
//! 0: the quadratic form never computes e^{+large}. Accumulation in f64; the result is
//! rounded to the dtype once.

use super::value::{Data, Tensor};

pub(crate) fn linear_attn(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: Option<&Tensor>,
    chunk: usize,
    strict: bool,
) -> Result<Tensor, String> {
    let r = q.shape.len();
    let shapes_ok = r >= 2
        && k.shape == q.shape
        && v.shape.len() == r
        && v.shape[..r - 1] == q.shape[..r - 1]
        && g.is_none_or(|g| g.shape == q.shape || g.shape == q.shape[..r - 1]);
    if !shapes_ok || chunk == 0 {
        return Err(format!(
            "takes q, k: [..., T, K], v: [..., T, V], g: [..., T] or [..., T, K] and a chunk \
             ≥ 1, found q {}, k {}, v {}{}, chunk {chunk}",
            q.describe(),
            k.describe(),
            v.describe(),
            g.map_or(String::new(), |g| format!(", g {}", g.describe()))
        ));
    }
    let (len, kd, vd) = (q.shape[r - 2], q.shape[r - 1], v.shape[r - 1]);
    let outer: usize = q.shape[..r - 2].iter().product();
    let (qv, kv, vv) = (q.floats()?, k.floats()?, v.floats()?);
    let gv = g.map(|g| g.floats()).transpose()?;
    let per_channel = g.is_some_and(|g| g.shape.len() == r);
    // g of step t (absolute, within batch element o) and channel c.
    let gat = |o: usize, t: usize, c: usize| -> f64 {
        match gv {
            None => 0.0,
            Some(gv) if per_channel => gv[(o * len + t) * kd + c],
            Some(gv) => gv[o * len + t],
        }
    };
    let mut out = vec![0.0; outer * len * vd];
    for o in 0..outer {
        let mut state = vec![0.0f64; kd * vd];
        let mut c0 = 0;
        while c0 < len {
            let l = chunk.min(len - c0);
            // a[i + 1][c] = A_ic; a[0][c] = 0 (the chunk's start).
            let mut a: Vec<Vec<f64>> = Vec::with_capacity(l + 1);
            a.push(vec![0.0; kd]);
            for i in 0..l {
                let next = a[i]
                    .iter()
                    .enumerate()
                    .map(|(c, x)| x + gat(o, c0 + i, c))
                    .collect();
                a.push(next);
            }
            let row = |t: usize, d: usize| (o * len + t) * d;
            for i in 0..l {
                // The decay position the query reads at: A_i, or A_{i−1} when strict.
                let ai = &a[if strict { i } else { i + 1 }];
                let (qo, oo) = (row(c0 + i, kd), row(c0 + i, vd));
                for c in 0..kd {
                    let w = qv[qo + c] * ai[c].exp();
                    for e in 0..vd {
                        out[oo + e] += w * state[c * vd + e];
                    }
                }
                let last = if strict { i } else { i + 1 };
                for j in 0..last {
                    let ko = row(c0 + j, kd);
                    let aj = &a[j + 1];
                    let s: f64 = (0..kd)
                        .map(|c| qv[qo + c] * kv[ko + c] * (ai[c] - aj[c]).exp())
                        .sum();
                    let vo = row(c0 + j, vd);
                    for e in 0..vd {
                        out[oo + e] += s * vv[vo + e];
                    }
                }
            }
            let al = &a[l];
            for c in 0..kd {
                let d = al[c].exp();
                for e in 0..vd {
                    state[c * vd + e] *= d;
                }
            }
            for j in 0..l {
                let (ko, vo) = (row(c0 + j, kd), row(c0 + j, vd));
                for c in 0..kd {
                    let w = kv[ko + c] * (al[c] - a[j + 1][c]).exp();
                    for e in 0..vd {
                        state[c * vd + e] += w * vv[vo + e];
                    }
                }
            }
            c0 += l;
        }
    }
    let mut shape = q.shape[..r - 1].to_vec();
    shape.push(vd);
    Tensor::new(q.dtype, shape, Data::F(out))
}
