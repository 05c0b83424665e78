//! Symbolic dimensions: integer polynomials over named dims bound at run time (`B`, `T`),
//! with floor division and remainder by constants kept as opaque atoms.
//!
//! Invariant: a `DimExpr` is always in canonical form (terms sorted, no zero coefficients,
//! constant divisions folded), so structural equality is semantic equality of polynomials.

use std::collections::BTreeMap;
use std::fmt;

/// An indivisible factor of a monomial.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    /// A named dimension bound at run time.
    Sym(String),
    /// `floor(e / d)` for a positive constant `d` that does not divide `e` exactly.
    FloorDiv(Box<DimExpr>, i64),
    /// `e mod d` for a positive constant `d`.
    Mod(Box<DimExpr>, i64),
}

/// A monomial: atoms with positive exponents, sorted.
pub type Monomial = Vec<(Atom, u32)>;

/// A canonical integer polynomial over [`Atom`]s.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DimExpr {
    terms: BTreeMap<Monomial, i64>,
}

/// Values for the symbolic dims of a graph.
pub type DimBindings = BTreeMap<String, i64>;

impl DimExpr {
    pub fn constant(c: i64) -> Self {
        let mut terms = BTreeMap::new();
        if c != 0 {
            terms.insert(Vec::new(), c);
        }
        DimExpr { terms }
    }

    pub fn sym(name: &str) -> Self {
        Self::atom(Atom::Sym(name.to_string()))
    }

    fn atom(a: Atom) -> Self {
        let mut terms = BTreeMap::new();
        terms.insert(vec![(a, 1)], 1);
        DimExpr { terms }
    }

    /// The value if the expression has no symbols.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// The terms as (monomial, coefficient), in canonical order.
    pub fn terms(&self) -> impl Iterator<Item = (&Monomial, i64)> {
        self.terms.iter().map(|(m, c)| (m, *c))
    }

    pub fn is_const(&self) -> bool {
        self.as_const().is_some()
    }

    /// Names of every symbol that occurs, sorted.
    pub fn symbols(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        self.collect_symbols(&mut out);
        out.into_iter().collect()
    }

    fn collect_symbols(&self, out: &mut std::collections::BTreeSet<String>) {
        for m in self.terms.keys() {
            for (a, _) in m {
                match a {
                    Atom::Sym(s) => {
                        out.insert(s.clone());
                    }
                    Atom::FloorDiv(e, _) | Atom::Mod(e, _) => e.collect_symbols(out),
                }
            }
        }
    }

    pub fn add(&self, o: &DimExpr) -> DimExpr {
        let mut terms = self.terms.clone();
        for (m, c) in &o.terms {
            let e = terms.entry(m.clone()).or_insert(0);
            *e = e.saturating_add(*c);
            if *e == 0 {
                terms.remove(m);
            }
        }
        DimExpr { terms }
    }

    pub fn neg(&self) -> DimExpr {
        DimExpr {
            terms: self
                .terms
                .iter()
                .map(|(m, c)| (m.clone(), c.saturating_neg()))
                .collect(),
        }
    }

    pub fn sub(&self, o: &DimExpr) -> DimExpr {
        self.add(&o.neg())
    }

    pub fn mul(&self, o: &DimExpr) -> DimExpr {
        let mut terms: BTreeMap<Monomial, i64> = BTreeMap::new();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &o.terms {
                let m = mul_monomials(m1, m2);
                let e = terms.entry(m.clone()).or_insert(0);
                *e = e.saturating_add(c1.saturating_mul(*c2));
                if *e == 0 {
                    terms.remove(&m);
                }
            }
        }
        DimExpr { terms }
    }

    /// `floor(self / d)`; `None` if `d <= 0`.
    pub fn floor_div(&self, d: i64) -> Option<DimExpr> {
        if d <= 0 {
            return None;
        }
        if let Some(c) = self.as_const() {
            return Some(DimExpr::constant(c.div_euclid(d)));
        }
        if d == 1 {
            return Some(self.clone());
        }
        if self.terms.values().all(|c| c % d == 0) {
            return Some(DimExpr {
                terms: self.terms.iter().map(|(m, c)| (m.clone(), c / d)).collect(),
            });
        }
        Some(Self::atom(Atom::FloorDiv(Box::new(self.clone()), d)))
    }

    /// `self mod d`; `None` if `d <= 0`.
    pub fn modulo(&self, d: i64) -> Option<DimExpr> {
        if d <= 0 {
            return None;
        }
        if let Some(c) = self.as_const() {
            return Some(DimExpr::constant(c.rem_euclid(d)));
        }
        if self.terms.values().all(|c| c % d == 0) {
            return Some(DimExpr::constant(0));
        }
        Some(Self::atom(Atom::Mod(Box::new(self.clone()), d)))
    }

    /// `ceil(self / d)`.
    pub fn ceil_div(&self, d: i64) -> Option<DimExpr> {
        self.add(&DimExpr::constant(d - 1)).floor_div(d)
    }

    /// Evaluates under `b`; errors name the first unbound symbol.
    pub fn eval(&self, b: &DimBindings) -> Result<i64, String> {
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v = *c;
            for (a, p) in m {
                let x = match a {
                    Atom::Sym(s) => *b.get(s).ok_or_else(|| s.clone())?,
                    Atom::FloorDiv(e, d) => e.eval(b)?.div_euclid(*d),
                    Atom::Mod(e, d) => e.eval(b)?.rem_euclid(*d),
                };
                for _ in 0..*p {
                    v = v.saturating_mul(x);
                }
            }
            total = total.saturating_add(v);
        }
        Ok(total)
    }

    /// Replaces symbols by expressions.
    pub fn substitute(&self, map: &BTreeMap<String, DimExpr>) -> DimExpr {
        let mut out = DimExpr::constant(0);
        for (m, c) in &self.terms {
            let mut t = DimExpr::constant(*c);
            for (a, p) in m {
                let x = match a {
                    Atom::Sym(s) => map.get(s).cloned().unwrap_or_else(|| DimExpr::sym(s)),
                    Atom::FloorDiv(e, d) => e.substitute(map).floor_div(*d).expect("d > 0"),
                    Atom::Mod(e, d) => e.substitute(map).modulo(*d).expect("d > 0"),
                };
                for _ in 0..*p {
                    t = t.mul(&x);
                }
            }
            out = out.add(&t);
        }
        out
    }
}

