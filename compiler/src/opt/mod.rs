//! The e-graph optimizer: equality saturation with egg over the tensor IR, then DAG-aware
//! extraction by a roofline cost model.
//!
//! Pipeline of [`optimize`]: verify the input → convert to an e-graph (`convert.rs`; every
//! e-class typed by `ir::infer`, `analysis.rs`) → run each [`Phase`] as its own
//! `egg::Runner` with iteration, node and time limits (rules in `rules/`) → extract the
//! cheapest DAG at the given dims and target (`cost.rs`, `extract.rs`) → rebuild the graph
//! through `Graph::add` and verify it → group elementwise chains into `fused` nodes
//! (`fuse.rs`) and verify again. Every phase is timed and reports its stop reason and
//! which rules fired how often ([`OptReport`]).

pub mod analysis;
pub mod attention_cost;
pub mod convert;
pub mod cost;
pub mod einsum;
pub mod extract;
pub mod fuse;
pub mod lang;
pub mod rules;
pub mod statics;

#[cfg(test)]
mod tests;

pub use cost::{Stats, Target, default_dims, graph_time, stats};

use crate::ir::verify::{VerifyError, verify};
use crate::ir::{DimBindings, Graph, Type};
use egg::{BackoffScheduler, Rewrite, Runner, StopReason};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// Resource limits of one phase's runner. egg checks them between rules; the rules also
/// check them between e-nodes (`rules::Budget`), so a phase overshoots by at most one
/// e-node's rewrites and one rebuild.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            iterations: 20,
            nodes: 20_000,
            time: Duration::from_millis(500),
        }
    }
}

/// A named set of rules run to saturation (or to its limits) by one runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Transposes and reshapes fused, removed or folded into einsums.
    Layout,
    /// Einsum regrouping and sums moved through einsums, with the layout rules.
    Contraction,
    /// Softmax attention with a structured mask fused into one tiled `attention` node.
    Attention,
    /// Causal linear attention (masked quadratic or recurrent) to chunked `linear_attn`,
    /// with the layout rules.
    Chunked,
    /// Linear scans to their chunk-local + carry form (chosen where the target's sequential
    /// step latency makes it pay).
    Scan,
    /// Dense mixture-of-experts terms under a capacity-bounded gate to gather → expert on the
    /// kept rows → scatter-add.
    Moe,
    /// Contractions sharing an operand merged into one (Q/K/V projections).
    Merge,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Layout,
        Phase::Contraction,
        Phase::Attention,
        Phase::Chunked,
        Phase::Scan,
        Phase::Moe,
        Phase::Merge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Layout => "layout",
            Phase::Contraction => "contraction",
            Phase::Attention => "attention",
            Phase::Chunked => "chunked",
            Phase::Scan => "scan",
            Phase::Moe => "moe",
            Phase::Merge => "merge",
        }
    }

    fn rules(self, budget: &rules::Budget) -> Vec<Rewrite<lang::TNode, analysis::TypeAnalysis>> {
        let rs = match self {
            Phase::Layout => rules::layout_rules(),
            Phase::Contraction => {
                let mut v = rules::contraction_rules();
                v.extend(rules::layout_rules());
                v
            }
            Phase::Attention => rules::attention_rules(),
            Phase::Chunked => {
                let mut v = rules::linear_rules();
                v.extend(rules::layout_rules());
                v
            }
            Phase::Scan => rules::scan_rules(),
            Phase::Moe => rules::moe_rules(),
            Phase::Merge => rules::merge_rules(),
        };
        rs.into_iter().map(|r| rules::rewrite(r, budget)).collect()
    }
}

