//! Einsum spec algebra for the contraction and layout rules: parsing, canonical letters,
//! flattening a nested einsum into one, splitting a contraction into an inner and an outer
//! one, and letter permutations for folded transposes. Pure functions on letters; the rules
//! check shapes afterwards with `infer`.

use std::collections::BTreeMap;

/// A parsed einsum spec: one term (letters) per operand and the output letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub inputs: Vec<Vec<char>>,
    pub output: Vec<char>,
}

const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz";

impl Spec {
    /// Reads `"bhtd,bhsd->bhts"`; `None` unless it has the shape `terms->output` with
    /// lowercase letters only and no letter repeated within a term or the output.
    pub fn parse(s: &str) -> Option<Spec> {
        let (lhs, rhs) = s.split_once("->")?;
        let term = |t: &str| -> Option<Vec<char>> {
            let v: Vec<char> = t.chars().collect();
            let ok = v.iter().all(|c| c.is_ascii_lowercase())
                && v.iter().enumerate().all(|(i, c)| !v[..i].contains(c));
            ok.then_some(v)
        };
        let inputs = lhs.split(',').map(term).collect::<Option<Vec<_>>>()?;
        let output = term(rhs)?;
        Some(Spec { inputs, output })
    }

    /// The spec's text, e.g. `"ab,bc->ac"`.
    pub fn text(&self) -> String {
        let terms: Vec<String> = self.inputs.iter().map(|t| t.iter().collect()).collect();
        format!(
            "{}->{}",
            terms.join(","),
            self.output.iter().collect::<String>()
        )
    }

    /// Every letter once, in order of first appearance (operands, then output).
    pub fn letters(&self) -> Vec<char> {
        let mut out = Vec::new();
        for c in self.inputs.iter().flatten().chain(&self.output) {
            if !out.contains(c) {
                out.push(*c);
            }
        }
        out
    }

    /// The same contraction with letters renamed `a`, `b`, `c`, … in order of first
    /// appearance, so equal contractions written with different letters become one e-node.
    pub fn canonical(&self) -> Spec {
        let map: BTreeMap<char, char> = self.letters().into_iter().zip(ALPHABET.chars()).collect();
        let rename = |t: &Vec<char>| t.iter().map(|c| map[c]).collect();
        Spec {
            inputs: self.inputs.iter().map(rename).collect(),
            output: rename(&self.output),
        }
    }

    /// Whether letter `c` is summed (appears in no output position).
    pub fn is_summed(&self, c: char) -> bool {
        !self.output.contains(&c)
    }

    /// Axes of operand `i` whose letters occur in no other operand and not in the output:
    /// they can be summed in that operand before the contraction.
    pub fn private_summed_axes(&self, i: usize) -> Vec<usize> {
        let term = &self.inputs[i];
        (0..term.len())
            .filter(|&a| {
                let c = term[a];
                self.is_summed(c)
                    && self
                        .inputs
                        .iter()
                        .enumerate()
                        .all(|(j, t)| j == i || !t.contains(&c))
            })
            .collect()
    }

    /// The spec with the output axes `axes` summed away.
    pub fn drop_output_axes(&self, axes: &[usize]) -> Spec {
        Spec {
            inputs: self.inputs.clone(),
            output: (0..self.output.len())
                .filter(|a| !axes.contains(a))
                .map(|a| self.output[a])
                .collect(),
        }
    }

    /// The spec with the axes `axes` of operand `i` removed (they were summed beforehand).
    pub fn drop_operand_axes(&self, i: usize, axes: &[usize]) -> Spec {
        let mut s = self.clone();
        s.inputs[i] = (0..self.inputs[i].len())
            .filter(|a| !axes.contains(a))
            .map(|a| self.inputs[i][a])
            .collect();
        s
    }

    /// The spec reading operand `i` before `transpose(·, perm)`: if the operand is
    /// `transpose(x, perm)` with term `L`, then axis `perm[k]` of `x` has letter `L[k]`.
    /// `None` if `perm` is not a permutation of the term's axes.
    pub fn untranspose_operand(&self, i: usize, perm: &[usize]) -> Option<Spec> {
        let term = &self.inputs[i];
        let mut new = vec![None; term.len()];
        if !is_permutation(perm, term.len()) {
            return None;
        }
        for (k, &p) in perm.iter().enumerate() {
            new[p] = Some(term[k]);
        }
        let mut s = self.clone();
        s.inputs[i] = new.into_iter().collect::<Option<Vec<char>>>()?;
        Some(s)
    }

    /// The spec of `transpose(einsum(self), perm)`: output axis `k` is old axis `perm[k]`.
    pub fn permute_output(&self, perm: &[usize]) -> Option<Spec> {
        if !is_permutation(perm, self.output.len()) {
            return None;
        }
        Some(Spec {
            inputs: self.inputs.clone(),
            output: perm.iter().map(|&p| self.output[p]).collect(),
        })
    }
}

