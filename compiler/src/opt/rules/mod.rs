//! Rewrite rules: the machinery shared by every rule, and the catalogue.
//!
//! Every rule is a [`DynRule`]: it starts from e-nodes of one operator (`root`) and proposes
//! [`Outcome`]s computed from the operators' attributes and the e-classes' types. An outcome
//! is either an existing e-class equal to the matched one, or a [`Plan`] of new e-nodes whose
//! types are inferred with `ir::infer::infer` before anything is added, equal to the matched
//! e-class (or, for `BuildFor`, to another e-class the rule names); an outcome that does not
//! type-check, or whose type differs from its e-class's, is refused. [`Dyn`]
//! adapts a rule to egg's `Searcher` and `Applier`: the search reports only e-classes where
//! some outcome would add something new, so egg's saturation test and match counts are exact.
//!
//! Rules are grouped by topic (`layout.rs`, `contraction.rs` and the cos(a − b) split of
//! `cosine.rs`, `attention.rs` with the mask recogniser `mask.rs`, additive masks read by
//! `additive_mask.rs` and StreamingLLM's split `sinks.rs`, `linear.rs` and `recurrence.rs`
//! with the decay recogniser `decay.rs`, `merge.rs`, the scan schedules of `scan.rs` and
//! `scan_matrix.rs`, the MoE dispatch of `moe.rs` and its top-k grouped form `moe_topk.rs`
//! with the expert matcher `moe_experts.rs`); each is named and documented with its equation,
//! and `docs/rewrites.md` is the catalogue (a test keeps both in step).

pub mod additive_mask;
pub mod attention;
pub mod contraction;
pub mod cosine;
pub mod decay;
pub mod layout;
pub mod linear;
pub mod mask;
pub mod merge;
pub mod moe;
pub mod moe_experts;
pub mod moe_topk;
pub mod recurrence;
pub mod scan;
pub mod scan_matrix;
pub mod sinks;

use super::analysis::{EG, TypeAnalysis};
use super::lang::{OpKey, TNode};
use crate::ir::infer::infer;
use crate::ir::{Op, Type};
use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

/// An operand of a planned e-node: an existing e-class or an earlier node of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    Class(Id),
    New(usize),
}

/// New e-nodes to add, in order; the last one is the result.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    nodes: Vec<(Op, Vec<Arg>)>,
}

impl Plan {
    pub fn new() -> Self {
        Plan::default()
    }

    /// Appends a node and returns it as an operand for later nodes.
    pub fn push(&mut self, op: Op, args: Vec<Arg>) -> Arg {
        self.nodes.push((op, args));
        Arg::New(self.nodes.len() - 1)
    }
}

/// What a rule proposes for a matched e-class.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The matched e-class equals this existing one.
    Same(Id),
    /// The matched e-class equals the plan's last node.
    Build(Plan),
    /// Another e-class, `.0`, equals the plan's last node (a rule that rewrites two values
    /// sharing one new node, e.g. an attention and its log-sum-exp).
    BuildFor(Id, Plan),
}

/// A plan's nodes as e-nodes whose types have been checked.
struct Typed {
    ops: Vec<(OpKey, Vec<Arg>)>,
}

impl Outcome {
    /// Infers the type of every new node; `None` when one does not type-check or the result's
    /// type differs from the e-class's (a bug in the rule: debug builds panic).
    fn typed(&self, eg: &EG, class: Id) -> Option<Typed> {
        let class = self.target(class);
        let want = &eg[class].data;
        match self {
            Outcome::Same(id) => {
                debug_assert_eq!(
                    eg[*id].data, *want,
                    "a rewrite equated e-classes of different types"
                );
                (eg[*id].data == *want).then(|| Typed { ops: vec![] })
            }
            Outcome::Build(plan) | Outcome::BuildFor(_, plan) => {
                let mut tys: Vec<Type> = Vec::with_capacity(plan.nodes.len());
                let mut ops = Vec::with_capacity(plan.nodes.len());
                for (op, args) in &plan.nodes {
                    let arg_tys: Vec<&Type> = args
                        .iter()
                        .map(|a| match a {
                            Arg::Class(id) => &eg[*id].data,
                            Arg::New(k) => &tys[*k],
                        })
                        .collect();
                    let ty = infer(op, &arg_tys).ok()?;
                    tys.push(ty);
                    ops.push((OpKey::new(op.clone()), args.clone()));
                }
                let root_ty = tys.pop()?;
                debug_assert_eq!(
                    root_ty, *want,
                    "a rewrite proposed a value of another type ({ops:?})"
                );
                (root_ty == *want).then_some(Typed { ops })
            }
        }
    }