/// What to optimise for.
#[derive(Clone, Debug, PartialEq)]
pub struct OptOptions {
    /// Dims at which costs are evaluated; missing ones take [`default_dims`].
    pub dims: DimBindings,
    pub target: Target,
    /// The phases to run, in order.
    pub phases: Vec<Phase>,
    pub limits: Limits,
    /// Operators (by `Op::name`) that whoever runs the result cannot run yet, e.g. a backend's
    /// gaps: extraction avoids them wherever the e-graph holds an alternative (an e-node with
    /// one costs [`AVOIDED_COST`] seconds), and the fusion pass is skipped if `fused` is one.
    pub avoid_ops: Vec<&'static str>,
}

/// The cost (seconds) extraction gives an e-node whose operator is in `avoid_ops`: finite, so
/// a graph that needs such an operator still extracts (and its consumer reports the gap).
pub const AVOIDED_COST: f64 = 1e30;

impl Default for OptOptions {
    fn default() -> Self {
        OptOptions {
            dims: DimBindings::new(),
            target: Target::cpu(),
            phases: Phase::ALL.to_vec(),
            limits: Limits::default(),
            avoid_ops: Vec::new(),
        }
    }
}

/// One phase's run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    pub name: &'static str,
    pub iterations: usize,
    /// E-nodes and e-classes when the phase stopped.
    pub enodes: usize,
    pub eclasses: usize,
    pub time_s: f64,
    /// `saturated`, `iteration limit (N)`, `node limit (N)`, `time limit (S s)` or another
    /// reason egg gives.
    pub stop_reason: String,
    /// How many times each rule changed the e-graph, by rule name.
    pub rules_fired: BTreeMap<String, usize>,
}

/// What [`optimize`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OptReport {
    pub phases: Vec<PhaseReport>,
    pub extract_time_s: f64,
    /// Time of the fusion pass after extraction (`fuse.rs`).
    pub fuse_time_s: f64,
    pub total_time_s: f64,
    /// The dims and target costs were evaluated at.
    pub dims: DimBindings,
    pub target: &'static str,
    /// Roofline time of the input and of the result at those dims (seconds).
    pub est_time_before_s: f64,
    pub est_time_after_s: f64,
}

impl OptReport {
    /// The report as `//` comment lines (for `seqc dump --stage opt --explain`).
    pub fn explain(&self) -> String {
        let mut s = String::new();
        let dims: Vec<String> = self.dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            s,
            "// optimised for {} at {}: estimated {} → {} ({:.1} ms in all, extraction {:.1} ms, fusion {:.1} ms)",
            self.target,
            dims.join(","),
            fmt_time(self.est_time_before_s),
            fmt_time(self.est_time_after_s),
            self.total_time_s * 1e3,
            self.extract_time_s * 1e3,
            self.fuse_time_s * 1e3,
        );
        for p in &self.phases {
            let _ = writeln!(
                s,
                "// phase {}: {} iteration(s), {} e-nodes, {} e-classes, {:.1} ms, stopped: {}",
                p.name,
                p.iterations,
                p.enodes,
                p.eclasses,
                p.time_s * 1e3,
                p.stop_reason
            );
            if p.rules_fired.is_empty() {
                let _ = writeln!(s, "//   no rule fired");
            }
            for (r, n) in &p.rules_fired {
                let _ = writeln!(s, "//   {r} ×{n}");
            }
        }
        s
    }
}

fn fmt_time(t: f64) -> String {
    if t >= 1.0 {
        format!("{t:.3} s")
    } else if t >= 1e-3 {
        format!("{:.3} ms", t * 1e3)
    } else {
        format!("{:.3} µs", t * 1e6)
    }
}