fn mul_monomials(a: &Monomial, b: &Monomial) -> Monomial {
    let mut map: BTreeMap<Atom, u32> = BTreeMap::new();
    for (x, p) in a.iter().chain(b.iter()) {
        *map.entry(x.clone()).or_insert(0) += p;
    }
    map.into_iter().collect()
}

impl From<i64> for DimExpr {
    fn from(c: i64) -> Self {
        DimExpr::constant(c)
    }
}

fn fmt_atom(a: &Atom, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match a {
        Atom::Sym(s) => f.write_str(s),
        Atom::FloorDiv(e, d) if e.terms.len() > 1 => write!(f, "(({e}) / {d})"),
        Atom::FloorDiv(e, d) => write!(f, "({e} / {d})"),
        Atom::Mod(e, d) if e.terms.len() > 1 => write!(f, "(({e}) % {d})"),
        Atom::Mod(e, d) => write!(f, "({e} % {d})"),
    }
}

/// Prints in a form the spec language and the IR text parser read back:
/// e.g. `B*T + 3`, `2*T - 1`, `(T + 63) / 64`.
impl fmt::Display for DimExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // Highest-degree terms first, constant last.
        let mut terms: Vec<(&Monomial, &i64)> = self.terms.iter().collect();
        terms.sort_by_key(|(m, _)| std::cmp::Reverse(m.iter().map(|(_, p)| *p).sum::<u32>()));
        for (i, (m, c)) in terms.iter().enumerate() {
            let (neg, mag) = (**c < 0, c.unsigned_abs());
            if i == 0 {
                if neg {
                    f.write_str("-")?;
                }
            } else {
                f.write_str(if neg { " - " } else { " + " })?;
            }
            if m.is_empty() {
                write!(f, "{mag}")?;
                continue;
            }
            if mag != 1 {
                write!(f, "{mag}*")?;
            }
            for (j, (a, p)) in m.iter().enumerate() {
                if j > 0 {
                    f.write_str("*")?;
                }
                for k in 0..*p {
                    if k > 0 {
                        f.write_str("*")?;
                    }
                    fmt_atom(a, f)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_equality() {
        let b = DimExpr::sym("B");
        let t = DimExpr::sym("T");
        let x = b.mul(&t).mul(&DimExpr::constant(64));
        let y = t
            .mul(&DimExpr::constant(16))
            .mul(&b)
            .mul(&DimExpr::constant(4));
        assert_eq!(x, y);
        assert_eq!(x.to_string(), "64*B*T");
        assert_eq!(t.sub(&t), DimExpr::constant(0));
    }

    #[test]
    fn division() {
        let t = DimExpr::sym("T");
        let t64 = t.mul(&DimExpr::constant(64));
        assert_eq!(t64.floor_div(16).unwrap(), t.mul(&DimExpr::constant(4)));
        let c = t.ceil_div(64).unwrap();
        assert_eq!(c.to_string(), "((T + 63) / 64)");
        let b: DimBindings = [("T".to_string(), 65)].into_iter().collect();
        assert_eq!(c.eval(&b).unwrap(), 2);
        assert_eq!(t.modulo(8).unwrap().eval(&b).unwrap(), 1);
        assert_eq!(DimExpr::sym("Q").eval(&b), Err("Q".to_string()));
    }
}