/// Whether `p` is a permutation of `0..n`.
pub fn is_permutation(p: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    p.len() == n
        && p.iter()
            .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

/// `einsum(outer; …, einsum(inner; ys…), …)` with the nested einsum at operand `pos`, as one
/// einsum whose operands are the outer's with operand `pos` replaced by the `ys` (in order).
/// The inner output letters take the letters of the outer term at `pos`; the inner's summed
/// letters get fresh letters. `None` if the terms do not line up or letters run out.
pub fn flatten(outer: &Spec, pos: usize, inner: &Spec) -> Option<Spec> {
    let term = outer.inputs.get(pos)?;
    if term.len() != inner.output.len() {
        return None;
    }
    let mut used: Vec<char> = outer.letters();
    let mut map: BTreeMap<char, char> = inner
        .output
        .iter()
        .copied()
        .zip(term.iter().copied())
        .collect();
    for c in inner.letters() {
        if map.contains_key(&c) {
            continue;
        }
        let fresh = ALPHABET.chars().find(|f| !used.contains(f))?;
        used.push(fresh);
        map.insert(c, fresh);
    }
    let mut inputs = outer.inputs[..pos].to_vec();
    inputs.extend(
        inner
            .inputs
            .iter()
            .map(|t| t.iter().map(|c| map[c]).collect::<Vec<char>>()),
    );
    inputs.extend(outer.inputs[pos + 1..].iter().cloned());
    Some(Spec {
        inputs,
        output: outer.output.clone(),
    })
}

/// Contracting the operands `group` (sorted, distinct, at least one, not all) first.
/// Returns `(inner, outer)`: `inner` contracts the group's operands into an intermediate
/// that keeps a letter iff it occurs outside the group (in another operand or the output),
/// in order of first appearance within the group; `outer` contracts the other operands in
/// order with the intermediate inserted where the group's first operand was, i.e. at index
/// `group[0] − (group members before it)` = the number of non-group operands before
/// `group[0]`.
pub fn split(spec: &Spec, group: &[usize]) -> Option<(Spec, Spec)> {
    let n = spec.inputs.len();
    if group.is_empty()
        || group.len() >= n
        || group.windows(2).any(|w| w[0] >= w[1])
        || group[group.len() - 1] >= n
    {
        return None;
    }
    let inside = |c: char| -> bool {
        spec.output.contains(&c)
            || (0..n).any(|j| !group.contains(&j) && spec.inputs[j].contains(&c))
    };
    let mut kept = Vec::new();
    for &g in group {
        for &c in &spec.inputs[g] {
            if inside(c) && !kept.contains(&c) {
                kept.push(c);
            }
        }
    }
    let inner = Spec {
        inputs: group.iter().map(|&g| spec.inputs[g].clone()).collect(),
        output: kept.clone(),
    };
    let mut inputs: Vec<Vec<char>> = Vec::new();
    for j in 0..n {
        if j == group[0] {
            inputs.push(kept.clone());
        } else if !group.contains(&j) {
            inputs.push(spec.inputs[j].clone());
        }
    }
    let outer = Spec {
        inputs,
        output: spec.output.clone(),
    };
    Some((inner, outer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number of multiply-add points of a contraction: the product of every letter's size.
    /// `sizes` gives a letter's size; a letter without one counts as 1.
    fn points(spec: &Spec, sizes: &BTreeMap<char, f64>) -> f64 {
        spec.letters()
            .iter()
            .map(|c| sizes.get(c).copied().unwrap_or(1.0))
            .product()
    }

    fn s(x: &str) -> Spec {
        Spec::parse(x).unwrap()
    }

    #[test]
    fn parse_and_print() {
        assert_eq!(s("bhtd,bhsd->bhts").text(), "bhtd,bhsd->bhts");
        assert_eq!(s(",ab->ab").inputs, vec![vec![], vec!['a', 'b']]);
        assert!(Spec::parse("ab,bc").is_none());
        assert!(Spec::parse("aa->a").is_none());
        assert!(Spec::parse("aB->a").is_none());
        assert!(Spec::parse("ab->aa").is_none());
    }

    #[test]
    fn canonical_renames_by_first_appearance() {
        assert_eq!(s("bhtd,bhsd->bhts").canonical().text(), "abcd,abed->abce");
        assert_eq!(s("zy,yx->zx").canonical().text(), "ab,bc->ac");
        // Idempotent.
        let c = s("qk,kv->qv").canonical();
        assert_eq!(c.canonical(), c);
    }

    #[test]
    fn flatten_renames_summed_letters_apart() {
        // (Q Kᵀ) V with the inner written as bhtd,bhsd->bhts and the outer as abxy,abyz->abxz.
        let outer = s("abxy,abyz->abxz");
        let inner = s("bhtd,bhsd->bhts");
        let f = flatten(&outer, 0, &inner).unwrap();
        // b→a, h→b, t→x, s→y; the inner's summed d gets the first free letter, c.
        assert_eq!(f.text(), "abxc,abyc,abyz->abxz");
        // Nested as the second operand.
        let outer = s("ij,jk->ik");
        let inner = s("ab,bc->ac");
        assert_eq!(flatten(&outer, 1, &inner).unwrap().text(), "ij,ja,ak->ik");
        // Mismatched rank.
        assert!(flatten(&s("ij,jk->ik"), 0, &s("abc->abc")).is_none());
    }

    #[test]
    fn flatten_fails_when_letters_run_out() {
        // The outer spec uses all 26 letters.
        let outer = s("abcdefghijklmnopqrstuvwxy,yz->z");
        assert_eq!(outer.letters().len(), 26);
        // An inner einsum that sums a letter needs a fresh one: none is left.
        assert!(flatten(&outer, 1, &s("pqr,r->pq")).is_none());
        // One that sums nothing needs none.
        assert_eq!(
            flatten(&outer, 1, &s("pq,q->pq")).unwrap().text(),
            "abcdefghijklmnopqrstuvwxy,yz,z->z"
        );
    }

    #[test]
    fn split_keeps_letters_used_outside_the_group() {
        // φQ (φKᵀ V): group K and V; the intermediate keeps b, h (batch/heads), d (used by
        // Q) and z (in the output); it sums the sequence letter y.
        let f = s("abxc,abyc,abyz->abxz");
        let (inner, outer) = split(&f, &[1, 2]).unwrap();
        assert_eq!(inner.text(), "abyc,abyz->abcz");
        assert_eq!(outer.text(), "abxc,abcz->abxz");
        // Group Q and V: the intermediate is [a, b, x, c, y, z] (nothing summed early).
        let (inner, outer) = split(&f, &[0, 2]).unwrap();
        assert_eq!(inner.text(), "abxc,abyz->abxcyz");
        assert_eq!(outer.text(), "abxcyz,abyc->abxz");
        // The original bracketing.
        let (inner, outer) = split(&f, &[0, 1]).unwrap();
        assert_eq!(inner.text(), "abxc,abyc->abxy");
        assert_eq!(outer.text(), "abxy,abyz->abxz");
    }

    #[test]
    fn split_rejects_bad_groups() {
        let f = s("ab,bc,cd->ad");
        assert!(split(&f, &[]).is_none());
        assert!(split(&f, &[0, 1, 2]).is_none());
        assert!(split(&f, &[1, 0]).is_none());
        assert!(split(&f, &[3]).is_none());
    }

    #[test]
    fn matrix_chain_costs() {
        // (AB)C vs A(BC) for A: 10×100, B: 100×5, C: 5×50.
        let f = s("ij,jk,kl->il");
        let sizes: BTreeMap<char, f64> =
            [('i', 10.0), ('j', 100.0), ('k', 5.0), ('l', 50.0)].into();
        let cost = |group: &[usize]| {
            let (inner, outer) = split(&f, group).unwrap();
            points(&inner, &sizes) + points(&outer, &sizes)
        };
        assert_eq!(cost(&[0, 1]), 10.0 * 100.0 * 5.0 + 10.0 * 5.0 * 50.0);
        assert_eq!(cost(&[1, 2]), 100.0 * 5.0 * 50.0 + 10.0 * 100.0 * 50.0);
    }

    #[test]
    fn private_axes_and_drops() {
        let f = s("bhtd,bhsd->bht");
        assert_eq!(f.private_summed_axes(0), Vec::<usize>::new());
        assert_eq!(f.private_summed_axes(1), vec![2]);
        assert_eq!(f.drop_operand_axes(1, &[2]).text(), "bhtd,bhd->bht");
        assert_eq!(
            s("bhtd,bhsd->bhts").drop_output_axes(&[3]).text(),
            "bhtd,bhsd->bht"
        );
    }

    #[test]
    fn transposes_fold_into_letters() {
        // einsum("aby,yz->abz", x, transpose(w, [1, 0])) = einsum("aby,zy->abz", x, w).
        let f = s("aby,yz->abz");
        assert_eq!(
            f.untranspose_operand(1, &[1, 0]).unwrap().text(),
            "aby,zy->abz"
        );
        // transpose(t, [0, 2, 1, 3]) read as "abcd": t's axis 2 is b, axis 1 is c.
        let f = s("abcd->abcd");
        assert_eq!(
            f.untranspose_operand(0, &[0, 2, 1, 3]).unwrap().text(),
            "acbd->abcd"
        );
        assert!(f.untranspose_operand(0, &[0, 0, 1, 2]).is_none());
        // A 3-cycle (its own inverse is different): operand = transpose(x, [1, 2, 0]) read
        // as "abc" means x's axis 1 is a, axis 2 is b, axis 0 is c.
        let f = s("abc,cd->abd");
        assert_eq!(
            f.untranspose_operand(0, &[1, 2, 0]).unwrap().text(),
            "cab,cd->abd"
        );
        assert_eq!(f.permute_output(&[2, 0, 1]).unwrap().text(), "abc,cd->dab");
        // transpose(einsum(..->bhts), [0, 2, 1, 3]) = einsum(..->bths).
        let f = s("bhtd,bhsd->bhts");
        assert_eq!(
            f.permute_output(&[0, 2, 1, 3]).unwrap().text(),
            "bhtd,bhsd->bths"
        );
    }
}