    /// The e-class the outcome is about: the matched one, or another for `BuildFor`.
    fn target(&self, class: Id) -> Id {
        match self {
            Outcome::BuildFor(id, _) => *id,
            Outcome::Same(_) | Outcome::Build(_) => class,
        }
    }

    /// Whether committing would change the e-graph (a new node or a new union).
    fn is_new(&self, eg: &EG, class: Id) -> bool {
        let Some(t) = self.typed(eg, class) else {
            return false;
        };
        let class = self.target(class);
        match self {
            Outcome::Same(id) => eg.find(*id) != eg.find(class),
            Outcome::Build(_) | Outcome::BuildFor(..) => {
                let mut ids: Vec<Id> = Vec::with_capacity(t.ops.len());
                for (op, args) in &t.ops {
                    let children = args.iter().map(|a| resolve(*a, &ids)).collect();
                    match eg.lookup(TNode::new(op.clone(), children)) {
                        Some(id) => ids.push(id),
                        None => return true,
                    }
                }
                ids.last().is_some_and(|r| eg.find(*r) != eg.find(class))
            }
        }
    }

    /// Adds the plan's nodes and unions the result with `class`; whether anything changed.
    fn commit(&self, eg: &mut EG, class: Id) -> bool {
        let class = eg.find(class);
        let Some(t) = self.typed(eg, class) else {
            return false;
        };
        let class = eg.find(self.target(class));
        let root = match self {
            Outcome::Same(id) => *id,
            Outcome::Build(_) | Outcome::BuildFor(..) => {
                let mut ids: Vec<Id> = Vec::with_capacity(t.ops.len());
                for (op, args) in t.ops {
                    let children = args.iter().map(|a| resolve(*a, &ids)).collect();
                    ids.push(eg.add(TNode::new(op, children)));
                }
                *ids.last().expect("a plan has a node")
            }
        };
        // A new root node is always a new union: its e-class is fresh.
        eg.union(class, root)
    }
}

fn resolve(a: Arg, ids: &[Id]) -> Id {
    match a {
        Arg::Class(id) => id,
        Arg::New(k) => ids[k],
    }
}

/// A rewrite rule computed from attributes and types.
pub trait DynRule: Send + Sync {
    /// The rule's name, as listed in `docs/rewrites.md`.
    fn name(&self) -> &'static str;
    /// The operator name (`Op::name`) of the e-nodes the rule starts from.
    fn root(&self) -> &'static str;
    /// What e-node `node` (of e-class `class`, with operator `root`) equals.
    fn rewrite(&self, eg: &EG, class: Id, node: &TNode) -> Vec<Outcome>;
}

/// The nodes of `class` whose operator is `name`, cloned (the e-graph may change meanwhile).
pub fn nodes_named(eg: &EG, class: Id, name: &str) -> Vec<TNode> {
    eg[class]
        .nodes
        .iter()
        .filter(|n| n.op.name() == name)
        .cloned()
        .collect()
}

/// The tensor shape of an e-class (`None` for a tuple).
pub fn shape(eg: &EG, class: Id) -> Option<&[crate::ir::DimExpr]> {
    eg[class].data.tensor().map(|t| t.shape.as_slice())
}

/// What a phase may still spend. egg checks its limits only between rules, so one rule's
/// search or application could otherwise overshoot them without bound; rules stop searching
/// once the deadline has passed and stop adding nodes once the e-graph has more than `nodes`
/// e-nodes (egg's node-limit test, which then stops the runner) or the deadline has passed,
/// and record in `cut` that they did.
#[derive(Clone, Debug)]
pub struct Budget {
    pub nodes: usize,
    pub deadline: Instant,
    pub cut: Arc<AtomicBool>,
}

impl Budget {
    pub fn new(nodes: usize, time: Duration) -> Self {
        Budget {
            nodes,
            deadline: Instant::now() + time,
            cut: Arc::new(AtomicBool::new(false)),
        }
    }

    fn exhausted(&self, eg: &EG) -> bool {
        let out = eg.total_size() > self.nodes || Instant::now() >= self.deadline;
        if out {
            self.cut.store(true, AtomicOrdering::Relaxed);
        }
        out
    }

    fn past_deadline(&self) -> bool {
        let out = Instant::now() >= self.deadline;
        if out {
            self.cut.store(true, AtomicOrdering::Relaxed);
        }
        out
    }

    /// Whether a rule stopped early because the budget ran out.
    pub fn was_cut(&self) -> bool {
        self.cut.load(AtomicOrdering::Relaxed)
    }
}