fn stop_text(r: &Option<StopReason>) -> String {
    match r {
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t} s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptError {
    #[error("the input graph is invalid: {0}")]
    Input(VerifyError),
    #[error("internal: extraction failed: {0}")]
    Extract(String),
    #[error("internal: the optimised graph could not be rebuilt: {0}")]
    Rebuild(String),
    #[error("internal: the optimised graph is invalid: {0}")]
    Output(VerifyError),
}

/// Optimises `g`: the result computes the same outputs from the same inputs and params, is
/// rebuilt through `Graph::add` and passes `ir::verify`.
pub fn optimize(g: &Graph, opts: &OptOptions) -> Result<(Graph, OptReport), OptError> {
    let start = Instant::now();
    verify(g).map_err(OptError::Input)?;
    let dims = default_dims(g, &opts.dims);
    let (conv, phases) = saturate(g, opts);
    let t0 = Instant::now();
    let roots: Vec<_> = conv.outputs.iter().map(|(_, id)| *id).collect();
    let eg = &conv.egraph;
    let statics = statics::static_classes(eg);
    let choice = extract::extract(eg, &roots, |class, n| {
        if opts.avoid_ops.contains(&n.op.name()) {
            return AVOIDED_COST;
        }
        let operands_static = n.children.iter().all(|c| statics.contains(&eg.find(*c)));
        if cost::is_load_time(n.op.op(), operands_static, &eg[class].data) {
            return 0.0;
        }
        let tys: Vec<&Type> = n.children.iter().map(|c| &eg[*c].data).collect();
        let c = cost::node_cost(n.op.op(), &tys, &eg[class].data, &dims);
        opts.target.time(&c)
    })
    .map_err(OptError::Extract)?;
    let out = convert::to_graph(&conv, &choice).map_err(OptError::Rebuild)?;
    let extract_time_s = t0.elapsed().as_secs_f64();
    verify(&out).map_err(OptError::Output)?;
    let t1 = Instant::now();
    let out = if opts.avoid_ops.contains(&"fused") {
        out
    } else {
        fuse::fuse(&out).map_err(OptError::Rebuild)?
    };
    let fuse_time_s = t1.elapsed().as_secs_f64();
    verify(&out).map_err(OptError::Output)?;
    let report = OptReport {
        phases,
        extract_time_s,
        fuse_time_s,
        total_time_s: start.elapsed().as_secs_f64(),
        est_time_before_s: graph_time(g, &dims, &opts.target),
        est_time_after_s: graph_time(&out, &dims, &opts.target),
        dims,
        target: opts.target.name,
    };
    Ok((out, report))
}

/// Converts `g` (assumed valid) to an e-graph and runs the phases of `opts` on it.
pub fn saturate(g: &Graph, opts: &OptOptions) -> (convert::Converted, Vec<PhaseReport>) {
    let mut conv = convert::to_egraph(g);
    let mut phases = Vec::new();
    for phase in &opts.phases {
        let t0 = Instant::now();
        let budget = rules::Budget::new(opts.limits.nodes, opts.limits.time);
        let rules = phase.rules(&budget);
        let egraph = std::mem::take(&mut conv.egraph);
        let runner = Runner::<lang::TNode, analysis::TypeAnalysis, ()>::new(analysis::TypeAnalysis)
            .with_egraph(egraph)
            .with_iter_limit(opts.limits.iterations)
            .with_node_limit(opts.limits.nodes)
            .with_time_limit(opts.limits.time)
            .with_scheduler(BackoffScheduler::default())
            .run(&rules);
        let mut fired: BTreeMap<String, usize> = BTreeMap::new();
        for it in &runner.iterations {
            for (name, n) in &it.applied {
                *fired.entry(name.to_string()).or_default() += n;
            }
        }
        let mut egraph = runner.egraph;
        egraph.rebuild();
        phases.push(PhaseReport {
            name: phase.name(),
            iterations: runner.iterations.len(),
            enodes: egraph.total_number_of_nodes(),
            eclasses: egraph.number_of_classes(),
            time_s: t0.elapsed().as_secs_f64(),
            stop_reason: match (&runner.stop_reason, budget.was_cut()) {
                // egg saw no change because the rules stopped at the deadline.
                (Some(StopReason::Saturated), true) => {
                    format!(
                        "time limit ({} s, in rule application)",
                        opts.limits.time.as_secs_f64()
                    )
                }
                (r, _) => stop_text(r),
            },
            rules_fired: fired,
        });
        conv.egraph = egraph;
    }
    (conv, phases)
}
