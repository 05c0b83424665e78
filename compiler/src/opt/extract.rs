//! DAG-aware extraction: picks one e-node per e-class so that the chosen DAG, with every
//! shared e-class counted once, is cheap. egg's `Extractor` sums tree costs (a subexpression
//! used twice counts twice), which misjudges exactly the rewrites this optimizer exists for;
//! its `LpExtractor` needs CBC. This is the greedy DAG algorithm (as in extraction-gym's
//! `greedy-dag`): an e-class's candidate cost is the set of e-classes its best e-node depends
//! on, each with its own node's cost, and the total is the sum over that set.
//!
//! Costs are `(time, node count)` compared lexicographically, so among equally fast forms
//! the one with fewer nodes wins (views cost no time). Work proceeds from a worklist of
//! e-nodes ordered by (e-class id, index), starting from the leaves and re-evaluating the
//! e-nodes that use an e-class when its best cost improves; a node that cannot beat the
//! current best (its dearest operand plus itself already costs more) is skipped without
//! building its set. Costs only decrease, so it terminates. Everything is iterated in id
//! order: the result is deterministic.
//!
//! Greedy choices are made one e-class at a time, so a subexpression that pays off only when
//! several e-classes share it (one merged Q/K/V projection read back by three slices) is
//! never adopted: for each e-class alone the unshared form is cheaper. [`adopt_shared`]
//! repairs this afterwards: for every e-class outside the chosen DAG that e-nodes of two or
//! more chosen e-classes could use, it switches all of them to such e-nodes at once and keeps
//! the switch if the DAG's total cost drops (and the DAG stays acyclic).

use super::analysis::EG;
use super::lang::TNode;
use egg::Id;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// The chosen e-node of every e-class reachable from the roots.
pub type Choice = BTreeMap<Id, TNode>;

#[derive(Clone)]
struct Best {
    node: usize,
    /// The e-classes the choice depends on (itself included), sorted by id, with the cost of
    /// each one's chosen node.
    deps: Rc<Vec<(Id, f64)>>,
    time: f64,
}

impl Best {
    fn better_than(&self, o: &Best) -> bool {
        self.time < o.time || (self.time == o.time && self.deps.len() < o.deps.len())
    }
}

/// Extracts a DAG for `roots`; `cost(class, node)` gives an e-node's own cost (seconds). Fails if a root
/// has no finite extraction or the choice is cyclic (neither should happen for an e-graph
/// built from a valid IR graph; the error says which).
pub fn extract(eg: &EG, roots: &[Id], cost: impl Fn(Id, &TNode) -> f64) -> Result<Choice, String> {
    let mut classes: Vec<Id> = eg.classes().map(|c| c.id).collect();
    classes.sort();
    let mut own: BTreeMap<Id, Vec<f64>> = BTreeMap::new();
    // The e-nodes (class, index) that have each e-class as an operand.
    let mut users: BTreeMap<Id, Vec<(Id, usize)>> = BTreeMap::new();
    let mut work: BTreeSet<(Id, usize)> = BTreeSet::new();
    for &c in &classes {
        own.insert(c, eg[c].nodes.iter().map(|n| cost(c, n)).collect());
        for (i, n) in eg[c].nodes.iter().enumerate() {
            if n.children.is_empty() {
                work.insert((c, i));
            }
            let mut kids: Vec<Id> = n.children.iter().map(|ch| eg.find(*ch)).collect();
            kids.sort();
            kids.dedup();
            for k in kids {
                users.entry(k).or_default().push((c, i));
            }
        }
    }
    let mut best: BTreeMap<Id, Best> = BTreeMap::new();
    // A safety valve: costs strictly decrease, but bound the work regardless.
    let total_nodes: usize = classes.iter().map(|c| eg[*c].nodes.len()).sum();
    let mut budget = total_nodes.saturating_mul(100).max(100_000);
    while let Some((c, i)) = work.pop_first() {
        if budget == 0 {
            break;
        }
        budget -= 1;
        let n = &eg[c].nodes[i];
        let Some(cand) = candidate(eg, &best, c, i, n, own[&c][i], best.get(&c)) else {
            continue;
        };
        if best.get(&c).is_none_or(|b| cand.better_than(b)) {
            best.insert(c, cand);
            if let Some(us) = users.get(&c) {
                work.extend(us.iter().copied());
            }
        }
    }
    let mut sel: BTreeMap<Id, usize> = best.iter().map(|(c, b)| (*c, b.node)).collect();
    adopt_shared(eg, roots, &own, &mut sel);
    // Follow the choices from the roots, checking that they form a DAG.
    let mut choice = Choice::new();
    let mut state: BTreeMap<Id, bool> = BTreeMap::new(); // false: on the stack, true: done
    for &r in roots {
        let mut stack: Vec<(Id, bool)> = vec![(eg.find(r), false)];
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                state.insert(c, true);
                continue;
            }
            match state.get(&c) {
                Some(true) => continue,
                Some(false) => {
                    return Err(format!("the extracted choice is cyclic at e-class {c}"));
                }
                None => {}
            }
            let b = sel
                .get(&c)
                .ok_or_else(|| format!("e-class {c} has no extractable e-node"))?;
            let node = eg[c].nodes[*b].clone();
            state.insert(c, false);
            stack.push((c, true));
            for ch in node.children.iter().rev() {
                let ch = eg.find(*ch);
                match state.get(&ch) {
                    Some(true) => {}
                    Some(false) => {
                        return Err(format!("the extracted choice is cyclic at e-class {ch}"));
                    }
                    None => stack.push((ch, false)),
                }
            }
            choice.insert(c, node);
        }
    }
    Ok(choice)
}