/// A [`DynRule`] as egg's searcher and applier.
#[derive(Clone)]
pub struct Dyn {
    pub rule: Arc<dyn DynRule>,
    pub budget: Budget,
}

impl Dyn {
    /// The `root` nodes of `class`, cloned (the e-graph may change while they are used).
    fn roots(&self, eg: &EG, class: Id) -> Vec<TNode> {
        nodes_named(eg, eg.find(class), self.rule.root())
    }

    /// Whether some outcome for `class` would change the e-graph; stops at the first one.
    fn has_new(&self, eg: &EG, class: Id) -> bool {
        let class = eg.find(class);
        self.roots(eg, class).iter().any(|n| {
            !self.budget.past_deadline()
                && self
                    .rule
                    .rewrite(eg, class, n)
                    .iter()
                    .any(|o| o.is_new(eg, class))
        })
    }
}

impl Searcher<TNode, TypeAnalysis> for Dyn {
    fn search_eclass_with_limit(
        &self,
        eg: &EG,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TNode>> {
        if limit == 0 || !self.has_new(eg, eclass) {
            return None;
        }
        Some(SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    /// Visits the e-classes holding a `root` node in id order (deterministic).
    fn search_with_limit(&self, eg: &EG, mut limit: usize) -> Vec<SearchMatches<'_, TNode>> {
        let mut ids: Vec<Id> = eg
            .classes_for_op(&self.rule.root())
            .map(|it| it.collect())
            .unwrap_or_default();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            if limit == 0 || self.budget.past_deadline() {
                break;
            }
            if let Some(m) = self.search_eclass_with_limit(eg, id, limit) {
                limit -= m.substs.len();
                out.push(m);
            }
        }
        out
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

impl Applier<TNode, TypeAnalysis> for Dyn {
    fn apply_one(
        &self,
        eg: &mut EG,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let mut changed = Vec::new();
        for n in self.roots(eg, eclass) {
            if self.budget.exhausted(eg) {
                break;
            }
            let class = eg.find(eclass);
            for o in self.rule.rewrite(eg, class, &n) {
                if o.commit(eg, class) {
                    changed.push(eg.find(class));
                }
            }
        }
        changed
    }
}

/// An egg rewrite for a rule, spending from `budget`.
pub fn rewrite(rule: Arc<dyn DynRule>, budget: &Budget) -> Rewrite<TNode, TypeAnalysis> {
    let d = Dyn {
        rule,
        budget: budget.clone(),
    };
    Rewrite::new(d.rule.name(), d.clone(), d).expect("a dynamic rule binds no variables")
}

/// The layout rules: transposes and reshapes fused, removed or folded into einsums.
pub fn layout_rules() -> Vec<Arc<dyn DynRule>> {
    layout::rules()
}

/// The contraction rules: einsum regrouping, sums moved into or out of einsums, and
/// cosFormer's cos(a − b) reweighting split into one contraction over twice the features.
pub fn contraction_rules() -> Vec<Arc<dyn DynRule>> {
    let mut v = contraction::rules();
    v.extend(cosine::rules());
    v
}

/// The attention rules: softmax attention fused into one tiled `attention` operator.
pub fn attention_rules() -> Vec<Arc<dyn DynRule>> {
    let mut v = attention::rules();
    v.extend(additive_mask::rules());
    v.extend(sinks::rules());
    v
}

/// The chunked linear-attention rules: masked quadratic forms and linear recurrences to
/// `linear_attn`.
pub fn linear_rules() -> Vec<Arc<dyn DynRule>> {
    linear::rules()
}

/// The scan-schedule rules: a linear scan to its chunk-local + carry form.
pub fn scan_rules() -> Vec<Arc<dyn DynRule>> {
    scan::rules()
}

/// The mixture-of-experts rule: dense expert terms under a capacity-bounded gate to
/// gather → expert on the kept rows → scatter-add.
pub fn moe_rules() -> Vec<Arc<dyn DynRule>> {
    let mut v = moe::rules();
    v.extend(moe_topk::rules());
    v
}

/// The merge rules: contractions that share an operand joined into one.
pub fn merge_rules() -> Vec<Arc<dyn DynRule>> {
    merge::rules()
}

/// The name of every rule, sorted.
pub fn rule_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = layout_rules()
        .iter()
        .chain(contraction_rules().iter())
        .chain(attention_rules().iter())
        .chain(linear_rules().iter())
        .chain(scan_rules().iter())
        .chain(moe_rules().iter())
        .chain(merge_rules().iter())
        .map(|r| r.name())
        .collect();
    v.sort();
    v
}
