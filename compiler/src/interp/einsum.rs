//! Einsum: for every output position, the sum over the contracted letters of the product of
//! the operands, accumulated in f64 (floats) or wrapping i64 (ints).

use super::value::{Data, Tensor, numel, offsets, strides};
use std::collections::BTreeMap;

/// The most multiply-adds one einsum may take (2^40), so that absurd sizes fail fast.
const MAX_WORK: usize = 1 << 40;

/// Evaluates `spec` (e.g. `"bhtd,bhsd->bhts"`) on the operands.
pub(crate) fn einsum(spec: &str, xs: &[&Tensor]) -> Result<Tensor, String> {
    let (lhs, rhs) = spec
        .split_once("->")
        .ok_or_else(|| format!("spec `{spec}` has no `->`"))?;
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let first = xs.first().ok_or("einsum needs an operand")?;
    if terms.len() != xs.len() {
        return Err(format!(
            "spec `{spec}` names {} operands, found {}",
            terms.len(),
            xs.len()
        ));
    }
    // The size of every letter, and the order of the contracted ones.
    let mut size: BTreeMap<char, usize> = BTreeMap::new();
    let mut summed: Vec<char> = Vec::new();
    let out: Vec<char> = rhs.chars().collect();
    for (k, (term, x)) in terms.iter().zip(xs).enumerate() {
        if term.len() != x.shape.len() || x.dtype != first.dtype {
            return Err(format!(
                "term `{}` does not fit operand {} ({})",
                term.iter().collect::<String>(),
                k + 1,
                x.describe()
            ));
        }
        for (i, (&c, &d)) in term.iter().zip(&x.shape).enumerate() {
            if term[..i].contains(&c) {
                return Err(format!(
                    "term `{}` repeats `{c}`",
                    term.iter().collect::<String>()
                ));
            }
            if *size.entry(c).or_insert(d) != d {
                return Err(format!(
                    "letter `{c}` is {} in one operand and {d} in operand {}",
                    size[&c],
                    k + 1
                ));
            }
            if !out.contains(&c) && !summed.contains(&c) {
                summed.push(c);
            }
        }
    }
    let letter_sizes = |ls: &[char]| -> Result<Vec<usize>, String> {
        ls.iter()
            .map(|c| {
                size.get(c)
                    .copied()
                    .ok_or_else(|| format!("output letter `{c}` is in no operand"))
            })
            .collect()
    };
    let out_shape = letter_sizes(&out)?;
    let sum_shape = letter_sizes(&summed)?;
    let (n_out, n_sum) = (numel(&out_shape)?, numel(&sum_shape)?);
    if n_out.saturating_mul(n_sum).saturating_mul(xs.len()) > MAX_WORK {
        return Err(format!(
            "spec `{spec}` would take more than 2^40 multiply-adds"
        ));
    }
    // Per operand: offsets of every output position and of every contracted position.
    let mut out_offs = Vec::with_capacity(xs.len());
    let mut sum_offs = Vec::with_capacity(xs.len());
    for (term, x) in terms.iter().zip(xs) {
        let st = strides(&x.shape);
        let stride_of = |c: &char| term.iter().position(|t| t == c).map_or(0, |p| st[p]);
        out_offs.push(offsets(
            &out_shape,
            &out.iter().map(stride_of).collect::<Vec<_>>(),
        )?);
        sum_offs.push(offsets(
            &sum_shape,
            &summed.iter().map(stride_of).collect::<Vec<_>>(),
        )?);
    }
    let data = match &first.data {
        Data::F(_) => {
            let vs = xs
                .iter()
                .map(|x| x.floats())
                .collect::<Result<Vec<_>, _>>()?;
            Data::F(
                (0..n_out)
                    .map(|p| {
                        (0..n_sum)
                            .map(|s| {
                                (0..xs.len())
                                    .map(|k| vs[k][out_offs[k][p] + sum_offs[k][s]])
                                    .product::<f64>()
                            })
                            .sum()
                    })
                    .collect(),
            )
        }
        Data::I(_) => {
            let vs = xs.iter().map(|x| x.ints()).collect::<Result<Vec<_>, _>>()?;
            Data::I(
                (0..n_out)
                    .map(|p| {
                        (0..n_sum)
                            .map(|s| {
                                (0..xs.len())
                                    .map(|k| vs[k][out_offs[k][p] + sum_offs[k][s]])
                                    .fold(1i64, i64::wrapping_mul)
                            })
                            .fold(0i64, i64::wrapping_add)
                    })
                    .collect(),
            )
        }
        Data::B(_) => return Err(format!("einsum does not accept dtype {}", first.dtype)),
    };
    Tensor::new(first.dtype, out_shape, data)
}