/// The cost of choosing node `i` (`n`) for class `c` given the children's current best, or
/// `None` if a child has none yet, the node would depend on its own class (a cycle), or it
/// cannot beat `current` (its total is at least its dearest child's plus its own cost).
fn candidate(
    eg: &EG,
    best: &BTreeMap<Id, Best>,
    c: Id,
    i: usize,
    n: &TNode,
    own: f64,
    current: Option<&Best>,
) -> Option<Best> {
    let mut kids: Vec<&Best> = Vec::with_capacity(n.children.len());
    for ch in &n.children {
        kids.push(best.get(&eg.find(*ch))?);
    }
    let bound = kids.iter().map(|b| b.time).fold(0.0, f64::max) + own;
    if current.is_some_and(|b| bound > b.time) {
        return None;
    }
    // Start from the largest child set (cheap when a node has one big operand).
    kids.sort_by_key(|b| std::cmp::Reverse(b.deps.len()));
    let mut deps: Vec<(Id, f64)> = kids.first().map_or_else(Vec::new, |b| (*b.deps).clone());
    for b in kids.iter().skip(1) {
        if !Rc::ptr_eq(&b.deps, &kids[0].deps) {
            deps = merge(&deps, &b.deps);
        }
    }
    match deps.binary_search_by_key(&c, |(k, _)| *k) {
        Ok(_) => return None,
        Err(at) => deps.insert(at, (c, own)),
    }
    let time = deps.iter().map(|(_, t)| t).sum();
    Some(Best {
        node: i,
        deps: Rc::new(deps),
        time,
    })
}

/// The union of two id-sorted sets.
fn merge(a: &[(Id, f64)], b: &[(Id, f64)]) -> Vec<(Id, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The total cost of the DAG that `sel` (e-class → chosen e-node index) picks from `roots`,
/// each e-class counted once, with the e-classes in it; `None` if it is cyclic or reaches an
/// e-class without a choice.
fn dag_cost(
    eg: &EG,
    roots: &[Id],
    own: &BTreeMap<Id, Vec<f64>>,
    sel: &BTreeMap<Id, usize>,
) -> Option<(f64, BTreeSet<Id>)> {
    let mut state: BTreeMap<Id, bool> = BTreeMap::new(); // false: on the stack, true: done
    let mut total = 0.0;
    for &r in roots {
        let mut stack: Vec<(Id, bool)> = vec![(eg.find(r), false)];
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                state.insert(c, true);
                continue;
            }
            match state.get(&c) {
                Some(true) => continue,
                Some(false) => return None,
                None => {}
            }
            let i = *sel.get(&c)?;
            total += own[&c][i];
            state.insert(c, false);
            stack.push((c, true));
            for ch in &eg[c].nodes[i].children {
                let ch = eg.find(*ch);
                match state.get(&ch) {
                    Some(true) => {}
                    Some(false) => return None,
                    None => stack.push((ch, false)),
                }
            }
        }
    }
    Some((total, state.into_keys().collect()))
}

/// Improves `sel` by adopting shared subexpressions (see the module doc). Each accepted
/// switch strictly lowers the total, and the rounds are bounded, so it terminates.
fn adopt_shared(
    eg: &EG,
    roots: &[Id],
    own: &BTreeMap<Id, Vec<f64>>,
    sel: &mut BTreeMap<Id, usize>,
) {
    const ROUNDS: usize = 4;
    let Some((mut total, mut in_dag)) = dag_cost(eg, roots, own, sel) else {
        return;
    };
    for _ in 0..ROUNDS {
        // For each e-class outside the DAG: the chosen e-classes with an e-node using it.
        let mut could_use: BTreeMap<Id, Vec<(Id, usize)>> = BTreeMap::new();
        for &c in &in_dag {
            for (i, n) in eg[c].nodes.iter().enumerate() {
                if i == sel[&c] {
                    continue;
                }
                let mut kids: Vec<Id> = n.children.iter().map(|k| eg.find(*k)).collect();
                kids.sort();
                kids.dedup();
                for k in kids {
                    if !in_dag.contains(&k) && sel.contains_key(&k) {
                        let users = could_use.entry(k).or_default();
                        if !users.iter().any(|(u, _)| *u == c) {
                            users.push((c, i));
                        }
                    }
                }
            }
        }
        let mut improved = false;
        for users in could_use.values().filter(|u| u.len() >= 2) {
            let mut trial = sel.clone();
            for &(u, i) in users {
                trial.insert(u, i);
            }
            if let Some((t, d)) = dag_cost(eg, roots, own, &trial)
                && t < total
            {
                *sel = trial;
                total = t;
                in_dag = d;
                improved = true;
            }
        }
        if !improved {
            return;
        }
    }
}
