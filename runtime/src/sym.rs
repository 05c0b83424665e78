//! Symbolic sizes as the runtime sees them: a small expression tree over named dims,
//! serialised in manifests and evaluated once a call's dims are bound. The compiler converts
//! its canonical polynomials into this form; the runtime needs nothing else to size buffers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An integer expression over named dims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymExpr {
    Const(i64),
    Dim(String),
    Add(Vec<SymExpr>),
    Mul(Vec<SymExpr>),
    /// Floor division by a positive constant.
    FloorDiv(Box<SymExpr>, i64),
    /// Remainder (non-negative) by a positive constant.
    Mod(Box<SymExpr>, i64),
}

/// Values of named dims.
pub type DimValues = BTreeMap<String, i64>;

impl SymExpr {
    /// The value under `dims`; the error names the first unbound dim or the bad divisor.
    pub fn eval(&self, dims: &DimValues) -> Result<i64, String> {
        Ok(match self {
            SymExpr::Const(c) => *c,
            SymExpr::Dim(d) => *dims
                .get(d)
                .ok_or_else(|| format!("dim `{d}` is not bound"))?,
            SymExpr::Add(xs) => xs.iter().try_fold(0i64, |a, x| {
                Ok::<_, String>(a.saturating_add(x.eval(dims)?))
            })?,
            SymExpr::Mul(xs) => xs.iter().try_fold(1i64, |a, x| {
                Ok::<_, String>(a.saturating_mul(x.eval(dims)?))
            })?,
            SymExpr::FloorDiv(x, d) | SymExpr::Mod(x, d) if *d <= 0 => {
                return Err(format!("division by {d} in a size expression"));
            }
            SymExpr::FloorDiv(x, d) => x.eval(dims)?.div_euclid(*d),
            SymExpr::Mod(x, d) => x.eval(dims)?.rem_euclid(*d),
        })
    }

    /// The dim name if the expression is exactly one dim.
    pub fn as_dim(&self) -> Option<&str> {
        match self {
            SymExpr::Dim(d) => Some(d),
            _ => None,
        }
    }
}

impl std::fmt::Display for SymExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |f: &mut std::fmt::Formatter<'_>, xs: &[SymExpr], sep: &str| {
            f.write_str("(")?;
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(")")
        };
        match self {
            SymExpr::Const(c) => write!(f, "{c}"),
            SymExpr::Dim(d) => f.write_str(d),
            SymExpr::Add(xs) => join(f, xs, " + "),
            SymExpr::Mul(xs) => join(f, xs, "*"),
            SymExpr::FloorDiv(x, d) => write!(f, "({x} / {d})"),
            SymExpr::Mod(x, d) => write!(f, "({x} % {d})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_and_names_unbound_dims() {
        // 2*T + (T / 4), at T = 9: 18 + 2.
        let t = || SymExpr::Dim("T".into());
        let e = SymExpr::Add(vec![
            SymExpr::Mul(vec![SymExpr::Const(2), t()]),
            SymExpr::FloorDiv(Box::new(t()), 4),
        ]);
        let dims: DimValues = [("T".to_string(), 9)].into_iter().collect();
        assert_eq!(e.eval(&dims), Ok(20));
        assert_eq!(SymExpr::Mod(Box::new(t()), 4).eval(&dims), Ok(1));
        let err = e.eval(&DimValues::new()).unwrap_err();
        assert!(err.contains("`T`"), "{err}");
    }
}
